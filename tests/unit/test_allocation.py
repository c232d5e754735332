"""Month-close arithmetic against the seeds' worked examples and an independent model
(pure; tests/test_month_close.py runs the same rules through the ledger)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction
from math import ceil, floor

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tally.adapters.ratecard_files import bundled_cards
from tally.domain.allocation import (
    LicenseDay,
    allocation,
    billable_users,
    price_meter,
    with_commitments,
)
from tally.domain.ratecard import RateCard

CARD = bundled_cards()[0]


def api_line(users: int, requests: int, currency: str) -> tuple[Decimal, Decimal, Decimal]:
    seats = billable_users([LicenseDay("gc2", "named", date(2026, 11, 3), users=users)])
    allowed = allocation(seats, CARD).api_requests
    line = price_meter(
        allowed, Decimal(requests), CARD.api.price[currency], CARD.currencies[currency]
    )
    return line.allocation, line.overage, line.amount


@pytest.mark.parametrize(
    ("currency", "amount"),
    [("USD", "80.00"), ("EUR", "64.00"), ("JPY", "9600"), ("GBP", "56.00"), ("ZAR", "1136.00")],
)
def test_the_fair_use_example_in_each_currency(currency: str, amount: str) -> None:
    """gc2 named, 20 users, 3,000,000 requests: allocation 2,200,000, overage 800,000."""
    allowed, over, money = api_line(20, 3_000_000, currency)
    assert (allowed, over) == (Decimal(2_200_000), Decimal(800_000))
    assert str(money) == amount


@pytest.mark.parametrize(
    ("agents", "tokens", "allowed"),
    [(50, 4_700, 12_500), (200, 19_810, 50_000), (1_000, 93_527, 250_000)],
)
def test_the_seed_003_centres_have_no_ai_overage(agents: int, tokens: int, allowed: int) -> None:
    seats = {("gc3", "named"): Decimal(agents)}
    line = price_meter(
        allocation(seats, CARD).ai_tokens, Decimal(tokens), CARD.ai.price["USD"], 2, "up"
    )
    assert line.allocation == allowed
    assert line.overage == 0 and line.amount == 0
    assert line.expired == allowed - tokens  # no carryover: the rest expires


def test_a_centre_over_its_tokens_pays_whole_tokens_rounded_up() -> None:
    seats = {("gc2", "named"): Decimal(10), ("gc2", "concurrent"): Decimal(2)}
    allowed = allocation(seats, CARD).ai_tokens  # 10 * 250 + 2 * 350
    line = price_meter(allowed, Decimal("3300.000001"), CARD.ai.price["EUR"], 2, "up")
    assert allowed == 3_200
    assert line.overage == 101  # 100.000001 tokens, billed as 101
    assert line.amount == Decimal("80.80")


def test_named_concurrent_and_hourly_count_differently_and_pool() -> None:
    days = [
        LicenseDay("gc1", "named", date(2026, 11, 2), users=12),
        LicenseDay("gc1", "named", date(2026, 11, 3), users=15),  # highest day counts
        LicenseDay("gc1", "named", date(2026, 11, 4), users=9),
        LicenseDay("gc2", "concurrent", date(2026, 11, 2), users=4),
        LicenseDay("gc2", "concurrent", date(2026, 11, 9), users=6),  # highest daily peak
        LicenseDay("gc3", "hourly", date(2026, 11, 2), hours=Decimal("7.5")),
        LicenseDay("gc3", "hourly", date(2026, 11, 3), hours=Decimal("4")),  # hours add up
    ]
    seats = billable_users(days)
    assert seats == {
        ("gc1", "named"): 15,
        ("gc2", "concurrent"): 6,
        ("gc3", "hourly"): Decimal("11.5"),
    }
    pooled = allocation(seats, CARD)
    assert pooled.api_requests == 15 * 75_000 + 6 * 143_000 + Decimal("11.5") * 1_261
    assert pooled.ai_tokens == 15 * 250 + 6 * 350  # hourly seats bring no AI tokens


def test_a_committed_minimum_counts_only_when_higher_than_the_usage() -> None:
    used = {("gc2", "named"): Decimal(14), ("gc1", "named"): Decimal(30)}
    committed = {("gc2", "named"): Decimal(20), ("gc1", "named"): Decimal(25)}
    assert with_commitments(used, committed) == {
        ("gc2", "named"): 20,  # commitment above usage
        ("gc1", "named"): 30,  # usage above commitment
    }
    assert with_commitments({}, {("gc3", "named"): Decimal(5)}) == {("gc3", "named"): 5}


def half_up(value: Fraction, minor: int) -> Fraction:
    scaled = value * 10**minor
    return Fraction(floor(scaled + Fraction(1, 2)), 10**minor)


@given(
    allowed=st.integers(0, 10**9),
    used=st.integers(0, 10**9),
    currency=st.sampled_from(sorted(CARD.currencies)),
    tokens=st.booleans(),
    fraction=st.integers(0, 999_999),
)
def test_a_line_equals_an_independent_computation(
    allowed: int, used: int, currency: str, tokens: bool, fraction: int
) -> None:
    used_exact = Fraction(used) + Fraction(fraction, 10**6)
    price = (CARD.ai if tokens else CARD.api).price[currency]
    minor = CARD.currencies[currency]
    line = price_meter(
        Decimal(allowed),
        Decimal(used) + Decimal(fraction).scaleb(-6),
        price,
        minor,
        "up" if tokens else "none",
    )
    over = max(used_exact - allowed, Fraction(0))
    if tokens:
        over = Fraction(ceil(over))
    assert Fraction(line.overage) == over
    assert Fraction(line.amount) == half_up(over * Fraction(price), minor)
    assert Fraction(line.amount) - Fraction(line.money.rounding) == over * Fraction(price)
    assert Fraction(line.expired) == max(Fraction(allowed) - used_exact, Fraction(0))
    assert abs(line.money.rounding) <= Fraction(1, 2 * 10**minor)


def test_a_seat_the_card_does_not_price_is_refused_not_ignored() -> None:
    with pytest.raises(ValueError, match="no allocation for communicate concurrent"):
        allocation({("communicate", "concurrent"): Decimal(3)}, CARD)  # type: ignore[dict-item]


def test_a_rate_card_takes_effect_at_the_start_of_a_month() -> None:
    body = CARD.model_dump()
    with pytest.raises(ValidationError, match="start of a UTC month"):
        RateCard.model_validate(body | {"effective_from": "2026-10-15T00:00:00Z"})
    assert RateCard.model_validate(body | {"effective_from": "2026-10-01T02:00:00+02:00"})
