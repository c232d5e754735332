"""Journal entries: a filtered list (keyset by id), and one entry whole: its lines, the
events it carries (with the SHA-256 of their raw bytes) and its place in the hash chain."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.carried import CARRIED_EVENTS, event_status
from tally.adapters.postgres.reads import Amount, snapshot
from tally.adapters.postgres.reads.listing import KeyedRow, Listing, in_order
from tally.domain.pagination import Key


class EntryFilter(BaseModel):
    org: str | None = None
    period: str | None = None
    kind: str | None = None
    account: str | None = None  # an account code: entries with a line on it
    posted_from: datetime | None = None  # inclusive
    posted_to: datetime | None = None  # exclusive


class EntrySummary(KeyedRow):
    id: int
    idempotency_key: str
    kind: str
    org: str | None
    period: str | None
    rate_card_version: str | None
    posted_at: datetime

    def cursor_key(self) -> Key:
        return (self.id,)


class EntryLineRow(BaseModel):
    line_id: int
    account: str
    unit: str
    amount: Amount
    side: Literal["debit", "credit"]


class CarriedEvent(BaseModel):
    source: str
    id: str
    type: str
    status: str
    event_time: datetime
    quantity: Amount
    sha256: str  # hex, of the raw bytes as received
    raw: str | None = None  # the raw event, on request


class ChainPosition(BaseModel):
    lane: int
    seq: int
    prev_hash: str  # hex
    hash: str  # hex


class EntryDetail(EntrySummary):
    chain: ChainPosition
    lines: list[EntryLineRow]
    events: list[CarriedEvent]


QUERY = """
SELECT e.id, e.idempotency_key, e.kind, e.org, e.period, e.rate_card_version, e.posted_at
  FROM journal_entry e
 WHERE ($1::text IS NULL OR e.org = $1) AND ($2::text IS NULL OR e.period = $2)
   AND ($3::text IS NULL OR e.kind = $3)
   AND ($4::text IS NULL OR EXISTS (
        SELECT 1 FROM entry_line l WHERE l.entry_id = e.id
           AND l.account_id = (SELECT id FROM account WHERE code = $4)))
   AND ($5::timestamptz IS NULL OR e.posted_at >= $5)
   AND ($6::timestamptz IS NULL OR e.posted_at < $6)
   AND ($7::bigint IS NULL OR e.id > $7)
 ORDER BY e.id"""


def entry_listing(filters: EntryFilter) -> Listing[EntrySummary]:
    """Oldest first. A page never repeats or skips an entry, whatever is posted meanwhile."""
    return Listing(
        "entries",
        QUERY,
        in_order(filters),
        EntrySummary,
        (int,),
    )


async def entry(conn: asyncpg.Connection, entry_id: int, raw: bool = False) -> EntryDetail | None:
    async with snapshot(conn):
        header = await conn.fetchrow(
            """SELECT id, idempotency_key, kind, org, period, rate_card_version, posted_at,
                      lane, seq, encode(prev_hash, 'hex') AS prev_hash,
                      encode(hash, 'hex') AS hash
                 FROM journal_entry WHERE id = $1""",
            entry_id,
        )
        if header is None:
            return None
        lines = await conn.fetch(
            """SELECT l.id AS line_id, a.code AS account, a.unit, l.amount,
                      CASE WHEN l.amount < 0 THEN 'credit' ELSE 'debit' END AS side
                 FROM entry_line l JOIN account a ON a.id = l.account_id
                WHERE l.entry_id = $1 ORDER BY l.id""",
            entry_id,
        )
        events = await conn.fetch(
            f"""SELECT source, id, type, {event_status("c")} AS status, event_time, quantity,
                       encode(sha256(raw), 'hex') AS sha256,
                       CASE WHEN $2 THEN convert_from(raw, 'UTF8') END AS raw
                  FROM {CARRIED_EVENTS} c WHERE carrier = $1 ORDER BY source, id""",
            entry_id,
            raw,
        )
    fields = dict(header)
    chain = ChainPosition(**{key: fields.pop(key) for key in ("lane", "seq", "prev_hash", "hash")})
    return EntryDetail(
        **fields,
        chain=chain,
        lines=[EntryLineRow(**dict(row)) for row in lines],
        events=[CarriedEvent(**dict(row)) for row in events],
    )
