"""Delivery tallies: what each committed batch recorded, per stream, in a hash chain.

Duplicates, conflicts and dead letters carry no ledger entry, so their removal would
leave the journal's chain intact. Each batch therefore also appends one tally row (how
many events, duplicates, conflicts and dead letters it stored, how many letters it
closed) to a lane of a second hash chain; ``tally ledger verify`` re-sums the tallies per
stream and compares them with the rows that are there.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass
from datetime import datetime


@dataclass(frozen=True)
class DeliveryCounts:
    """Rows one batch added per table (and dead letters it closed by replaying them)."""

    events: int = 0
    duplicates: int = 0
    conflicts: int = 0
    dead_letters: int = 0
    replayed: int = 0

    def __bool__(self) -> bool:
        return any(astuple(self))

    def __add__(self, other: DeliveryCounts) -> DeliveryCounts:
        return DeliveryCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))


def tally_hash(
    prev_hash: bytes,
    lane: int,
    seq: int,
    stream: str,
    recorded_at: datetime,
    counts: DeliveryCounts,
) -> bytes:
    """The tally's link in its lane: the predecessor's hash, its position, stream and counts."""
    fields = (str(lane), str(seq), stream, recorded_at.isoformat(), *map(str, astuple(counts)))
    return hashlib.sha256(prev_hash + "\x1f".join(fields).encode()).digest()
