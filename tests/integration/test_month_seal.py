"""The month seal against real PostgreSQL: the close seals the period, the seal recomputes
from the journal, every entry's proof checks against the root its invoice prints, a rewrite
with every hash recomputed is named, and late usage gets a later seal without breaking the
first."""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import close, document, license_day, meter
from support.ledger_support import ai, api
from tally.adapters.postgres import seals
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.reads import cursors
from tally.adapters.postgres.verification import verify
from tally.domain import merkle
from tally.domain.ledger import Entry, chain_hash, events_digest
from tally.service_layer.metering import MeteringService

SEP, OCT = "2026-09", "2026-10"  # both closable today; September is the month sealed
IN_SEP = {"time": "2026-09-15T12:00:00Z"}


async def september(service: MeteringService, engine: AsyncEngine) -> None:
    """Two organizations' September, one over its allocation, closed."""
    await meter(
        service,
        [
            license_day("acme-lic", "gc2", "named", 2, org="acme", day="2026-09-05"),
            api("acme-1", count=300_000, org="acme", **IN_SEP),
            ai("acme-2", "virtual_agent", 40, "session", org="acme", **IN_SEP),
            api("globex-1", count=10, org="globex", **IN_SEP),
        ],
    )
    await meter(service, [api("acme-3", count=5, org="acme", **IN_SEP)])
    await close(engine, SEP)


def as_proof(proof: seals.EntryProof) -> merkle.Proof:
    steps = tuple(merkle.Sibling(s.side, bytes.fromhex(s.hash)) for s in proof.siblings)
    return merkle.Proof(
        bytes.fromhex(proof.leaf), proof.index, proof.entries, steps, bytes.fromhex(proof.root)
    )


async def entry_ids(engine: AsyncEngine, period: str) -> list[int]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            "SELECT id FROM journal_entry WHERE period = $1 ORDER BY lane, seq", period
        )
    return [row["id"] for row in rows]


