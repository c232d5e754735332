"""The month seal in PostgreSQL: writing a closed period's seals, reading them, proving an
entry, and recomputing a seal (``tally ledger verify``).

What a seal covers: seal ``k`` of period ``P`` holds the head (seq and hash) of every lane
of the journal when it was taken; it covers the entries of ``P`` whose seq in their lane is
above seal ``k-1``'s head (0 for the first seal) and at most its own. A lane's rows up to
its head were all committed when the head was read (a writer moves the head in the
transaction that posts the rows), so the set is exact even while consumers post, and later
usage of ``P`` (posted after the seal) falls to a later seal: an earlier one never breaks.

Leaf order: by lane, then seq; each leaf is the entry's stored hash (``journal_entry.hash``),
the tree is ``tally.domain.merkle``'s (RFC 6962).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import fetch_limit
from tally.domain import merkle, seal_signature
from tally.domain.pagination import Cursors, Key, Page

Heads = Mapping[int, int]  # lane -> seq
SEAL_PREFETCH = 10_000  # entries read per round trip while a seal is computed
SEAL_KEY = (str, int)  # a seal's place in the list: period, sequence


class NotSealed(LookupError):
    """The entry exists, but no seal covers it yet: the message says when one will."""


class LaneHead(BaseModel):
    lane: int
    seq: int
    head_hash: str  # hex


class SealRecord(BaseModel):
    """One stored seal, as the CLI and the API show it (hashes in hex)."""

    period: str
    sequence: int
    root: str
    entries: int
    last_invoice: int  # the period's invoices numbered up to this one print this seal
    sealed_at: datetime
    lanes: list[LaneHead]
    key_id: str | None = None  # the key that signed it (None: not signed yet)
    signature: str | None = None  # Ed25519 over ``signed_bytes()``, hex

    def cursor_key(self) -> Key:
        return (self.period, self.sequence)

    @property
    def heads(self) -> dict[int, int]:
        return {head.lane: head.seq for head in self.lanes}

    def signed_bytes(self) -> bytes:
        return seal_signature.signed_bytes(self.period, self.sequence, self.root, self.entries)


class SealKey(BaseModel):
    """A public key that signs seals, valid from ``valid_from`` until the next key's
    (``valid_until``: None for the current key)."""

    key_id: str
    algorithm: str
    public_key: str  # the raw 32 bytes, hex
    valid_from: datetime
    valid_until: datetime | None


class ProofStep(BaseModel):
    side: Literal["left", "right"]
    hash: str  # hex


class EntryProof(BaseModel):
    """That an entry is in a seal: fold ``leaf`` with ``siblings`` to ``root`` (the page
    "The month seal" of the docs shows how)."""

    entry_id: int
    period: str
    sequence: int
    sealed_at: datetime
    leaf: str  # the entry's hash, hex
    index: int  # its place among the seal's leaves (by lane, then seq)
    entries: int  # the seal's leaves
    siblings: list[ProofStep]
    root: str


# Closed periods with entries beyond their last seal's heads, or with no seal yet.
DUE = """
SELECT c.period, coalesce(s.sequence, 0) AS last FROM period_close c
  LEFT JOIN LATERAL (SELECT max(sequence) AS sequence FROM period_seal
                      WHERE period = c.period) s ON true
 WHERE s.sequence IS NULL
    OR EXISTS (SELECT 1 FROM period_seal_lane h
                WHERE h.period = c.period AND h.sequence = s.sequence
                  AND EXISTS (SELECT 1 FROM journal_entry e
                               WHERE e.period = c.period AND e.lane = h.lane AND e.seq > h.seq))
 ORDER BY c.period"""

COVERED = """
SELECT e.id, e.lane, e.seq, e.hash FROM journal_entry e
  JOIN unnest($2::int[], $3::bigint[], $4::bigint[]) AS h(lane, after, upto) ON e.lane = h.lane
 WHERE e.period = $1 AND e.seq > h.after AND e.seq <= h.upto
 ORDER BY e.lane, e.seq"""


async def covered(
    conn: asyncpg.Connection, period: str, after: Heads, upto: Heads
) -> list[asyncpg.Record]:
    """The period's entries between two sets of lane heads, in leaf order."""
    lanes = sorted(upto)
    below = [after.get(lane, 0) for lane in lanes]
    rows: list[asyncpg.Record] = await conn.fetch(
        COVERED, period, lanes, below, [upto[lane] for lane in lanes]
    )
    return rows


async def covered_root(
    conn: asyncpg.Connection, period: str, after: Heads, upto: Heads
) -> merkle.RootBuilder:
    """The Merkle root of the period's entries between two sets of lane heads, read through
    a cursor (in a transaction): memory stays flat however many entries the period has."""
    lanes = sorted(upto)
    below = [after.get(lane, 0) for lane in lanes]
    tree = merkle.RootBuilder()
    async for row in conn.cursor(
        COVERED, period, lanes, below, [upto[lane] for lane in lanes], prefetch=SEAL_PREFETCH
    ):
        tree.add(bytes(row["hash"]))
    return tree


