"""A customer's statement of one sealed month (``tally.domain.statement``'s format), read
in one repeatable-read snapshot and streamed: events through a server-side cursor, so
memory stays flat however many events the month has (it holds the seals' leaves, 32 bytes
an entry of the period, to prove from)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg

from tally.adapters.postgres import seals
from tally.adapters.postgres.carried import CARRIED_EVENTS, event_status
from tally.adapters.postgres.reads.invoices import invoice, invoice_number
from tally.domain import merkle, seal_signature
from tally.domain.ledger import canonical_amount
from tally.domain.statement import FORMAT, proof_of

PREFETCH = 2_000  # events read per round trip

# The organization's usage entries of the period with the events each carries, in leaf
# order (lane, seq), each entry's lines (what its hash covers) on its first row only.
# A usage reversal carries the event it voids (listed as ``voided`` under both entries).
CARRIED = f"""
SELECT e.id AS entry, e.lane, e.seq, e.posted_at, e.idempotency_key, e.kind, e.org,
       e.period, e.rate_card_version, e.prev_hash, e.hash, b.invoice, b.original,
       v.source, v.id, {event_status("v")} AS status, v.meter, v.feature, v.quantity, v.raw
  FROM journal_entry e
  JOIN {CARRIED_EVENTS} v ON v.carrier = e.id
  LEFT JOIN billed_entry b ON b.entry_id = e.id
 WHERE e.org = $1 AND e.period = $2
 ORDER BY e.lane, e.seq, v.source, v.id"""

LINES = """
SELECT a.code, l.amount FROM entry_line l JOIN account a ON a.id = l.account_id
 WHERE l.entry_id = $1 ORDER BY a.code"""

UNCARRIED = """
SELECT source, id, status, meter, feature, quantity, raw FROM usage_event
 WHERE org = $1 AND period = $2 AND entry_id IS NULL ORDER BY source, id"""


class NoStatement(LookupError):
    """No statement of that organization and period: the message says why."""


class _Seals:
    """The period's seals, each with its tree, and where the organization's entries are in
    them (the trees hold every entry's hash; the places only the organization's)."""

    def __init__(self, sealed: list[seals.SealRecord]) -> None:
        self.sealed = sealed
        self.trees: dict[int, merkle.Tree] = {}
        self.places: dict[tuple[int, int], tuple[int, int]] = {}  # (lane, seq) -> seal, index

    async def load(self, conn: asyncpg.Connection, org: str) -> None:
        own = {
            (row["lane"], row["seq"])
            for row in await conn.fetch(
                "SELECT lane, seq FROM journal_entry WHERE org = $1 AND period = $2",
                org,
                self.sealed[0].period,
            )
        }
        for previous, seal in zip([None, *self.sealed], self.sealed, strict=False):
            after, upto = seals.leaf_order(previous, seal)
            rows = await seals.covered(conn, seal.period, after, upto)
            self.trees[seal.sequence] = merkle.Tree([bytes(row["hash"]) for row in rows])
            for index, row in enumerate(rows):
                if (row["lane"], row["seq"]) in own:
                    self.places[(row["lane"], row["seq"])] = (seal.sequence, index)

    def find(self, lane: int, seq: int) -> tuple[int, int] | None:
        """The seal an entry is in and its leaf's index there (None: in no seal yet)."""
        return self.places.get((lane, seq))


async def _header(
    conn: asyncpg.Connection, org: str, period: str, head: asyncpg.Record, sealed: _Seals
) -> dict[str, Any]:
    keys = {key.key_id: key for key in await seals.stored_keys(conn)}

    def signed(seal: seals.SealRecord) -> dict[str, Any] | None:
        if seal.key_id is None:
            return None
        key = keys[seal.key_id]
        return {
            "algorithm": seal_signature.ALGORITHM,
            "key_id": seal.key_id,
            "signature": seal.signature,
            "public_key": key.public_key,
            "valid_from": key.valid_from,
            "valid_until": key.valid_until,
        }

    return {
        "type": "header",
        "format": FORMAT,
        "org": org,
        "period": period,
        "invoice": invoice_number(head["number"]),
        "currency": head["currency"],
        "seals": [
            {
                "sequence": seal.sequence,
                "root": seal.root,
                "entries": seal.entries,
                "sealed_at": seal.sealed_at.isoformat(),
                "signature": signed(seal),
            }
            for seal in sealed.sealed
        ],
        "keys": seal_signature.KEYS_PATH,
        "signed": seal_signature.CANONICAL,
    }


