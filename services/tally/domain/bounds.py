"""What the ledger can represent, so what a value from outside (a URL's path, its query, a
form) may be: anything else is refused with a reason before it reaches PostgreSQL or the
period arithmetic. Pure.

- text: PostgreSQL refuses NUL in text, and UTF-8 (so asyncpg) has no lone surrogates;
- ids: PostgreSQL's bigint, and every id is a bigserial: 1 to 2**63 - 1;
- periods ``FIRST_PERIOD`` to ``LAST_PERIOD`` (0001-01 to 9998-12);
- instants and days inside those periods, whatever offset an instant is written with
  (9999-12-31T23:59:59-14:00 is in the year 10000 in UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

from tally.domain.period import FIRST_PERIOD, LAST_PERIOD, is_period, period_bounds

MAX_ID = 2**63 - 1
EARLIEST = period_bounds(FIRST_PERIOD)[0]
END = period_bounds(LAST_PERIOD)[1]  # the first instant after the last period
UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def text(value: str) -> str:
    """``value``, if PostgreSQL can compare it with stored text."""
    if UNSTORABLE.search(value):
        raise ValueError("text must not contain NUL (U+0000) or a lone surrogate")
    return value


def instant(value: datetime) -> datetime:
    """``value`` (aware), if its UTC instant falls in a period the ledger can represent."""
    try:
        inside = EARLIEST <= value.astimezone(UTC) < END
    except OverflowError:  # its UTC instant leaves Python's calendar
        inside = False
    if not inside:
        raise ValueError(
            f"instant must be from {EARLIEST:%Y-%m-%dT%H:%M:%SZ} to before "
            f"{END:%Y-%m-%dT%H:%M:%SZ} (UTC)"
        )
    return value


def day(value: date) -> date:
    """``value``, if it is a day of a period the ledger can represent."""
    if not EARLIEST.date() <= value < END.date():
        raise ValueError(f"day must be from {EARLIEST.date()} to before {END.date()}")
    return value


def period(value: str) -> str:
    """``value``, if it is a period ``YYYY-MM`` the ledger can represent."""
    if not is_period(value):
        raise ValueError(f"period must be YYYY-MM from {FIRST_PERIOD} to {LAST_PERIOD}")
    return value
