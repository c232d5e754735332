"""What leaves Tally for an alert: the CloudEvent and its stable id, the retry schedule."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tally.domain.alert_delivery import (
    AlertEvent,
    AlertKey,
    AlertRecord,
    RetryPolicy,
    cloud_event,
    delivered,
)

AT = datetime(2026, 3, 20, 9, 30, tzinfo=UTC)
ALERT = AlertRecord(
    7, "acme", "2026-03", "ai_token", "used", Decimal(80), Decimal("40000.5"), Decimal(50_000),
    Decimal("61000.000000"), AT,
)  # fmt: skip


def test_the_event_id_is_the_alerts_key_not_its_row() -> None:
    same = replace(ALERT, id=8, threshold=Decimal("80.00"), used=Decimal(45_000))
    assert same.event_id == ALERT.event_id
    assert replace(ALERT, kind="projected").event_id != ALERT.event_id
    assert replace(ALERT, org="globex").event_id != ALERT.event_id


def test_the_cloud_event_carries_exact_decimals_as_strings() -> None:
    event = cloud_event(ALERT)
    assert event["specversion"] == "1.0" and event["type"] == "tally.alert.threshold_crossed"
    assert event["time"] == "2026-03-20T09:30:00Z" and event["subject"] == "acme"
    assert event["data"]["threshold_percent"] == "80"
    assert (event["data"]["used"], event["data"]["projected"]) == ("40000.5", "61000")


def test_the_published_event_leads_back_to_its_alert() -> None:
    read = AlertEvent.model_validate_json(json.dumps(cloud_event(ALERT)))
    assert read.key() == AlertKey("acme", "2026-03", "ai_token", "used", Decimal(80))
    assert read.model_dump(mode="json") == cloud_event(ALERT)


def test_retries_double_up_to_the_cap_then_give_up() -> None:
    policy = RetryPolicy(timedelta(seconds=30), timedelta(minutes=3), max_attempts=5)
    waits = [policy.next_at(n, AT) for n in range(1, 6)]
    assert [w - AT if w else None for w in waits] == [
        timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=3),
        None,
    ]  # fmt: skip


@given(attempt=st.integers(1, 100), cap_s=st.integers(1, 10**6))
def test_a_wait_is_never_past_the_cap(attempt: int, cap_s: int) -> None:
    policy = RetryPolicy(timedelta(seconds=1), timedelta(seconds=cap_s), max_attempts=100)
    due = policy.next_at(attempt, AT)
    assert (due is None) == (attempt >= 100)
    assert due is None or AT < due <= AT + timedelta(seconds=cap_s)


def test_only_2xx_is_delivered() -> None:
    assert [delivered(c) for c in (None, 199, 200, 204, 299, 300, 500)] == [
        False, False, True, True, True, False, False,
    ]  # fmt: skip
