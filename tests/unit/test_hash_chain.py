"""Hash chaining, pure: an entry's hash covers its lane predecessor's hash, its fields, its
lines and the events it carries, so a changed, removed or inserted row breaks the chain.
(``tally.domain.ledger.chain_hash``; the journal adapter and ``verify`` call it.) Delivery
tallies chain the same way (``tally.domain.deliveries.tally_hash``)."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tally.domain.deliveries import DeliveryCounts, tally_hash
from tally.domain.ledger import (
    API_REQUEST,
    GENESIS_HASH,
    CarriedEvent,
    Entry,
    chain_hash,
    events_digest,
    usage_entry,
)

AT = datetime(2026, 10, 15, 12, 0, tzinfo=UTC)
ENTRY = usage_entry("usage/acme/2026-10/api_request/k", "acme", "2026-10", API_REQUEST,
                    {None: Decimal(3)}, "2020-01")  # fmt: skip
EVENTS: list[CarriedEvent] = [
    ("crm", "r1", hashlib.sha256(b"one").digest()),
    ("crm", "r2", hashlib.sha256(b"two").digest()),
]


def lines(entry: Entry) -> list[tuple[str, Decimal]]:
    return [(line.account.code, line.amount) for line in entry.lines]


def link(**changes: Any) -> bytes:
    """The hash of ENTRY at lane 1, seq 1, with some argument changed."""
    args: dict[str, Any] = {
        "prev_hash": GENESIS_HASH,
        "lane": 1,
        "seq": 1,
        "posted_at": AT,
        "entry": ENTRY,
        "lines": lines(ENTRY),
        "carried": events_digest(EVENTS),
    }
    args |= changes
    return chain_hash(**args)


BASE = link()

CHANGED = {
    "predecessor": {"prev_hash": b"\x01" * 32},
    "lane": {"lane": 2},
    "seq": {"seq": 2},
    "posted_at": {"posted_at": AT + timedelta(microseconds=1)},
    "key": {"entry": replace(ENTRY, key="other")},
    "kind": {"entry": replace(ENTRY, kind="grant")},
    "org": {"entry": replace(ENTRY, org="globex")},
    "no org": {"entry": replace(ENTRY, org=None)},
    "period": {"entry": replace(ENTRY, period="2026-11")},
    "rate card": {"entry": replace(ENTRY, rate_card_version="2020-02")},
    "an amount": {"lines": [(lines(ENTRY)[0][0], Decimal(4)), lines(ENTRY)[1]]},
    "an account": {"lines": [("org/acme/2026-10/api_request/other", Decimal(3)), lines(ENTRY)[1]]},
    "a line removed": {"lines": lines(ENTRY)[:1]},
    "a line added": {"lines": [*lines(ENTRY), ("platform/x", Decimal(0))]},
    "an event removed": {"carried": events_digest(EVENTS[:1])},
    "an event added": {"carried": events_digest([*EVENTS, ("crm", "r3", bytes(32))])},
    "an event's bytes": {"carried": events_digest([EVENTS[0], ("crm", "r2", bytes(32))])},
    "an event's id": {"carried": events_digest([EVENTS[0], ("crm", "r9", EVENTS[1][2])])},
    "an event's source": {"carried": events_digest([EVENTS[0], ("etl", "r2", EVENTS[1][2])])},
    "no events": {"carried": b""},
}


def test_the_hash_is_a_sha256_of_the_same_inputs() -> None:
    assert len(BASE) == 32
    assert link() == BASE


@pytest.mark.parametrize("change", list(CHANGED))
def test_changing_any_field_line_or_carried_event_changes_the_hash(change: str) -> None:
    assert link(**CHANGED[change]) != BASE


def test_neither_line_order_nor_an_amounts_spelling_changes_the_hash() -> None:
    assert link(lines=list(reversed(lines(ENTRY)))) == BASE
    spelled = [(code, Decimal(f"{amount}.000")) for code, amount in lines(ENTRY)]
    assert link(lines=spelled) == BASE
    assert events_digest(list(reversed(EVENTS))) == events_digest(EVENTS)


def walk(chain: list[tuple[Entry, bytes, bytes]]) -> int | None:
    """Where a lane's chain breaks: the seq of the first entry whose stored prev_hash or
    hash is not what its predecessor and its own rows say (None: intact)."""
    head = GENESIS_HASH
    for seq, (entry, prev, stored) in enumerate(chain, start=1):
        expected = chain_hash(head, 1, seq, AT, entry, lines(entry), b"")
        if prev != head or stored != expected:
            return seq
        head = stored
    return None


def posted(entries: list[Entry]) -> list[tuple[Entry, bytes, bytes]]:
    """Entries appended to lane 1 as the journal does: each links its predecessor's hash."""
    chain, head = [], GENESIS_HASH
    for seq, entry in enumerate(entries, start=1):
        digest = chain_hash(head, 1, seq, AT, entry, lines(entry), b"")
        chain.append((entry, head, digest))
        head = digest
    return chain


def entries(n: int) -> list[Entry]:
    return [
        usage_entry(f"k{i}", "acme", "2026-10", API_REQUEST, {None: Decimal(i + 1)}, "2020-01")
        for i in range(n)
    ]


def test_the_chain_links_predecessor_hashes() -> None:
    chain = posted(entries(3))
    assert chain[0][1] == GENESIS_HASH
    assert [prev for _, prev, _ in chain[1:]] == [digest for _, _, digest in chain[:-1]]
    assert walk(chain) is None


@given(n=st.integers(2, 8), data=st.data())
def test_a_changed_removed_or_inserted_entry_breaks_the_chain(n: int, data: st.DataObject) -> None:
    chain = posted(entries(n))
    i = data.draw(st.integers(0, n - 1))
    entry, prev, stored = chain[i]
    rewritten = [*chain[:i], (replace(entry, org="globex"), prev, stored), *chain[i + 1 :]]
    assert walk(rewritten) == i + 1
    assert walk(chain[:i] + chain[i + 1 :]) == (i + 1 if i < n - 1 else None)  # the tail may go
    inserted = [*chain[:i], posted(entries(1))[0], *chain[i:]]
    assert walk(inserted) == (i + 1 if i else 2)


def test_a_delivery_tally_links_its_predecessor_and_covers_its_counts() -> None:
    counts = DeliveryCounts(events=2, duplicates=1)
    first = tally_hash(GENESIS_HASH, 1, 1, "s1", AT, counts)
    assert tally_hash(GENESIS_HASH, 1, 1, "s1", AT, counts) == first
    second = tally_hash(first, 1, 2, "s2", AT, counts)
    assert second != tally_hash(GENESIS_HASH, 1, 2, "s2", AT, counts)
    for changed in (
        tally_hash(GENESIS_HASH, 2, 1, "s1", AT, counts),
        tally_hash(GENESIS_HASH, 1, 2, "s1", AT, counts),
        tally_hash(GENESIS_HASH, 1, 1, "s2", AT, counts),
        tally_hash(GENESIS_HASH, 1, 1, "s1", AT + timedelta(seconds=1), counts),
        tally_hash(GENESIS_HASH, 1, 1, "s1", AT, replace(counts, events=3)),
        tally_hash(GENESIS_HASH, 1, 1, "s1", AT, replace(counts, replayed=1)),
    ):
        assert changed != first
