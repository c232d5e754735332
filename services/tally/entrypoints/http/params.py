"""Query parameters several routes share, checked the same way everywhere."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import AwareDatetime

from tally.domain.period import PERIOD

OrgQuery = Annotated[str | None, Query(description="Organization.")]
PeriodQuery = Annotated[
    str | None, Query(pattern=PERIOD.pattern, description="Billing period YYYY-MM.")
]
RequiredPeriod = Annotated[
    str, Query(pattern=PERIOD.pattern, description="Billing period YYYY-MM.")
]
SinceQuery = Annotated[
    AwareDatetime | None,
    Query(description="RFC 3339 instant with an offset, e.g. 2026-11-01T00:00:00Z."),
]
InstantQuery = SinceQuery
