"""The checked types of the values a URL carries, for the API's routes and the pages alike:
FastAPI refuses anything outside ``tally.domain.bounds`` with 422 before a route runs (the
API's ``invalid_request``, the pages' error page), so no hostile value reaches PostgreSQL
or the period arithmetic. A route takes ``Text``, never a bare ``str``."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BeforeValidator, Field

from tally.domain import bounds
from tally.domain.period import PERIOD

Text = Annotated[str, AfterValidator(bounds.text)]
Id = Annotated[int, Field(ge=1, le=bounds.MAX_ID, json_schema_extra={"format": "int64"})]
Period = Annotated[str, Field(pattern=PERIOD.pattern), AfterValidator(bounds.period)]
NUMBER = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def written_as_a_date(value: Any) -> Any:
    """Pydantic reads a bare number as Unix time (``posted_from=1.9`` was 1970, a large one
    milliseconds): an instant or a day is written as RFC 3339 / ISO 8601, or refused."""
    if isinstance(value, str) and NUMBER.fullmatch(value):
        raise ValueError("must be written as an RFC 3339 date or instant, not a number")
    return value


Instant = Annotated[
    AwareDatetime, BeforeValidator(written_as_a_date), AfterValidator(bounds.instant)
]
Day = Annotated[date, BeforeValidator(written_as_a_date), AfterValidator(bounds.day)]
