"""An invoice's lineage: each line (or prior-period adjustment) -> the entries it bills
(``billed_entry``) -> the events each entry carries. Entries of the close (grant,
expiry, overage) carry no event: they appear once, with no event."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount, fetch_limit, stream
from tally.adapters.postgres.reads.invoices import invoice_number
from tally.domain.pagination import DEFAULT_LIMIT, Cursors, Key, Page


class LineageRow(BaseModel):
    invoice: str
    meter: str
    adjusts: str | None  # the earlier invoice an adjustment corrects; None: the meter line
    entry_id: int
    entry_kind: str
    entry_period: str | None
    source: str | None  # the event (None for an entry that carries none)
    event_id: str | None
    event_status: str | None
    event_time: datetime | None  # when it happened (its ``time``)
    quantity: Amount | None
    sha256: str | None  # hex, of the event's raw bytes

    def cursor_key(self) -> Key:
        return (self.entry_id, self.source or "", self.event_id or "")


QUERY = """
SELECT b.invoice, b.meter, b.original, b.entry_id, e.kind AS entry_kind,
       e.period AS entry_period, v.source, v.id AS event_id, v.status AS event_status,
       v.event_time, v.quantity, encode(sha256(v.raw), 'hex') AS sha256
  FROM billed_entry b
  JOIN journal_entry e ON e.id = b.entry_id
  LEFT JOIN usage_event v ON v.entry_id = b.entry_id
 WHERE b.invoice = $1
   AND ($2::bigint IS NULL
        OR (b.entry_id, coalesce(v.source, ''), coalesce(v.id, '')) > ($2, $3, $4))
   AND ($5::text IS NULL OR (b.meter = $5 AND b.original IS NULL))
   AND ($6::bigint IS NULL OR b.entry_id = $6)
 ORDER BY b.entry_id, coalesce(v.source, ''), coalesce(v.id, '')"""


def _row(record: asyncpg.Record) -> LineageRow:
    fields = dict(record)
    original = fields.pop("original")
    return LineageRow(
        **{
            **fields,
            "invoice": invoice_number(fields["invoice"]),
            "adjusts": invoice_number(original) if original is not None else None,
        }
    )


async def invoice_exists(conn: asyncpg.Connection, number: int) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM invoice WHERE number = $1", number))


async def lineage(
    conn: asyncpg.Connection,
    number: int,
    cursors: Cursors,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
    meter: str | None = None,
    entry: int | None = None,
) -> Page[LineageRow] | None:
    """A page of the invoice's lineage (of one meter's line, of one entry); None: no such
    invoice."""
    if not await invoice_exists(conn, number):
        return None
    cursors = cursors.bound_to(f"lineage {number}")
    key = cursors.after(after, (int, str, str))
    rows = await conn.fetch(
        QUERY + " LIMIT $7",
        number,
        *(key or (None, None, None)),
        meter,
        entry,
        fetch_limit(limit),
    )
    return cursors.page([_row(row) for row in rows], limit)


async def iter_lineage(conn: asyncpg.Connection, number: int) -> AsyncIterator[LineageRow]:
    async for row in stream(conn, QUERY, number, None, None, None, None, None):
        yield _row(row)
