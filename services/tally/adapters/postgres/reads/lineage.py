"""An invoice's lineage: each line (or prior-period adjustment) -> the entries it bills
(``billed_entry``) -> the events each entry carries. Entries of the close (grant,
expiry, overage) carry no event: they appear once, with no event. A usage reversal carries
the event its void took back, with the quantity negative (a line's quantities add up)."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from tally.adapters.postgres.carried import CARRIED_EVENTS, event_status
from tally.adapters.postgres.reads import Amount
from tally.adapters.postgres.reads.invoices import INVOICE_NUMBER
from tally.adapters.postgres.reads.listing import KeyedRow, Listing
from tally.domain.pagination import Key


class LineageRow(KeyedRow):
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


QUERY = f"""
SELECT {INVOICE_NUMBER.format("b.invoice")} AS invoice, b.meter,
       {INVOICE_NUMBER.format("b.original")} AS adjusts, b.entry_id, e.kind AS entry_kind,
       e.period AS entry_period, v.source, v.id AS event_id,
       {event_status("v")} AS event_status, v.event_time,
       CASE WHEN e.kind = 'usage_reversal' THEN -v.quantity ELSE v.quantity END AS quantity,
       encode(sha256(v.raw), 'hex') AS sha256
  FROM billed_entry b
  JOIN journal_entry e ON e.id = b.entry_id
  LEFT JOIN {CARRIED_EVENTS} v ON v.carrier = b.entry_id
 WHERE b.invoice = $1
   AND ($2::text IS NULL OR (b.meter = $2 AND b.original IS NULL))
   AND ($3::bigint IS NULL OR b.entry_id = $3)
   AND ($4::bigint IS NULL
        OR (b.entry_id, coalesce(v.source, ''), coalesce(v.id, '')) > ($4, $5, $6))
 ORDER BY b.entry_id, coalesce(v.source, ''), coalesce(v.id, '')"""


async def invoice_exists(conn: asyncpg.Connection, number: int) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM invoice WHERE number = $1", number))


def lineage_listing(
    number: int, meter: str | None = None, entry: int | None = None
) -> Listing[LineageRow]:
    """The invoice's lineage (of one meter's line, of one entry), in entry order; a cursor
    of one invoice's lineage is refused by another's."""
    return Listing(f"lineage {number}", QUERY, (number, meter, entry), LineageRow, (int, str, str))