async def seal_due_periods(conn: asyncpg.Connection) -> None:
    """Seal every closed period that has no seal yet or entries no seal covers: in the
    transaction that records a period closed, with the close lock held."""
    due = await conn.fetch(DUE)
    heads = await conn.fetch("SELECT lane, seq, head_hash FROM ledger_lane ORDER BY lane")
    upto = {row["lane"]: row["seq"] for row in heads}
    last_invoice = await conn.fetchval("SELECT last FROM invoice_counter")
    for row in due:
        period, sequence = row["period"], row["last"] + 1
        previous = await stored(conn, period, row["last"]) if row["last"] else []
        after = previous[0].heads if previous else {}
        tree = await covered_root(conn, period, after, upto)
        await conn.execute(
            """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
               VALUES ($1, $2, $3, $4, $5)""",
            period,
            sequence,
            tree.root(),
            tree.count,
            last_invoice,
        )
        await conn.execute(
            """INSERT INTO period_seal_lane (period, sequence, lane, seq, head_hash)
               SELECT $1, $2, * FROM unnest($3::int[], $4::bigint[], $5::bytea[])""",
            period,
            sequence,
            [head["lane"] for head in heads],
            [head["seq"] for head in heads],
            [bytes(head["head_hash"]) for head in heads],
        )


def _head(row: asyncpg.Record) -> LaneHead:
    return LaneHead(lane=row["lane"], seq=row["seq"], head_hash=bytes(row["head_hash"]).hex())


async def stored(
    conn: asyncpg.Connection,
    period: str | None,
    sequence: int | None = None,
    after: Key | None = None,
    limit: int | None = None,
) -> list[SealRecord]:
    """Seals (of one period, one seal of it, or all), by period and sequence; ``after`` a
    (period, sequence) and up to ``limit`` of them for a page."""
    seals = await conn.fetch(
        """SELECT s.*, g.key_id, g.signature FROM period_seal s
             LEFT JOIN seal_signature g USING (period, sequence)
            WHERE ($1::text IS NULL OR period = $1) AND ($2::int IS NULL OR sequence = $2)
              AND ($3::text IS NULL OR (period, sequence) > ($3, $4::int))
            ORDER BY period, sequence LIMIT $5""",
        period,
        sequence,
        *(after or (None, None)),
        limit,
    )
    lanes: dict[tuple[str, int], list[LaneHead]] = {}
    for row in await conn.fetch(
        """SELECT l.* FROM period_seal_lane l
             JOIN unnest($1::text[], $2::int[]) AS s (period, sequence) USING (period, sequence)
            ORDER BY period, sequence, lane""",
        [row["period"] for row in seals],
        [row["sequence"] for row in seals],
    ):
        lanes.setdefault((row["period"], row["sequence"]), []).append(_head(row))
    return [
        SealRecord(
            period=row["period"],
            sequence=row["sequence"],
            root=bytes(row["root"]).hex(),
            entries=row["entries"],
            last_invoice=row["last_invoice"],
            sealed_at=row["sealed_at"],
            lanes=lanes.get((row["period"], row["sequence"]), []),
            key_id=row["key_id"],
            signature=None if row["signature"] is None else bytes(row["signature"]).hex(),
        )
        for row in seals
    ]


async def stored_keys(conn: asyncpg.Connection) -> list[SealKey]:
    """Every public key that signs seals, oldest first, each valid until the next one's
    ``valid_from``."""
    rows = await conn.fetch(
        """SELECT key_id, algorithm, public_key, valid_from,
                  lead(valid_from) OVER (ORDER BY valid_from) AS valid_until
             FROM seal_key ORDER BY valid_from"""
    )
    return [SealKey(**{**dict(row), "public_key": bytes(row["public_key"]).hex()}) for row in rows]


async def seal_keys(engine: AsyncEngine) -> list[SealKey]:
    """The keys, as ``/.well-known/tally-seal-keys.json`` publishes them."""
    async with raw_connection(engine) as conn:
        return await stored_keys(conn)


@dataclass(frozen=True)
class SealListing:
    """Seals (one period's, or all) by period and sequence: a few a month, each with its
    lane heads (a second query), so read by ``stored`` rather than as one ``Listing``."""

    period: str | None

    @property
    def fields(self) -> list[str]:
        return list(SealRecord.model_fields)

    async def page(
        self, conn: asyncpg.Connection, cursors: Cursors, after: str | None, limit: int
    ) -> Page[SealRecord]:
        signed = cursors.bound_to("seals")
        key = signed.after(after, SEAL_KEY)
        return signed.page(await stored(conn, self.period, None, key, fetch_limit(limit)), limit)

    async def iter_rows(self, conn: asyncpg.Connection) -> AsyncIterator[SealRecord]:
        for seal in await stored(conn, self.period):
            yield seal


