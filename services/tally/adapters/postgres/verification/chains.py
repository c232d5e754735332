"""Walking a hash chain (the journal's lanes, the delivery tallies'): one walk, two
vocabularies of findings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from tally.adapters.postgres.verification.registry import Verification
from tally.domain.ledger import GENESIS_HASH


@dataclass(frozen=True)
class ChainChecks:
    """What one hash chain's findings are called (the journal's lanes, the tallies')."""

    lane: str  # how a lane is named in a finding
    gap: str
    broken: str
    changed: str
    changed_detail: str
    head: str


JOURNAL_CHAIN = ChainChecks(
    "lane", "chain gap", "chain broken", "hash mismatch", "its contents changed after posting",
    "lane head",
)  # fmt: skip
TALLY_CHAIN = ChainChecks(
    "tally lane", "tally chain", "tally chain", "tally chain",
    "its counts changed after it was recorded", "tally chain",
)  # fmt: skip


def walk_chain(
    result: Verification,
    checks: ChainChecks,
    heads: dict[int, asyncpg.Record],
    rows: list[asyncpg.Record],
    expected_hash: Callable[[asyncpg.Record], bytes],
    label: Callable[[asyncpg.Record], str],
) -> None:
    """Rows in lane and seq order: each follows its predecessor without a gap, links to its
    hash, hashes to what it holds, and each lane's head is where its chain ends."""
    position: dict[int, tuple[int, bytes]] = {lane: (0, GENESIS_HASH) for lane in heads}
    for row in rows:
        lane = row["lane"]
        seq, head = position.get(lane, (0, GENESIS_HASH))
        where = f"{checks.lane} {lane} seq {row['seq']} ({label(row)})"
        if row["seq"] != seq + 1:
            result.add(checks.gap, f"{where}: expected seq {seq + 1}: a row was removed or added")
        if bytes(row["prev_hash"]) != head:
            result.add(checks.broken, f"{where}: does not link to its predecessor")
        if expected_hash(row) != bytes(row["hash"]):
            result.add(checks.changed, f"{where}: {checks.changed_detail}")
        position[lane] = (row["seq"], bytes(row["hash"]))
    for lane, head_row in sorted(heads.items()):
        seq, last = position[lane]
        if head_row["seq"] != seq or bytes(head_row["head_hash"]) != last:
            result.add(
                checks.head,
                f"{checks.lane} {lane}: head says seq {head_row['seq']}, chain ends at {seq}",
            )
