"""The synthetic mix: deterministic, valid by construction, honest summary, ``tally loadgen``."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tally.adapters.ratecard_files import bundled_cards
from tally.config import get_settings
from tally.domain.events import (
    AiUsageEvent,
    ApiRequestEvent,
    InvalidEvent,
    LicenseUsageEvent,
    parse_event,
)
from tally_tools.loadgen import BAD_CLASSES, NEEDS_CONTEXT, LoadEntry, LoadMix, LoadSummary


def generate(*args: Any, **kwargs: Any) -> tuple[list[LoadEntry], LoadSummary]:
    """The whole mix as a list, with its summary."""
    mix = LoadMix(*args, **kwargs)
    return list(mix), mix.summary


ORGS = ["acme", "globex", "initech"]
CARD = bundled_cards()[-1]


def raw(entry: LoadEntry) -> bytes:
    """The ``event`` bytes of an entry that has them."""
    assert isinstance(entry.value, bytes)
    return entry.value


@pytest.fixture(scope="module")
def mix() -> tuple[list[LoadEntry], LoadSummary]:
    return generate(ORGS, "2026-10", 12_000, seed=11, duplicates=0.05, bad=0.04)


def test_same_seed_same_entries_other_seed_other_ids() -> None:
    first, summary = generate(ORGS, "2026-10", 3000, seed=7)
    again, summary_again = generate(ORGS, "2026-10", 3000, seed=7)
    other, _ = generate(ORGS, "2026-10", 3000, seed=8)
    assert first == again
    assert summary == summary_again
    assert first != other
    ids = {json.loads(raw(e))["id"] for e in first if e.kind == "event"}
    other_ids = {json.loads(raw(e))["id"] for e in other if e.kind == "event"}
    assert not ids & other_ids


def test_iterating_again_regenerates_the_same_mix() -> None:
    mix = LoadMix(["acme"], "2024-02", 500, seed=3)
    assert len(mix) == 500
    first = list(mix)
    summary = mix.summary
    assert list(mix) == first
    assert mix.summary == summary


def test_shares_are_as_asked(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    entries, summary = mix
    assert len(entries) == summary.entries == 12_000
    kinds = Counter(entry.kind for entry in entries)
    assert kinds == {"event": summary.good, "duplicate": 600, "bad": 480}
    assert summary.duplicates == 600 and summary.bad_total == 480
    # every class of bad entry, spread evenly
    assert set(summary.bad) == set(BAD_CLASSES)
    assert all(count == 40 for count in summary.bad.values())
    assert Counter(e.label for e in entries if e.kind == "bad") == summary.bad
    types = Counter(e.label for e in entries if e.kind == "event")
    assert types == summary.by_type
    good = summary.good
    assert 0.76 < types["api.request"] / good < 0.84
    assert 0.16 < types["ai.usage"] / good < 0.20
    assert 0 < types["license.usage"] / good <= 0.021


def test_good_events_are_valid_and_plausible(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    entries, _ = mix
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    kinds: Counter[str] = Counter()
    features: set[str] = set()
    string_quantities = 0
    for entry in entries:
        if entry.kind == "bad":
            continue
        assert isinstance(entry.value, bytes)
        event = parse_event(raw(entry))
        assert event.type == entry.label
        assert event.subject in ORGS
        assert start <= event.utc_time < end and event.period == "2026-10"
        if isinstance(event, ApiRequestEvent):
            kinds[event.data.client_kind] += 1
        elif isinstance(event, AiUsageEvent):
            assert CARD.ai.features[event.data.feature].unit == event.data.unit
            features.add(event.data.feature)
            string_quantities += isinstance(json.loads(entry.value)["data"]["quantity"], str)
        else:
            assert isinstance(event, LicenseUsageEvent)
    billable = sum(n for kind, n in kinds.items() if kind in CARD.api.billable_client_kinds)
    assert set(kinds) <= CARD.api.billable_client_kinds | CARD.api.non_billable_client_kinds
    assert {"ui", "auth"} <= set(kinds)
    assert 0.75 < billable / sum(kinds.values()) < 0.95
    assert features == set(CARD.ai.features)
    assert string_quantities > 0


def test_one_license_report_per_org_day_and_license(
    mix: tuple[list[LoadEntry], LoadSummary],
) -> None:
    entries, summary = mix
    reports = [
        event
        for event in (parse_event(raw(e)) for e in entries if e.kind == "event")
        if isinstance(event, LicenseUsageEvent)
    ]
    keys = Counter((r.subject, r.utc_time.date(), r.data.license) for r in reports)
    assert keys and max(keys.values()) == 1
    assert {r.subject for r in reports} == set(ORGS)
    assert len(reports) == summary.by_type["license.usage"]


def test_duplicates_resend_earlier_bytes(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    entries, _ = mix
    seen: set[bytes] = set()
    for entry in entries:
        if entry.kind == "event":
            assert raw(entry) not in seen  # good events are unique
            seen.add(raw(entry))
        elif entry.kind == "duplicate":
            assert entry.value in seen
    keys = [
        (event.source, event.id)
        for event in (parse_event(raw(e)) for e in entries if e.kind == "event")
    ]
    assert len(keys) == len(set(keys))


def test_every_bad_entry_is_refused_somewhere(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    entries, _ = mix
    for entry in entries:
        if entry.kind != "bad":
            continue
        if entry.label == "missing_event_field":
            assert isinstance(entry.value, dict) and "event" not in entry.value
            continue
        assert isinstance(entry.value, bytes)
        if entry.label not in NEEDS_CONTEXT:
            with pytest.raises(InvalidEvent):
                parse_event(raw(entry))
            continue
        # valid by schema: refused with the org list, the rate card, the clock or the size
        event = parse_event(raw(entry))
        if entry.label == "unknown_org":
            assert event.subject not in ORGS
        elif entry.label == "unknown_feature":
            assert isinstance(event, AiUsageEvent) and event.data.feature not in CARD.ai.features
        elif entry.label == "wrong_unit":
            assert isinstance(event, AiUsageEvent)
            assert CARD.ai.features[event.data.feature].unit != event.data.unit
        elif entry.label == "future_time":
            assert event.utc_time.year >= 2999
        else:
            assert entry.label == "oversized"
            assert len(entry.value) > get_settings().max_event_bytes


def test_bad_classes_say_why(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    entries, _ = mix
    reasons: dict[str, set[str]] = {}
    for entry in entries:
        if entry.kind == "bad" and entry.label not in NEEDS_CONTEXT | {"missing_event_field"}:
            try:
                parse_event(raw(entry))
            except InvalidEvent as exc:
                reasons.setdefault(entry.label, set()).add(exc.reason.split(":")[0])
    assert reasons["malformed_json"] == {"malformed JSON"}
    assert reasons["unknown_type"] <= {
        "unknown type 'api.response'",
        "unknown type 'usage.unknown'",
        "unknown type 'com.example.ping'",
    }
    for name in ("missing_field", "wrong_type", "negative_quantity", "non_finite_quantity"):
        assert reasons[name] == {"schema violation"}, name


def test_summary_matches_the_events(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    """Recompute every total from the good events, independently of the generator."""
    entries, summary = mix
    billable: Counter[str] = Counter()
    non_billable: Counter[str] = Counter()
    quantity: dict[str, defaultdict[str, Decimal]] = {org: defaultdict(Decimal) for org in ORGS}
    daily: dict[tuple[str, str, str], list[Decimal]] = {}
    for entry in entries:
        if entry.kind != "event":
            continue
        event = parse_event(raw(entry))
        if isinstance(event, ApiRequestEvent):
            target = (
                billable
                if event.data.client_kind in CARD.api.billable_client_kinds
                else non_billable
            )
            target[event.subject] += event.data.count
        elif isinstance(event, AiUsageEvent):
            quantity[event.subject][event.data.feature] += event.data.quantity
        else:
            value = event.data.hours if event.data.model == "hourly" else event.data.users
            key = (event.subject, event.data.license, event.data.model)
            daily.setdefault(key, []).append(Decimal(value or 0))
    assert summary.billable_requests == dict(billable)
    assert summary.non_billable_requests == dict(non_billable)
    assert summary.ai_quantity == {org: dict(q) for org, q in quantity.items()}
    allocation: Counter[str] = Counter()
    users: dict[str, dict[str, Decimal]] = {org: {} for org in ORGS}
    for (org, lic, model), values in daily.items():
        count = sum(values, Decimal(0)) if model == "hourly" else max(values)
        users[org][f"{lic}/{model}"] = count
        allocation[org] += count * CARD.api.allocation[lic][model]  # type: ignore[index]
    assert summary.license_users == users
    assert summary.api_allocation == {org: Decimal(allocation[org]) for org in ORGS}
    for org in ORGS:
        tokens = sum(
            (CARD.tokens(feature, total) for feature, total in quantity[org].items()), Decimal(0)
        )
        assert summary.ai_tokens[org] == tokens


def test_first_org_goes_over_its_api_allocation() -> None:
    _, summary = generate(ORGS, "2026-09", 20_000, seed=1)
    overage = summary.api_overage
    assert overage["acme"] > 0
    assert overage["globex"] == 0


def test_as_dict_is_plain_data(mix: tuple[list[LoadEntry], LoadSummary]) -> None:
    _, summary = mix
    data = summary.as_dict()
    assert data["entries"] == 12_000 and data["bad"] == summary.bad
    json.dumps(data, default=str)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="period"):
        LoadMix(ORGS, "2026-13", 10)
    with pytest.raises(ValueError, match="organization"):
        LoadMix([], "2026-10", 10)
    with pytest.raises(ValueError, match="shares"):
        LoadMix(ORGS, "2026-10", 10, duplicates=0.7, bad=0.5)


def test_tiny_mixes_work() -> None:
    for n in (0, 1, 2, 13):
        entries, summary = generate(["solo"], "2026-02", n, duplicates=0.5, bad=0.5)
        assert len(entries) == summary.entries == n


# --- tally loadgen ------------------------------------------------------------------------
