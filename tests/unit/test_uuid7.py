"""The SDK's event ids: UUIDv7, time-ordered, increasing (no server needed)."""

from __future__ import annotations

import time
import uuid

from tally.sdk.producer import UUID7Generator, format_uuid7, uuid7


def test_uuid7_layout() -> None:
    ms = 0x0197_1234_5678
    text = format_uuid7(ms, (1 << 74) - 1)
    value = uuid.UUID(text)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == ms
    assert text == str(value)


def test_uuid7_ids_are_time_ordered_and_increase() -> None:
    generate = UUID7Generator()
    before = time.time_ns() // 1_000_000
    ids = [generate() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids[::1000]:
        value = uuid.UUID(text)
        assert value.version == 7 and value.variant == uuid.RFC_4122
        # many ids per ms push the timestamp ahead a little at most
        assert before <= value.int >> 80 <= after + 50
    assert uuid7() < uuid7()
