"""Invoice inputs: the digest the close records with each invoice (``invoice_input``,
migration 0021), and the queries that say what an invoice's inputs are (reproduce reads
them too: ``reproduction_store``).

The digest's parts are computed by PostgreSQL, set-based, for a whole chunk of invoices:
the records of ``tally.domain.reproduction`` (which stays the definition; reproduce
recomputes them in Python from the raw bytes, so every reproduction checks both agree),
sorted bytewise (``bytea`` sorts as Python's ``bytes``) and hashed with ``sha256``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from tally.domain.reproduction import (
    COMMITMENT_PART,
    LICENSE_PART,
    NOT_BILLED_PART,
    PURCHASE_PART,
    Header,
    Part,
    adjustment_part,
    card_sha256,
    every_part,
    input_digest,
    line_part,
)


def billed_events(where: str) -> str:
    """Each event an invoice line or adjustment bills (``b``: its ``billed_entry`` row, to be
    filtered by ``where``), with its sign: +1 for the events a usage entry carries, -1 for
    the event a usage reversal takes back (a void: ``event_void.entry_id``; the event's own
    ``entry_id`` keeps naming the entry that metered it). The one place that says which
    events an invoice bills: the digest and reproduce both read it."""
    columns = """v.source, v.id, v.raw, v.received_at, v.rate_card_version, v.meter AS event_meter,
                 v.feature, v.quantity"""
    return f"""
        SELECT b.invoice, b.meter, b.original, b.entry_id, 1 AS sign, {columns}
          FROM billed_entry b
          JOIN usage_event v ON v.entry_id = b.entry_id
         WHERE {where}
        UNION ALL
        SELECT b.invoice, b.meter, b.original, b.entry_id, -1 AS sign, {columns}
          FROM billed_entry b
          JOIN event_void x ON x.entry_id = b.entry_id
          JOIN usage_event v ON v.source = x.source AND v.id = x.id
         WHERE {where}"""


# The license reports of the invoice's organization and period that reached the ledger
# before the invoice was recorded (the close read them; later ones change nothing).
LICENSE_REPORTS = """
    SELECT i.number AS invoice, v.source, v.id, v.raw, v.received_at, v.rate_card_version,
           v.meter AS event_meter, v.feature, v.quantity
      FROM invoice i
      JOIN license_usage l ON l.org = i.org AND l.period = i.period
      JOIN usage_event v ON v.source = l.source AND v.id = l.id
     WHERE i.number = ANY($1::bigint[]) AND v.received_at <= i.recorded_at"""

# The requests of the invoice's organization and period of a client kind not billable that
# reached the ledger before the invoice was recorded: billed by nothing, so covered here
# (an event whose bytes now say billable is named by reproduce).
NOT_BILLED = """
    SELECT i.number AS invoice, v.source, v.id, v.raw, v.received_at, v.rate_card_version,
           v.meter AS event_meter, v.feature, v.quantity
      FROM invoice i
      JOIN usage_event v ON v.org = i.org AND v.period = i.period AND v.entry_id IS NULL
     WHERE i.number = ANY($1::bigint[]) AND v.status = 'non_billable'
       AND v.received_at <= i.recorded_at"""

# The commitments recorded before the invoice that apply from its period or earlier (the
# close counts the newest per license and model among them).
COMMITMENTS = """
    SELECT i.number AS invoice, c.id, c.license, c.model, c.quantity, c.from_period
      FROM invoice i JOIN commitment c ON c.org = i.org AND c.from_period <= i.period
     WHERE i.number = ANY($1::bigint[]) AND c.recorded_at <= i.recorded_at"""

PURCHASES = """
    SELECT i.number AS invoice, p.id, p.tokens
      FROM invoice i JOIN token_purchase p ON p.org = i.org AND p.period = i.period
     WHERE i.number = ANY($1::bigint[]) AND p.recorded_at <= i.recorded_at"""


def _field(value: str) -> str:
    """SQL of ``tally.domain.reproduction.field`` of a bytea expression."""
    return f"(int4send(octet_length({value})) || {value})"


def _text(value: str) -> str:
    return _field(f"convert_to({value}, 'UTF8')")


EVENT_RECORD = " || ".join(
    (_text("x.source"), _text("x.id"), _field("sha256(x.raw)"), _text("x.sign::text"))
)
RAW_RECORD = " || ".join((_text("x.source"), _text("x.id"), _field("sha256(x.raw)")))
COMMITMENT_RECORD = (
    " || ".join(
        _text(f"x.{column}") for column in ("id::text", "license", "model", "quantity::text")
    )
    + f" || {_text('x.from_period')}"
)
PURCHASE_RECORD = f"{_text('x.id::text')} || {_text('x.tokens::text')}"


def _parts(rows: str, record: str, by: str = "") -> str:
    """Per invoice (and ``by``): how many records ``rows`` gives, and the SHA-256 of them
    sorted bytewise and joined."""
    return f"""
        SELECT y.invoice{by}, count(*) AS items,
               sha256(string_agg(y.record, ''::bytea ORDER BY y.record)) AS sha256
          FROM (SELECT x.invoice{by.replace("y.", "x.")}, {record} AS record
                  FROM ({rows}) x) y
         GROUP BY y.invoice{by}"""


async def record(conn: asyncpg.Connection, numbers: Sequence[int]) -> None:
    """Record the input digest of the invoices ``numbers``, just written in this
    transaction (their billed entries too): a handful of statements for the whole chunk."""
    if not numbers:
        return
    numbers = list(numbers)
    heads = await conn.fetch(
        """SELECT number, org, period, currency, rate_card_version FROM invoice
            WHERE number = ANY($1::bigint[])""",
        numbers,
    )
    cards = {
        row["version"]: card_sha256(row["body"])
        for row in await conn.fetch(
            """SELECT version, body::text AS body FROM rate_card
                WHERE version = ANY($1::text[])""",
            sorted({head["rate_card_version"] for head in heads}),
        )
    }
    parts: dict[int, list[Part]] = {number: [] for number in numbers}
    events = billed_events("b.invoice = ANY($1::bigint[])")
    for row in await conn.fetch(_parts(events, EVENT_RECORD, ", y.meter, y.original"), numbers):
        name = (
            line_part(row["meter"])
            if row["original"] is None
            else adjustment_part(row["original"], row["meter"])
        )
        parts[row["invoice"]].append(Part(name, row["items"], row["sha256"]))
    for name, rows, record in (
        (LICENSE_PART, LICENSE_REPORTS, RAW_RECORD),
        (NOT_BILLED_PART, NOT_BILLED, RAW_RECORD),
        (COMMITMENT_PART, COMMITMENTS, COMMITMENT_RECORD),
        (PURCHASE_PART, PURCHASES, PURCHASE_RECORD),
    ):
        for row in await conn.fetch(_parts(rows, record), numbers):
            parts[row["invoice"]].append(Part(name, row["items"], row["sha256"]))
    digests, covered = [], []
    for head in heads:
        header = Header(
            head["number"],
            head["org"],
            head["period"],
            head["currency"],
            head["rate_card_version"],
            cards[head["rate_card_version"]],
        )
        digests.append(input_digest(header, parts[head["number"]]))
        covered.append(_parts_json(every_part(parts[head["number"]])))
    await conn.execute(
        """INSERT INTO invoice_input (invoice, digest, parts)
           SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[]::jsonb[])""",
        [head["number"] for head in heads],
        digests,
        covered,
    )


def _parts_json(parts: Sequence[Part]) -> str:
    return json.dumps(
        [{"part": p.name, "items": p.items, "sha256": p.sha256.hex()} for p in parts],
        separators=(",", ":"),
    )
