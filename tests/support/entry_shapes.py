"""The malformed stream-entry shapes both tiers of the entry-field tests use: each with the
code and the words of its refusal."""

from __future__ import annotations

from support.ledger_support import api

ONE = api("r1", count=1)
FIVE_HUNDRED = api("r1", count=500)

Pairs = list[tuple[bytes, bytes]]
SHAPES: dict[str, tuple[Pairs, str, str]] = {
    "two event fields": (
        [(b"event", ONE), (b"event", FIVE_HUNDRED)],
        "repeated_field",
        "stream entry with the field 'event' more than once: which value is meant is ambiguous"
        " (fields: event, event)",
    ),
    "a field beside event": (
        [(b"event", ONE), (b"payload", b"x" * 70_000)],
        "unexpected_field",
        "stream entry with fields beside 'event': 'payload' (an entry has only 'event')",
    ),
    "a field before event": (
        [(b"traceparent", b"00-4bf9-00f0-01"), (b"event", ONE)],
        "unexpected_field",
        "fields beside 'event': 'traceparent'",
    ),
    "another field twice, no event": (
        [(b"payload", ONE), (b"payload", ONE)],
        "repeated_field",
        "the field 'payload' more than once",
    ),
    "no event field": (
        [(b"payload", ONE)],
        "missing_event_field",
        "stream entry without the 'event' field (fields: payload)",
    ),
}