async def period_seals(engine: AsyncEngine, period: str) -> list[SealRecord]:
    """A period's seals, first to last (the read side's query)."""
    async with raw_connection(engine) as conn:
        return await stored(conn, period)


async def invoice_seal(conn: asyncpg.Connection, period: str, number: int) -> SealRecord | None:
    """The seal an invoice prints: its period's first seal taken after it was issued."""
    found = await conn.fetchval(
        """SELECT min(sequence) FROM period_seal WHERE period = $1 AND last_invoice >= $2""",
        period,
        number,
    )
    return (await stored(conn, period, found))[0] if found else None


def leaf_order(previous: SealRecord | None, seal: SealRecord) -> tuple[Heads, Heads]:
    """The lane heads a seal's entries lie between: after the previous seal's, up to its own."""
    return (previous.heads if previous else {}), seal.heads


async def prove_entry(engine: AsyncEngine, entry_id: int) -> EntryProof | None:
    """The Merkle inclusion proof of one entry in the seal that covers it; None when the
    entry does not exist; ``NotSealed`` when no seal covers it yet."""
    async with raw_connection(engine) as conn:
        entry = await conn.fetchrow(
            "SELECT id, period, lane, seq FROM journal_entry WHERE id = $1", entry_id
        )
        if entry is None:
            return None
        seals = await stored(conn, entry["period"]) if entry["period"] else []
        for previous, seal in zip([None, *seals], seals, strict=False):
            after, upto = leaf_order(previous, seal)
            if after.get(entry["lane"], 0) < entry["seq"] <= upto.get(entry["lane"], 0):
                rows = await covered(conn, seal.period, after, upto)
                break
        else:
            raise NotSealed(
                f"entry {entry_id} ({entry['period'] or 'no period'}) is in no seal yet: a "
                "period is sealed when it is closed, usage posted after that by the next close"
            )
    index = next(i for i, row in enumerate(rows) if row["id"] == entry_id)
    proof = merkle.prove([bytes(row["hash"]) for row in rows], index)
    return EntryProof(
        entry_id=entry_id,
        period=seal.period,
        sequence=seal.sequence,
        sealed_at=seal.sealed_at,
        leaf=proof.leaf.hex(),
        index=proof.index,
        entries=proof.size,
        siblings=[ProofStep(side=step.side, hash=step.hash.hex()) for step in proof.siblings],
        root=proof.root.hex(),
    )


async def recompute(conn: asyncpg.Connection, sealed: Sequence[SealRecord]) -> list[str]:
    """Stored seals (whole periods of them, in order) recomputed from the journal as it is
    now: what differs, named."""
    findings: list[str] = []
    by_period: dict[str, list[SealRecord]] = {}
    for seal in sealed:
        by_period.setdefault(seal.period, []).append(seal)
    for name, seals in sorted(by_period.items()):
        numbers = [seal.sequence for seal in seals]
        if numbers != list(range(1, len(seals) + 1)):
            findings.append(f"period {name} has seals {numbers}: a seal was removed")
        for previous, seal in zip([None, *seals], seals, strict=False):
            findings.extend(await _recompute_one(conn, previous, seal))
    return findings


async def _recompute_one(
    conn: asyncpg.Connection, previous: SealRecord | None, seal: SealRecord
) -> list[str]:
    where = f"seal {seal.sequence} of {seal.period} (root {seal.root[:16]}…)"
    after, upto = leaf_order(previous, seal)
    leaves = [bytes(row["hash"]) for row in await covered(conn, seal.period, after, upto)]
    out = []
    root = merkle.root(leaves).hex()
    if len(leaves) != seal.entries or root != seal.root:
        out.append(
            f"{where}: its {len(leaves)} entries now hash to root {root[:16]}…, it sealed "
            f"{seal.entries}: entries it covers were changed, removed or added after it was taken"
        )
    positions = [head for head in seal.lanes if head.seq]
    found = {
        (row["lane"], row["seq"]): bytes(row["hash"]).hex()
        for row in await conn.fetch(
            """SELECT lane, seq, hash FROM journal_entry
                WHERE (lane, seq) IN (SELECT * FROM unnest($1::int[], $2::bigint[]))""",
            [head.lane for head in positions],
            [head.seq for head in positions],
        )
    }
    for head in positions:
        if found.get((head.lane, head.seq)) != head.head_hash:
            out.append(
                f"{where}: lane {head.lane} seq {head.seq} no longer has the hash the seal "
                "holds: the lane was rewritten up to there"
            )
    return out