async def test_the_close_seals_the_month_and_every_entry_proves(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await september(service, engine)
    (seal,) = await seals.period_seals(engine, SEP)
    assert (seal.period, seal.sequence) == (SEP, 1)
    assert len(seal.lanes) == 16

    # an outsider's recomputation: every September entry's hash, by lane then seq
    async with raw_connection(engine) as conn:
        hashes = [
            bytes(row["hash"])
            for row in await conn.fetch(
                "SELECT hash FROM journal_entry WHERE period = $1 ORDER BY lane, seq", SEP
            )
        ]
        kinds = {r["kind"] for r in await conn.fetch("SELECT kind FROM journal_entry")}
    assert {"usage", "grant", "overage"} <= kinds  # the close's own entries are sealed too
    assert seal.entries == len(hashes) > 4
    assert seal.root == merkle.root(hashes).hex()

    invoice = await document(engine, "acme", SEP)
    assert invoice["seal"] == seal.model_dump(include={"root", "sequence", "sealed_at", "entries"})
    ids = await entry_ids(engine, SEP)
    for index, entry_id in enumerate(ids):
        proof = await seals.prove_entry(engine, entry_id)
        assert proof is not None
        assert (proof.period, proof.sequence, proof.index, proof.entries) == (
            SEP,
            1,
            index,
            len(ids),
        )
        assert proof.root == invoice["seal"]["root"]
        assert merkle.verify_proof(as_proof(proof))
    assert await seals.prove_entry(engine, 10**9) is None

    checked = await verify(engine)
    assert checked.ok, checked.findings
    assert checked.seals == 1
    await close(engine, SEP)  # closed again with nothing new: no new seal
    assert [s.sequence for s in await seals.period_seals(engine, SEP)] == [1]


async def rechain(conn: asyncpg.Connection, lane: int) -> None:
    """Recompute every hash of a lane from its rows as they are now, and its head: what
    someone rewriting the ledger with the triggers off would do to pass the chain check."""
    lines: dict[int, list[tuple[str, Decimal]]] = defaultdict(list)
    for row in await conn.fetch(
        """SELECT l.entry_id, a.code, l.amount FROM entry_line l
             JOIN account a ON a.id = l.account_id
             JOIN journal_entry e ON e.id = l.entry_id WHERE e.lane = $1""",
        lane,
    ):
        lines[row["entry_id"]].append((row["code"], row["amount"]))
    carried = defaultdict(list)
    for row in await conn.fetch(
        """SELECT v.entry_id, v.source, v.id, sha256(v.raw) AS raw_hash FROM usage_event v
             JOIN journal_entry e ON e.id = v.entry_id WHERE e.lane = $1""",
        lane,
    ):
        carried[row["entry_id"]].append((row["source"], row["id"], bytes(row["raw_hash"])))
    head, seq = bytes(32), 0
    for row in await conn.fetch("SELECT * FROM journal_entry WHERE lane = $1 ORDER BY seq", lane):
        entry = Entry(
            row["idempotency_key"],
            row["kind"],
            row["org"],
            row["period"],
            row["rate_card_version"],
            (),
        )
        digest = events_digest(carried[row["id"]])
        new = chain_hash(head, lane, row["seq"], row["posted_at"], entry, lines[row["id"]], digest)
        await conn.execute(
            "UPDATE journal_entry SET prev_hash = $2, hash = $3 WHERE id = $1", row["id"], head, new
        )
        head, seq = new, row["seq"]
    await conn.execute(
        "UPDATE ledger_lane SET seq = $2, head_hash = $3 WHERE lane = $1", lane, seq, head
    )


REBUILD_ROLLUPS = """
DELETE FROM account_day;
DELETE FROM account_period;
INSERT INTO account_day
SELECT l.account_id, (e.posted_at AT TIME ZONE 'UTC')::date,
       sum(greatest(l.amount, 0)), sum(greatest(-l.amount, 0)), count(*), min(e.id), max(e.id)
  FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id GROUP BY 1, 2;
INSERT INTO account_period
SELECT l.account_id, e.period, sum(greatest(l.amount, 0)), sum(greatest(-l.amount, 0)), count(*)
  FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id
 WHERE e.period IS NOT NULL GROUP BY 1, 2"""


async def test_a_sealed_month_rewritten_with_every_hash_recomputed_is_named(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await september(service, engine)
    await meter(service, [api("acme-oct", count=7, org="acme")])
    async with raw_transaction(owner) as conn:  # as the superuser, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        # acme's overage money moved from revenue to rounding: still balanced, still the
        # invoice's total; only the hash chain (recomputed below) and the seal can tell
        revenue = await conn.fetchrow(
            """SELECT l.id, l.entry_id, e.lane FROM entry_line l
                 JOIN account a ON a.id = l.account_id
                 JOIN journal_entry e ON e.id = l.entry_id
                WHERE a.code = 'platform/2026-09/USD/revenue/api_request'"""
        )
        await conn.execute(
            """UPDATE entry_line SET account_id =
                   (SELECT id FROM account WHERE code = 'platform/2026-09/USD/rounding')
                WHERE id = $1""",
            revenue["id"],
        )
        await rechain(conn, revenue["lane"])
        await conn.execute(REBUILD_ROLLUPS)  # and every rollup the lines derive

    checked = await verify(engine)
    assert {f.check for f in checked.findings} == {"seal"}, checked.findings
    details = [f.detail for f in checked.findings]
    assert any(
        d.startswith(f"seal 1 of {SEP} ") and "changed, removed or added" in d for d in details
    )
    assert any(f"lane {revenue['lane']} seq" in d and "rewritten" in d for d in details)
    assert not (await verify(engine, OCT)).findings  # October has no seal to break


async def test_late_usage_gets_a_later_seal_and_the_first_stays_valid(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await september(service, engine)
    (first,) = await seals.period_seals(engine, SEP)
    sep_invoice = await document(engine, "acme", SEP)

    await meter(service, [api("acme-late", count=400_000, org="acme", **IN_SEP)])  # late
    async with raw_connection(engine) as conn:
        late = await conn.fetchval("""SELECT entry_id FROM usage_event WHERE id = 'acme-late'""")
    with pytest.raises(seals.NotSealed, match="in no seal yet"):
        await seals.prove_entry(engine, late)
    assert (await verify(engine, SEP)).ok  # the first seal does not break

    await close(engine, OCT)  # bills the late usage as an adjustment of September
    first_again, second = await seals.period_seals(engine, SEP)
    assert first_again == first
    assert second.sequence == 2
    async with raw_connection(engine) as conn:  # the API's pages: one seal each
        signed = await cursors(conn)
        page = await seals.SealListing(SEP).page(conn, signed, None, 1)
        assert page.items == [first] and page.next is not None
        last = await seals.SealListing(SEP).page(conn, signed, page.next, 1)
        assert last.items == [second] and last.next is None
        every = [seal async for seal in seals.SealListing(None).iter_rows(conn)]
        assert [(s.period, s.sequence) for s in every] == [(SEP, 1), (SEP, 2), (OCT, 1)]
    async with raw_connection(engine) as conn:
        after_first = await conn.fetch(
            """SELECT e.kind, e.hash FROM journal_entry e
                 JOIN unnest($1::int[], $2::bigint[]) AS h(lane, seq) ON h.lane = e.lane
                WHERE e.period = $3 AND e.seq > h.seq ORDER BY e.lane, e.seq""",
            [head.lane for head in first.lanes],
            [head.seq for head in first.lanes],
            SEP,
        )
    assert {row["kind"] for row in after_first} >= {"usage", "overage"}  # late usage, adjustment
    assert second.entries == len(after_first)
    assert second.root == merkle.root([bytes(row["hash"]) for row in after_first]).hex()

    proof = await seals.prove_entry(engine, late)
    assert proof is not None and (proof.sequence, proof.root) == (2, second.root)
    assert merkle.verify_proof(as_proof(proof))
    assert (await document(engine, "acme", SEP))["seal"] == sep_invoice["seal"]
    (october,) = await seals.period_seals(engine, OCT)
    assert (await document(engine, "acme", OCT))["seal"] == october.model_dump(
        include={"root", "sequence", "sealed_at", "entries"}
    )
    checked = await verify(engine)
    assert checked.ok, checked.findings
    assert checked.seals == 3
