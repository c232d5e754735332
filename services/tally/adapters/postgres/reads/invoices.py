"""Invoices: the list, and one invoice in its fixed shape (what ``tally invoice show
--format json`` prints and ``GET /v1/invoices/{number}`` answers) with what the pages and
the CLI show beside it."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal

import asyncpg
from pydantic import BaseModel, Field

from tally.adapters.postgres import seals
from tally.adapters.postgres.reads import Amount
from tally.adapters.postgres.reads.listing import KeyedRow, Listing
from tally.domain import seal_signature
from tally.domain.invoicing import PURCHASED
from tally.domain.invoicing import invoice_number as invoice_number
from tally.domain.pagination import Key

# ``invoice_number`` in SQL, of the column ``{0}`` (NULL stays NULL), so that a list
# streams its rows as they come.
INVOICE_NUMBER = "'INV-' || lpad({0}::text, greatest(6, length({0}::text)), '0')"


class InvoiceSummary(KeyedRow):
    number: str  # INV-000042
    org: str
    period: str
    currency: str
    status: str
    total: Amount
    issued_at: datetime
    adjustments: int  # prior-period adjustments it carries

    def cursor_key(self) -> Key:
        return (int(self.number.removeprefix("INV-")),)


LIST = f"""
SELECT {INVOICE_NUMBER.format("i.number")} AS number, i.org, i.period, i.currency, i.status,
       i.total, i.issued_at,
       (SELECT count(*) FROM invoice_adjustment a WHERE a.invoice = i.number) AS adjustments
  FROM invoice i
 WHERE ($1::text IS NULL OR i.org = $1) AND ($2::text IS NULL OR i.period = $2)
   AND ($3::text IS NULL OR i.status = $3)
   AND ($4::bigint IS NULL OR i.number > $4)
 ORDER BY i.number"""


def invoice_listing(
    org: str | None = None, period: str | None = None, status: str | None = None
) -> Listing[InvoiceSummary]:
    """Invoices in number order, filtered by organization, period and status."""
    return Listing("invoices", LIST, (org, period, status), InvoiceSummary, (int,))


class InvoiceLine(BaseModel):
    meter: str
    description: str
    allocation: Amount
    used: Amount
    overage: Amount
    unit_price: Amount
    amount: Amount
    # Only on the purchased tokens' line (the fixed shape has it nowhere else): the tokens
    # it adds to the allocation.
    quantity: Amount | None = Field(default=None, exclude_if=lambda quantity: quantity is None)


class Adjustment(BaseModel):
    period: str
    invoice: str  # the earlier invoice it corrects
    meter: str
    description: str
    amount: Amount


class InvoiceSeal(BaseModel):
    """The month seal the invoice was issued under: what a customer keeps to check the
    ledger later."""

    root: str
    sequence: int
    sealed_at: datetime
    entries: int


class InvoiceSealSignature(BaseModel):
    """The seal's Ed25519 signature (of ``tally.domain.seal_signature.signed_bytes``), the
    key that made it and where the public keys are published."""

    algorithm: str
    key_id: str
    signature: str  # hex
    keys: str


class InvoiceDocument(BaseModel):
    number: str
    org: str
    period: str
    currency: str
    status: str
    lines: list[InvoiceLine]
    adjustments: list[Adjustment]
    total: Amount
    seal: InvoiceSeal | None
    seal_signature: InvoiceSealSignature | None  # beside ``seal``; None while unsigned


class BilledEntry(BaseModel):
    id: int
    kind: str
    key: str  # its idempotency key


class Invoice(BaseModel):
    document: InvoiceDocument  # the fixed shape
    features: dict[str, Amount]  # AI tokens used per feature
    expired: dict[str, Amount]  # per meter: unused allocation that expired
    entries: dict[str, list[BilledEntry]]  # per line or adjustment: the entries it bills
    issued_at: datetime


async def invoice(
    conn: asyncpg.Connection, org: str, period: str, billed: bool = True
) -> Invoice | None:
    """An invoice; without ``billed`` its ``entries`` stay empty (a month of usage is tens of
    thousands of billed entries: the invoice page shows none of them)."""
    head = await conn.fetchrow("SELECT * FROM invoice WHERE org = $1 AND period = $2", org, period)
    return None if head is None else await _document(conn, head, billed)


async def invoice_numbered(conn: asyncpg.Connection, number: int) -> Invoice | None:
    head = await conn.fetchrow("SELECT * FROM invoice WHERE number = $1", number)
    return None if head is None else await _document(conn, head)


def _quantity(value: Decimal) -> Decimal:
    """Units without the scale's trailing zeros (money keeps its minor units)."""
    return value.normalize() if value else Decimal(0)


def _line(line: asyncpg.Record) -> InvoiceLine:
    allocation = _quantity(line["allocation"])
    return InvoiceLine(
        meter=line["meter"],
        description=line["description"],
        allocation=allocation,
        used=_quantity(line["used"]),
        overage=_quantity(line["overage"]),
        unit_price=line["unit_price"],
        amount=line["amount"],
        quantity=allocation if line["meter"] == PURCHASED else None,
    )


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
    entries: dict[str, list[BilledEntry]] = defaultdict(list)
    for row in billed_rows:
        where = row["meter"]
        if row["original"] is not None:
            where = f"adjustment of {invoice_number(row['original'])} {row['meter']}"
        entries[where].append(
            BilledEntry(id=row["id"], kind=row["kind"], key=row["idempotency_key"])
        )
    document = InvoiceDocument(
        number=invoice_number(number),
        org=head["org"],
        period=head["period"],
        currency=head["currency"],
        status=head["status"],
        lines=[_line(line) for line in lines],
        adjustments=[
            Adjustment(
                period=a["period"],
                invoice=invoice_number(a["original"]),
                meter=a["meter"],
                description=a["description"],
                amount=a["amount"],
            )
            for a in adjustments
        ],
        total=head["total"],
        seal=None
        if seal is None
        else InvoiceSeal(
            root=seal.root, sequence=seal.sequence, sealed_at=seal.sealed_at, entries=seal.entries
        ),
        seal_signature=None
        if seal is None or seal.key_id is None or seal.signature is None
        else InvoiceSealSignature(
            algorithm=seal_signature.ALGORITHM,
            key_id=seal.key_id,
            signature=seal.signature,
            keys=seal_signature.KEYS_PATH,
        ),
    )
    return Invoice(
        document=document,
        features={row["feature"]: _quantity(row["tokens"]) for row in features},
        expired={line["meter"]: _quantity(line["expired"]) for line in lines},
        entries=dict(entries),
        issued_at=head["issued_at"],
    )
