"""The values the ledger can represent, at their edges: what a URL may carry."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tally.domain import bounds


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize(
    "instant",
    ["0001-01-01T00:00:00+00:00", "9998-12-31T23:59:59.999999+00:00", "9998-12-31T09:59:59-14:00"],
)
def test_an_instant_inside_the_periods_is_accepted_with_any_offset(instant: str) -> None:
    assert bounds.instant(at(instant)) == at(instant)


@pytest.mark.parametrize(
    "instant",
    [
        "9999-12-31T23:59:59-14:00",  # 10000-01-01 in UTC: beyond Python's calendar
        "0001-01-01T00:00:00+14:00",  # year 0 in UTC
        "9999-01-01T00:00:00+00:00",  # in 9999-12's year: no period after it to end it
        "9998-12-31T23:59:59-14:00",
    ],
)
def test_an_instant_whose_utc_leaves_the_periods_is_refused(instant: str) -> None:
    with pytest.raises(ValueError, match="instant must be"):
        bounds.instant(at(instant))


def test_periods_days_and_text_at_their_edges() -> None:
    assert [bounds.period(p) for p in ("0001-01", "9998-12")] == ["0001-01", "9998-12"]
    for period in ("0000-12", "9999-01", "2026-13"):
        with pytest.raises(ValueError, match="0001-01 to 9998-12"):
            bounds.period(period)
    assert bounds.day(date(9998, 12, 31)) == date(9998, 12, 31)
    with pytest.raises(ValueError):
        bounds.day(date(9999, 1, 1))
    assert bounds.text("acme é ✓") == "acme é ✓"
    for text in ("a\x00b", "\ud800", "x\udfff"):
        with pytest.raises(ValueError, match="NUL"):
            bounds.text(text)