def _event(row: asyncpg.Record) -> dict[str, Any]:
    raw = bytes(row["raw"])
    return {
        "type": "event",
        "source": row["source"],
        "id": row["id"],
        "status": row["status"],
        "meter": row["meter"],
        "feature": row["feature"],
        "quantity": canonical_amount(row["quantity"]),
        "raw": base64.b64encode(raw).decode(),
        "raw_sha256": hashlib.sha256(raw).hexdigest(),
    }


async def _entry(conn: asyncpg.Connection, row: asyncpg.Record, sequence: int) -> dict[str, Any]:
    lines = await conn.fetch(LINES, row["entry"])
    original = row["original"]
    return {
        "type": "entry",
        "id": row["entry"],
        "seal": sequence,
        "lane": row["lane"],
        "seq": row["seq"],
        "posted_at": row["posted_at"].isoformat(),
        "key": row["idempotency_key"],
        "kind": row["kind"],
        "org": row["org"],
        "period": row["period"],
        "rate_card_version": row["rate_card_version"],
        "prev_hash": bytes(row["prev_hash"]).hex(),
        "lines": [[line["code"], canonical_amount(line["amount"])] for line in lines],
        "hash": bytes(row["hash"]).hex(),
        "invoice": row["invoice"] and invoice_number(row["invoice"]),
        "adjusts": original and invoice_number(original),
    }


async def statement_lines(
    conn: asyncpg.Connection, org: str, period: str
) -> AsyncIterator[dict[str, Any]]:
    """The statement of ``org`` for ``period``, line by line; ``NoStatement`` (before the
    first line) when the organization has no invoice for the period or it has no seal."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        head = await conn.fetchrow(
            "SELECT * FROM invoice WHERE org = $1 AND period = $2", org, period
        )
        if head is None:
            raise NoStatement(f"{org} has no invoice for {period}: the period is not closed for it")
        sealed = _Seals(await seals.stored(conn, period))
        if not sealed.sealed:
            raise NoStatement(f"{period} has no seal yet")
        await sealed.load(conn, org)
        yield await _header(conn, org, period, head, sealed)
        entries = events = 0
        current: int | None = None
        proof: dict[str, Any] | None = None  # the current entry's, if a seal holds it
        async for row in conn.cursor(CARRIED, org, period, prefetch=PREFETCH):
            if row["entry"] != current:
                current = row["entry"]
                place = sealed.find(row["lane"], row["seq"])
                proof = None if place is None else proof_of(sealed.trees[place[0]].prove(place[1]))
                if place is not None:  # else posted after the last seal: not listed yet
                    entries += 1
                    yield await _entry(conn, row, place[0])
            if proof is None:
                continue
            events += 1
            yield {
                **_event(row),
                "entry": row["entry"],
                "leaf": bytes(row["hash"]).hex(),
                "proof": proof,
            }
        async for row in conn.cursor(UNCARRIED, org, period, prefetch=PREFETCH):
            events += 1
            yield {**_event(row), "entry": None}
        billed = await invoice(conn, org, period, billed=False)
        assert billed is not None  # its head was read in this snapshot
        document = billed.document.model_dump(mode="json")
        card = await conn.fetchval(
            "SELECT body::text FROM rate_card WHERE version = $1", head["rate_card_version"]
        )
        yield {
            "type": "trailer",
            "invoice": document["number"],
            "currency": document["currency"],
            "lines": document["lines"],
            "adjustments": document["adjustments"],
            "total": document["total"],
            "rate_card": json.loads(card, parse_float=Decimal),  # as stored: exact, in order
            "entries": entries,
            "events": events,
        }
