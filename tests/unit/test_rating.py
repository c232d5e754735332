"""Rating, pure: one stream entry against the wire contract, the organizations and the rate
card gives a rated event (metered, non-billable or recorded) or a reject with its code."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from math import ceil

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.ledger_support import ai, api, event
from tally.adapters.ratecard_files import bundled_cards
from tally.domain.ledger import AI_TOKEN, API_REQUEST
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    Limits,
    Rated,
    Reject,
    SourceGrant,
    ai_quantities,
    rate,
    usage_postings,
)

CARD = bundled_cards()[-1]
BOOK = RateCardBook(bundled_cards())
ORGS = {"acme": "USD", "initech": "JPY"}
LIMITS = Limits(max_event_bytes=65_536, max_future_skew=timedelta(minutes=5))
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def rated(raw: bytes, **kwargs: object) -> Rated | Reject:
    return rate("7-0", {b"event": raw}, ORGS, BOOK, LIMITS, NOW, **kwargs)  # type: ignore[arg-type]


def metered(raw: bytes, **kwargs: object) -> Rated:
    result = rated(raw, **kwargs)
    assert isinstance(result, Rated), result
    return result


def rejected(raw: bytes, **kwargs: object) -> Reject:
    result = rated(raw, **kwargs)
    assert isinstance(result, Reject), result
    return result


@pytest.mark.parametrize("kind", sorted(CARD.api.billable_client_kinds))
def test_a_billable_client_kind_meters_its_count_of_api_requests(kind: str) -> None:
    result = metered(api("r1", count=7, kind=kind))
    assert (result.status, result.meter, result.quantity) == ("metered", API_REQUEST, 7)
    assert (result.org, result.period, result.rate_card_version) == ("acme", "2026-10", "2020-01")
    assert (result.key, result.stream_id, result.feature) == (("test", "r1"), "7-0", None)


@pytest.mark.parametrize("kind", sorted(CARD.api.non_billable_client_kinds))
def test_a_non_billable_client_kind_is_stored_but_meters_nothing(kind: str) -> None:
    result = metered(api("r1", count=7, kind=kind))
    assert (result.status, result.meter, result.quantity) == ("non_billable", None, 7)


def test_an_unknown_client_kind_is_refused() -> None:
    reject = rejected(api("r1", kind="fax"))
    assert reject.code == "unknown_client_kind"
    assert (reject.source, reject.event_id) == ("test", "r1")


@pytest.mark.parametrize(("feature", "conversion"), sorted(CARD.ai.features.items()))
def test_each_ai_feature_meters_its_own_unit_converted_by_the_card(
    feature: str, conversion: object
) -> None:
    unit, tokens, per = (getattr(conversion, name) for name in ("unit", "tokens", "per"))
    result = metered(ai("a1", feature, "340", unit))
    assert (result.status, result.meter, result.feature) == ("metered", AI_TOKEN, feature)
    assert result.quantity == 340  # in the feature's unit; tokens come from the card
    expected = Decimal(ceil(Decimal(340) * tokens / per * 10**6)) / 10**6
    assert CARD.tokens(feature, result.quantity) == expected


@pytest.mark.parametrize(
    ("feature", "quantity", "unit", "tokens"),
    [
        ("agent_copilot", "1234", "token", "1234"),
        ("ai_scoring", "20", "evaluation", "1"),  # 1 token per 20 evaluations
        ("ai_translate", "250", "minute", "2.5"),
        ("voice_bot", "1", "minute", "0.058824"),  # 1/17, rounded up at 6 places
        ("digital_bot", "102", "session", "2"),
        ("messaging", "1", "message", "0.0025"),
        ("virtual_agent", "3", "session", "6"),  # 2 tokens a session
        ("predictive_routing", "1000", "interaction", "0"),
    ],
)
def test_the_seed_003_conversions(feature: str, quantity: str, unit: str, tokens: str) -> None:
    result = metered(ai("a1", feature, quantity, unit))
    assert CARD.tokens(feature, result.quantity) == Decimal(tokens)


def test_ai_usage_is_posted_as_the_cards_tokens_per_feature() -> None:
    events = [
        metered(ai("a1", "ai_scoring", "30", "evaluation")),
        metered(ai("a2", "ai_scoring", "10", "evaluation")),
        metered(ai("a3", "virtual_agent", "2", "session")),
    ]
    batch = ai_quantities(events)
    [posting] = usage_postings(events, BOOK, batch, batch)  # nothing metered before
    lines = {line.account.code: line.amount for line in posting.entry.lines}
    assert lines == {
        "org/acme/2026-10/ai_token/usage/ai_scoring": 2,  # 40 evaluations / 20
        "org/acme/2026-10/ai_token/usage/virtual_agent": 4,
        "org/acme/2026-10/ai_token/allowance": -6,
    }


@pytest.mark.parametrize(
    ("feature", "unit", "code"),
    [("ai_scoring", "minute", "wrong_unit"), ("telepathy", "thought", "unknown_feature")],
)
def test_an_ai_feature_or_unit_the_card_does_not_know_is_refused(
    feature: str, unit: str, code: str
) -> None:
    assert rejected(ai("a1", feature, "1", unit)).code == code


@pytest.mark.parametrize(
    ("model", "amount", "quantity"),
    [("named", 20, 20), ("concurrent", 5, 5), ("hourly", "7.5", 7.5)],
)
def test_a_license_report_is_recorded_not_metered(
    model: str, amount: object, quantity: float
) -> None:
    data = {"license": "gc2", "model": model, "hours" if model == "hourly" else "users": amount}
    result = metered(event("license.usage", "l1", data))
    assert (result.status, result.meter, result.quantity) == ("recorded", None, Decimal(quantity))
    assert result.license is not None and result.license.model == model


def test_a_license_model_the_card_does_not_price_is_refused() -> None:
    data = {"license": "communicate", "model": "hourly", "hours": 3}
    assert rejected(event("license.usage", "l1", data)).code == "unknown_license_model"


def test_an_unknown_organization_is_refused_and_named() -> None:
    reject = rejected(api("r1", org="hooli"))
    assert (reject.code, reject.unknown_org) == ("unknown_organization", "hooli")
    assert "tally org add" in reject.reason


def test_an_event_from_the_future_or_before_any_card_is_refused() -> None:
    assert rejected(api("r1", time="2026-11-01T00:06:00Z")).code == "future_time"
    assert metered(api("r1", time="2026-11-01T00:04:00Z")).period == "2026-11"
    assert rejected(api("r1", time="2019-12-31T23:59:59Z")).code == "no_rate_card"


def test_the_period_is_the_utc_month() -> None:
    assert metered(api("r1", time="2026-10-01T01:30:00+02:00")).period == "2026-09"
    assert metered(api("r1", time="2026-09-30T23:30:00-02:00")).period == "2026-10"


def test_sources_are_checked_only_when_a_registry_is_given() -> None:
    sources = {
        "crm": SourceGrant(False, frozenset({"acme"})),
        "etl": SourceGrant(True, frozenset()),
    }
    assert metered(api("r1", source="crm"), sources=sources).org == "acme"
    assert metered(api("r1", source="etl", org="initech"), sources=sources).org == "initech"
    assert rejected(api("r1", source="crm", org="initech"), sources=sources).code == (
        "organization_not_allowed"
    )
    assert rejected(api("r1", source="nobody"), sources=sources).code == "unknown_source"
    assert metered(api("r1", source="nobody")).source == "nobody"


@given(count=st.integers(1, 10**9), kind=st.sampled_from(sorted(CARD.api.billable_client_kinds)))
def test_any_billable_count_is_metered_exactly(count: int, kind: str) -> None:
    assert metered(api("r1", count=count, kind=kind)).quantity == count
