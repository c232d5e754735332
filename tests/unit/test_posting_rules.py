"""Posting rules, pure: every entry the ledger posts balances per unit, on the accounts the
rules name; an unbalanced entry is refused before it reaches the database."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain import ledger
from tally.domain.allocation import billed_units
from tally.domain.ledger import (
    AI_TOKEN,
    API_REQUEST,
    Account,
    Charge,
    Entry,
    Line,
    UnbalancedEntry,
    allowance,
    expiry_entry,
    grant_entry,
    imbalance,
    overage_entry,
    usage,
    usage_entry,
)

amounts = st.decimals(min_value=0, max_value=10**9, places=6, allow_nan=False)


def lines_of(entry: Entry) -> dict[str, Decimal]:
    return {line.account.code: line.amount for line in entry.lines}


def per_unit(entry: Entry) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in entry.lines:
        totals[line.account.unit] += line.amount
    return dict(totals)


def test_account_codes() -> None:
    assert usage("acme", "2026-10", API_REQUEST).code == "org/acme/2026-10/api_request/usage"
    assert usage("acme", "2026-10", AI_TOKEN, "voice_bot").code == (
        "org/acme/2026-10/ai_token/usage/voice_bot"
    )
    assert allowance("acme", "2026-10", AI_TOKEN).code == "org/acme/2026-10/ai_token/allowance"
    assert Account("platform", "2026-10", "USD", "revenue", AI_TOKEN).code == (
        "platform/2026-10/USD/revenue/ai_token"
    )


def test_api_usage_draws_the_allowance() -> None:
    entry = usage_entry("k", "acme", "2026-10", API_REQUEST, {None: Decimal(3)}, "2020-01")
    assert (entry.kind, entry.org, entry.period, entry.rate_card_version) == (
        "usage",
        "acme",
        "2026-10",
        "2020-01",
    )
    assert lines_of(entry) == {
        "org/acme/2026-10/api_request/usage": 3,
        "org/acme/2026-10/api_request/allowance": -3,
    }


def test_ai_usage_has_a_line_per_feature_and_one_allowance_line() -> None:
    features = {"voice_bot": Decimal("0.058824"), "ai_scoring": Decimal(2)}
    entry = usage_entry("k", "acme", "2026-10", AI_TOKEN, features, "2020-01")  # type: ignore[arg-type]
    assert lines_of(entry) == {
        "org/acme/2026-10/ai_token/usage/voice_bot": Decimal("0.058824"),
        "org/acme/2026-10/ai_token/usage/ai_scoring": 2,
        "org/acme/2026-10/ai_token/allowance": Decimal("-2.058824"),
    }


@given(st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), amounts, min_size=1))
def test_any_usage_posting_balances(features: dict[str, Decimal]) -> None:
    entry = usage_entry("k", "acme", "2026-10", AI_TOKEN, features, "v")  # type: ignore[arg-type]
    assert imbalance(entry.lines) == {}
    assert sum(line.amount for line in entry.lines) == 0


def test_the_grant_fills_the_allowance_from_the_platform() -> None:
    entry = grant_entry("k", "acme", "2026-10", API_REQUEST, Decimal(2_200_000), "2020-01")
    assert entry.kind == "grant"
    assert lines_of(entry) == {
        "org/acme/2026-10/api_request/allowance": 2_200_000,
        "platform/2026-10/api_request/granted": -2_200_000,
    }


def test_expiry_empties_the_allowance_and_a_reversal_gives_it_back() -> None:
    expiry = expiry_entry("k", "acme", "2026-10", AI_TOKEN, Decimal(300), "2020-01")
    assert expiry.kind == "expiry"
    assert lines_of(expiry) == {
        "org/acme/2026-10/ai_token/allowance": -300,
        "platform/2026-10/ai_token/expired": 300,
    }
    reversal = expiry_entry("k2", "acme", "2026-10", AI_TOKEN, Decimal(-40), "2020-01")
    assert reversal.kind == "expiry_reversal"
    assert lines_of(reversal) == {
        "org/acme/2026-10/ai_token/allowance": 40,
        "platform/2026-10/ai_token/expired": -40,
    }


def test_overage_sells_the_deficit_and_keeps_every_rounding_apart() -> None:
    charge = Charge("EUR", "2026-10", exact=Decimal("80.8"), amount=Decimal("80.80"))
    entry = overage_entry(
        "k", "acme", "2026-10", AI_TOKEN, Decimal("100.000001"), Decimal(101), charge, "2020-01"
    )
    assert entry.kind == "overage"
    assert lines_of(entry) == {
        "org/acme/2026-10/ai_token/allowance": Decimal("100.000001"),
        "platform/2026-10/ai_token/overage": -101,
        "platform/2026-10/ai_token/unit_rounding": Decimal("0.999999"),
        "org/acme/2026-10/EUR/receivable": Decimal("80.80"),
        "platform/2026-10/EUR/revenue/ai_token": Decimal("-80.8"),
        # no money rounding here: a zero line is left out
    }
    assert per_unit(entry) == {AI_TOKEN: 0, "EUR": 0}


def test_overage_of_a_late_period_is_receivable_on_the_later_invoice() -> None:
    charge = Charge("USD", "2026-11", exact=Decimal("0.005"), amount=Decimal("0.01"))
    entry = overage_entry(
        "k", "acme", "2026-10", API_REQUEST, Decimal(50), Decimal(50), charge, "2020-01"
    )
    assert lines_of(entry)["org/acme/2026-11/USD/receivable"] == Decimal("0.01")
    assert lines_of(entry)["platform/2026-10/USD/rounding"] == Decimal("-0.005")
    assert "platform/2026-10/api_request/unit_rounding" not in lines_of(entry)


@given(
    deficit=amounts,
    whole=st.booleans(),
    price=st.decimals(min_value=0, max_value=1000, places=5, allow_nan=False),
    minor=st.sampled_from([0, 2, 3]),
    grant=amounts,
    expired=amounts,
)
def test_any_close_posting_balances_per_unit(
    deficit: Decimal, whole: bool, price: Decimal, minor: int, grant: Decimal, expired: Decimal
) -> None:
    billed = billed_units(deficit, "up" if whole else "none")
    exact = billed * price
    charge = Charge("JPY", "2026-10", exact, exact.quantize(Decimal(1).scaleb(-minor)))
    entries = [
        overage_entry("o", "acme", "2026-10", AI_TOKEN, deficit, billed, charge, "v"),
        grant_entry("g", "acme", "2026-10", AI_TOKEN, grant, "v"),
        expiry_entry("e", "acme", "2026-10", AI_TOKEN, expired, "v"),
        expiry_entry("r", "acme", "2026-10", AI_TOKEN, -expired, "v"),
    ]
    for entry in entries:
        assert imbalance(entry.lines) == {}
        assert all(line.amount != 0 for line in entry.lines)  # zero lines are left out


def test_the_balance_check_refuses_an_unbalanced_entry() -> None:
    apr = usage("acme", "2026-10", API_REQUEST)
    tokens = allowance("acme", "2026-10", AI_TOKEN)
    lines = [Line(apr, Decimal(3)), Line(tokens, Decimal(-3))]  # sums to 0, not per unit
    assert imbalance(lines) == {API_REQUEST: 3, AI_TOKEN: -3}
    with pytest.raises(UnbalancedEntry, match="api_request"):
        ledger._entry("k", "grant", "acme", "2026-10", "v", lines)
    with pytest.raises(UnbalancedEntry):
        ledger._entry("k", "grant", "acme", "2026-10", "v", [Line(apr, Decimal("0.1"))])
    assert imbalance([Line(apr, Decimal("1.50")), Line(apr, Decimal("-1.5"))]) == {}
