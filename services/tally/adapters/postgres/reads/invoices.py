"""The read side of invoices: lists, one invoice in its fixed shape, and its lineage."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import seals
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.listing import Listing
from tally.domain.invoicing import PURCHASED


def invoice_number(number: int) -> str:
    return f"INV-{number:06d}"


async def list_invoices(
    engine: AsyncEngine, period: str | None, org: str | None = None
) -> list[dict[str, Any]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT i.number, i.org, i.period, i.currency, i.status, i.total,
                      (SELECT count(*) FROM invoice_adjustment a WHERE a.invoice = i.number)
                          AS adjustments
                 FROM invoice i
                WHERE ($1::text IS NULL OR i.period = $1) AND ($2::text IS NULL OR i.org = $2)
                ORDER BY i.number""",
            period,
            org,
        )
    return [{**dict(row), "number": invoice_number(row["number"])} for row in rows]


async def period_closed(engine: AsyncEngine, period: str) -> dict[str, Any] | None:
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow("SELECT * FROM period_close WHERE period = $1", period)
    return dict(row) if row else None


@dataclass(frozen=True)
class Invoice:
    document: dict[str, Any]  # the fixed JSON shape of ``tally invoice show --format json``
    features: dict[str, Decimal]  # AI tokens used per feature
    expired: dict[str, Decimal]  # per meter: unused allocation that expired
    entries: dict[str, list[dict[str, Any]]]  # per line or adjustment: the entries it bills
    issued_at: datetime


async def invoice(
    engine: AsyncEngine, org: str, period: str, billed: bool = True
) -> Invoice | None:
    """An invoice; without ``billed`` its ``entries`` stay empty (a month of usage is tens of
    thousands of billed entries: the invoice page shows none of them)."""
    async with raw_connection(engine) as conn:
        head = await conn.fetchrow(
            "SELECT * FROM invoice WHERE org = $1 AND period = $2", org, period
        )
        if head is None:
            return None
        return await _document(conn, head, billed)


def _quantity(value: Decimal) -> Decimal:
    """Units without the scale's trailing zeros (money keeps its minor units)."""
    return value.normalize() if value else Decimal(0)


def _line(line: asyncpg.Record) -> dict[str, Any]:
    """A line of the fixed shape; the purchased tokens' line (only when there are some)
    also says its ``quantity``: the tokens it adds to the allocation, sold at the price."""
    shown = {
        "meter": line["meter"],
        "description": line["description"],
        "allocation": _quantity(line["allocation"]),
        "used": _quantity(line["used"]),
        "overage": _quantity(line["overage"]),
        "unit_price": line["unit_price"],
        "amount": line["amount"],
    }
    if line["meter"] == PURCHASED:
        shown["quantity"] = shown["allocation"]
    return shown


async def _document(conn: asyncpg.Connection, head: asyncpg.Record, billed: bool = True) -> Invoice:
    number = head["number"]
    lines = await conn.fetch(
        """SELECT meter, description, allocation, used, overage, expired, unit_price, amount
             FROM invoice_line WHERE invoice = $1
            ORDER BY CASE meter WHEN 'api_requests' THEN 0 WHEN 'ai_tokens' THEN 1 ELSE 2 END""",
        number,
    )
    adjustments = await conn.fetch(
        """SELECT a.period, a.original, a.meter, a.description, a.amount
             FROM invoice_adjustment a WHERE a.invoice = $1 ORDER BY a.period, a.meter""",
        number,
    )
    features = await conn.fetch(
        "SELECT feature, tokens FROM invoice_feature WHERE invoice = $1 ORDER BY feature", number
    )
    billed_rows = (
        await conn.fetch(
            """SELECT b.meter, b.original, e.id, e.kind, e.idempotency_key, e.period
                 FROM billed_entry b JOIN journal_entry e ON e.id = b.entry_id
                WHERE b.invoice = $1 ORDER BY e.id""",
            number,
        )
        if billed
        else []
    )
    seal = await seals.invoice_seal(conn, head["period"], number)
    entries: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in billed_rows:
        where = row["meter"]
        if row["original"] is not None:
            where = f"adjustment of {invoice_number(row['original'])} {row['meter']}"
        entries[where].append({"id": row["id"], "kind": row["kind"], "key": row["idempotency_key"]})
    document = {
        "number": invoice_number(number),
        "org": head["org"],
        "period": head["period"],
        "currency": head["currency"],
        "status": head["status"],
        "lines": [_line(line) for line in lines],
        "adjustments": [
            {
                "period": a["period"],
                "invoice": invoice_number(a["original"]),
                "meter": a["meter"],
                "description": a["description"],
                "amount": a["amount"],
            }
            for a in adjustments
        ],
        "total": head["total"],
        "seal": seal.on_invoice() if seal else None,  # the month seal it was issued under
        "seal_signature": seal.signature_on_invoice() if seal else None,  # None: unsigned
    }
    return Invoice(
        document,
        {row["feature"]: _quantity(row["tokens"]) for row in features},
        {line["meter"]: _quantity(line["expired"]) for line in lines},
        dict(entries),
        head["issued_at"],
    )


def invoice_listing(org: str | None, period: str | None, status: str | None) -> Listing:
    """Invoices in number order, filtered by organization, period and status."""
    return Listing(
        """SELECT 'INV-' || lpad(i.number::text, greatest(6, length(i.number::text)), '0')
                      AS number, i.org, i.period, i.currency, i.status, i.total, i.issued_at,
                  (SELECT count(*) FROM invoice_adjustment a WHERE a.invoice = i.number)
                      AS adjustments
             FROM invoice i
            WHERE ($1::text IS NULL OR i.org = $1) AND ($2::text IS NULL OR i.period = $2)
              AND ($3::text IS NULL OR i.status = $3)
              AND ($4::bigint IS NULL OR i.number > $4)
            ORDER BY i.number""",
        (org, period, status),
        (int,),
        lambda row: (int(row["number"].removeprefix("INV-")),),
    )


async def invoice_numbered(engine: AsyncEngine, number: int) -> Invoice | None:
    async with raw_connection(engine) as conn:
        head = await conn.fetchrow("SELECT * FROM invoice WHERE number = $1", number)
        return None if head is None else await _document(conn, head)


async def invoice_document(conn: asyncpg.Connection, head: asyncpg.Record) -> dict[str, Any]:
    """The fixed JSON shape of the invoice whose ``invoice`` row is ``head``."""
    return (await _document(conn, head, billed=False)).document
