"""Billing periods: the UTC calendar month, written ``YYYY-MM``. Pure."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
# Python's calendar ends with 9999, and a period ends where the next month starts.
FIRST_PERIOD, LAST_PERIOD = "0001-01", "9998-12"


def period_of(utc_time: datetime) -> str:
    """The period an instant (already in UTC) falls in."""
    return f"{utc_time.year:04d}-{utc_time.month:02d}"


def is_period(value: str) -> bool:
    """``YYYY-MM`` with a month 01-12 and a year whose month and the next are representable."""
    return bool(PERIOD.match(value)) and FIRST_PERIOD <= value <= LAST_PERIOD


def parse_period(period: str) -> tuple[int, int]:
    """(year, month) of ``YYYY-MM``; a ValueError says what was expected."""
    try:
        start = datetime.strptime(period, "%Y-%m").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"period must be YYYY-MM, got {period!r}") from None
    return start.year, start.month


def period_bounds(period: str) -> tuple[datetime, datetime]:
    """The first instant of the UTC month and of the next one."""
    year, month = (int(part) for part in period.split("-"))
    start = datetime(year, month, 1, tzinfo=UTC)
    end = datetime(year + month // 12, month % 12 + 1, 1, tzinfo=UTC)
    return start, end


def previous_period(now: datetime) -> str:
    """The period before the one ``now`` falls in (the month a close defaults to)."""
    return period_of(now.astimezone(UTC).replace(day=1) - timedelta(days=1))


def closable_from(period: str, grace: timedelta) -> datetime:
    """Usage is reported late: a period closes only once it ended plus the grace time."""
    return period_bounds(period)[1] + grace
