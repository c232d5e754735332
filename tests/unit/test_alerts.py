"""Threshold alert rules: which thresholds a meter's reading has crossed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.alerts import (
    DEFAULT_THRESHOLDS,
    Kind,
    Reading,
    crossed,
    parse_thresholds,
    reading,
)

amounts = st.decimals(min_value=0, max_value=10**9, places=2)
percents = st.decimals(min_value=Decimal("0.01"), max_value=1000, places=2)


def kinds(r: Reading, thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS) -> set[str]:
    return {f"{c.kind}:{c.threshold}" for c in crossed(r, thresholds)}


def test_seed_003_dashboard_month_crosses_nothing_then_80_then_100() -> None:
    def at(used: int) -> Reading:
        return Reading("acme", "2026-03", "ai_token", Decimal(used), Decimal(50_000), Decimal(used))

    assert kinds(at(19_810)) == set()
    assert kinds(at(40_000)) == {"used:80"}
    assert kinds(at(50_000)) == {"used:80", "used:100"}
    assert kinds(at(50_001)) == {"used:80", "used:100", "projected:100"}


def test_projection_over_100_alerts_before_usage_does() -> None:
    # half the allocation used a third of the way into March: heading for 150 %
    r = reading(
        "acme", "2026-03", "api_request", Decimal(500), Decimal(1000),
        datetime(2026, 3, 11, 8, tzinfo=UTC),
    )  # fmt: skip
    assert r.projected == Decimal(1500)
    assert kinds(r) == {"projected:100"}


def test_no_allocation_no_alert() -> None:
    assert not crossed(
        Reading("a", "2026-03", "ai_token", Decimal(9), Decimal(0), Decimal(99)), DEFAULT_THRESHOLDS
    )


@given(used=amounts, allocation=amounts, projected=amounts, thresholds=st.lists(percents))
def test_crossed_is_exactly_the_thresholds_reached(
    used: Decimal, allocation: Decimal, projected: Decimal, thresholds: list[Decimal]
) -> None:
    r = Reading("acme", "2026-03", "api_request", used, allocation, projected)
    found = crossed(r, thresholds)
    if allocation == 0:
        assert found == []
        return
    used_at = {c.threshold for c in found if c.kind is Kind.USED}
    assert used_at == {t for t in thresholds if used * 100 >= t * allocation}
    assert any(c.kind is Kind.PROJECTED for c in found) == (projected * 100 > 100 * allocation)
    assert len(found) == len({(c.kind, c.threshold) for c in found})  # each key once


@given(allocation=amounts.filter(bool), thresholds=st.lists(percents, min_size=1))
def test_more_usage_never_uncrosses_a_threshold(
    allocation: Decimal, thresholds: list[Decimal]
) -> None:
    steps = [allocation * Decimal(n) / 10 for n in range(13)]
    seen: set[str] = set()
    for used in steps:
        now = kinds(Reading("a", "2026-03", "ai_token", used, allocation, used), tuple(thresholds))
        assert seen <= now
        seen = now


def test_thresholds_parse_and_refuse_nonsense() -> None:
    assert parse_thresholds("100, 75,90,90") == (Decimal(75), Decimal(90), Decimal(100))
    for bad in ("", "0", "-5", "eighty", "1001", "NaN", "80,,inf"):
        with pytest.raises(ValueError):
            parse_thresholds(bad)
