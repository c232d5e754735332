"""What ``tally invoice reproduce`` reads to recompute an invoice: the invoice as stored,
the raw bytes of the events it bills and of its license reports, the commitments and
purchases it counted, its input digest. Nothing here writes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import asyncpg

from tally.adapters.postgres import allocations
from tally.adapters.postgres.close_store import billed_so_far
from tally.adapters.postgres.invoice_inputs import (
    COMMITMENTS,
    LICENSE_REPORTS,
    NOT_BILLED,
    PURCHASES,
    billed_events,
)
from tally.domain.invoicing import InvoiceMeter
from tally.domain.reproduction import (
    AdjustmentFigures,
    Commitment,
    InvoiceFigures,
    LineFigures,
    Part,
    Purchase,
    RawEvent,
    StoredInvoice,
)


async def invoice_count(conn: asyncpg.Connection) -> int:
    count: int = await conn.fetchval("SELECT count(*) FROM invoice")
    return count


async def invoice_numbers(conn: asyncpg.Connection, after: int, limit: int) -> list[int]:
    """The next invoice numbers after ``after`` (keyset: reproduce --all walks them a page
    at a time)."""
    rows = await conn.fetch(
        "SELECT number FROM invoice WHERE number > $1 ORDER BY number LIMIT $2", after, limit
    )
    return [row["number"] for row in rows]


async def stored_invoice(conn: asyncpg.Connection, number: int) -> StoredInvoice | None:
    """An invoice as stored, with the raw bytes and records its reproduction reads."""
    head = await conn.fetchrow(
        """SELECT i.*, c.body::text AS body, n.digest, n.parts::text AS parts
             FROM invoice i JOIN rate_card c ON c.version = i.rate_card_version
             LEFT JOIN invoice_input n ON n.invoice = i.number
            WHERE i.number = $1""",
        number,
    )
    if head is None:
        return None
    org, period, recorded_at = head["org"], head["period"], head["recorded_at"]
    adjustments = await conn.fetch(
        """SELECT period, original, meter, description, used, unexpired, overage, unit_price,
                  amount FROM invoice_adjustment WHERE invoice = $1""",
        number,
    )
    billed = [_raw(row) for row in await conn.fetch(billed_events("b.invoice = $1"), number)]
    late: set[tuple[int, InvoiceMeter]] = {(a["original"], a["meter"]) for a in adjustments}
    late |= {(e.original, cast(InvoiceMeter, e.meter)) for e in billed if e.original is not None}
    billed_before = {
        key: state
        for key, state in (await billed_so_far(conn, sorted({o for o, _ in late}), number)).items()
        if key in late
    }
    figures = InvoiceFigures(
        number,
        org,
        period,
        head["currency"],
        head["rate_card_version"],
        tuple(
            LineFigures(**dict(row))
            for row in await conn.fetch(
                """SELECT meter, description, allocation, used, overage, expired, unit_price,
                          amount FROM invoice_line WHERE invoice = $1""",
                number,
            )
        ),
        tuple(AdjustmentFigures(**dict(row)) for row in adjustments),
        {
            row["feature"]: row["tokens"]
            for row in await conn.fetch(
                "SELECT feature, tokens FROM invoice_feature WHERE invoice = $1", number
            )
        },
        head["total"],
    )
    in_force = await allocations.commitments(conn, [org], period, recorded_by=recorded_at)
    return StoredInvoice(
        figures=figures,
        recorded_at=recorded_at,
        card_body=head["body"],
        digest=head["digest"],
        parts=tuple(
            Part(p["part"], p["items"], bytes.fromhex(p["sha256"]))
            for p in json.loads(head["parts"] or "[]")
        ),
        billed=tuple(billed),
        earlier=tuple(await _earlier(conn, number, sorted(late))),
        license_reports=tuple(_raw(row) for row in await conn.fetch(LICENSE_REPORTS, [number])),
        not_billed=tuple(_raw(row) for row in await conn.fetch(NOT_BILLED, [number])),
        commitments=tuple(
            Commitment(row["id"], row["license"], row["model"], row["quantity"], row["from_period"])
            for row in await conn.fetch(COMMITMENTS, [number])
        ),
        in_force=in_force[org],
        purchases=tuple(
            Purchase(row["id"], row["tokens"]) for row in await conn.fetch(PURCHASES, [number])
        ),
        billed_before=billed_before,
    )


async def _earlier(
    conn: asyncpg.Connection, number: int, late: Sequence[tuple[int, InvoiceMeter]]
) -> list[RawEvent]:
    """For each (original invoice, meter) this invoice adjusts: the events billed for it
    before, by the original's line and by the adjustments of earlier invoices."""
    if not late:
        return []
    adjusted = await conn.fetch(
        """SELECT a.invoice, a.original, a.meter FROM invoice_adjustment a
             JOIN unnest($1::bigint[], $2::text[]) AS p(original, meter)
               ON p.original = a.original AND p.meter = a.meter
            WHERE a.invoice < $3""",
        [original for original, _ in late],
        [meter for _, meter in late],
        number,
    )
    billing = [(original, meter, 0) for original, meter in late] + [
        (row["invoice"], row["meter"], row["original"]) for row in adjusted
    ]
    rows = await conn.fetch(
        billed_events(
            """(b.invoice, b.meter, coalesce(b.original, 0)) IN
                   (SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[]))"""
        ),
        [invoice for invoice, _, _ in billing],
        [meter for _, meter, _ in billing],
        [original for _, _, original in billing],
    )
    return [_raw(row) for row in rows]


def _raw(row: asyncpg.Record) -> RawEvent:
    fields: dict[str, Any] = dict(row)
    return RawEvent(
        source=fields["source"],
        id=fields["id"],
        raw=bytes(fields["raw"]),
        received_at=fields["received_at"],
        invoice=fields["invoice"],
        meter=fields.get("meter", ""),
        original=fields.get("original"),
        sign=fields.get("sign", 1),
        entry_id=fields.get("entry_id"),
        rate_card_version=fields.get("rate_card_version"),
        recorded=(fields["event_meter"], fields["feature"], fields["quantity"])
        if "quantity" in fields
        else None,
    )
