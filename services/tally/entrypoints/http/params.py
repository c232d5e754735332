"""Query parameters several routes share, checked the same way everywhere
(``tally.entrypoints.inputs``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from tally.entrypoints.inputs import Instant, Period, Text

OrgQuery = Annotated[Text | None, Query(description="Organization.")]
PeriodQuery = Annotated[Period | None, Query(description="Billing period YYYY-MM.")]
RequiredPeriod = Annotated[Period, Query(description="Billing period YYYY-MM.")]
SinceQuery = Annotated[
    Instant | None,
    Query(description="RFC 3339 instant with an offset, e.g. 2026-11-01T00:00:00Z."),
]
InstantQuery = SinceQuery
