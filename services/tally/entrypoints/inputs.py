"""The checked types of the values a URL carries, for the API's routes and the pages alike:
FastAPI refuses anything outside ``tally.domain.bounds`` with 422 before a route runs (the
API's ``invalid_request``, the pages' error page), so no hostile value reaches PostgreSQL
or the period arithmetic. A route takes ``Text``, never a bare ``str``."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field

from tally.domain import bounds
from tally.domain.period import PERIOD

Text = Annotated[str, AfterValidator(bounds.text)]
Id = Annotated[int, Field(ge=1, le=bounds.MAX_ID, json_schema_extra={"format": "int64"})]
Period = Annotated[str, Field(pattern=PERIOD.pattern), AfterValidator(bounds.period)]
Instant = Annotated[AwareDatetime, AfterValidator(bounds.instant)]
Day = Annotated[date, AfterValidator(bounds.day)]
