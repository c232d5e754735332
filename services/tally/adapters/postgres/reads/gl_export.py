"""The general-ledger export of a period in the AICPA Audit Data Standard shapes
(``tally.domain.ads``): GL Detail streamed line by line in entry order, and the Trial
Balance shape from the trial balance.

PostgreSQL computes the GL Detail columns itself (``GL_DETAIL``, the SQL twin of
``ads.gl_detail``, which stays the definition: a test holds them byte for byte equal) so
that CSV comes straight out of ``COPY ... TO STDOUT`` in chunks, with no Python object
per line (flat memory; figures in docs/content/performance.md); JSON streams the same rows through a
server-side cursor.
"""

from __future__ import annotations

import asyncio
import codecs
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

import asyncpg

from tally.adapters.postgres.reads import bulk_snapshot, stream
from tally.adapters.postgres.reads.trial_balance import trial_balance as accounts_balances
from tally.adapters.tabular import StreamFormat, TextSink, write_stream
from tally.domain import ads

COPY_AHEAD = 8  # COPY's chunks (about 64 KB each) read ahead of a slow reader

# Column for column ``ads.gl_detail``: the same text (dates ISO, time with microseconds
# only when there are some, amounts unsigned without trailing zeros), named as the fields.
# The plan it is written for: the period's entries in id order (journal_entry_period_id),
# each entry's columns computed once (OFFSET 0 keeps PostgreSQL from flattening the
# subquery and computing them again on every line), and per entry its lines in order from
# the index that holds them (entry_line_entry_line, migration 0013): no scan of the other
# periods' lines, no sort of the period's.
GL_DETAIL = """
SELECT e.id::text AS "journalId",
       l.number::text AS "journalIdLineNumber",
       e.header AS "jeHeaderDescription",
       a.kind AS "jeLineDescription",
       e.kind AS "source",
       e.business_unit AS "businessUnitCode",
       e.fiscal_year AS "fiscalYear",
       e.number AS "period",
       e.effective AS "effectiveDate",
       e.entered AS "enteredDate",
       e.entered_time AS "enteredTime",
       a.code AS "glAccountNumber",
       trim_scale(abs(l.amount))::text AS "amount",
       CASE WHEN l.amount < 0 THEN 'C' ELSE 'D' END AS "amountCreditDebitIndicator",
       a.unit AS "amountCurrency"
  FROM (SELECT id, kind, kind || ' ' || idempotency_key AS header,
               coalesce(nullif(org, ''), 'platform') AS business_unit,
               split_part(period, '-', 1) AS fiscal_year,
               split_part(period, '-', 2)::int::text AS number,
               to_char(least(p.posted::date,
                             to_date(period, 'YYYY-MM') + interval '1 month - 1 day'),
                       'YYYY-MM-DD') AS effective,
               to_char(p.posted, 'YYYY-MM-DD') AS entered,
               to_char(p.posted, 'HH24:MI:SS')
                 || coalesce('.' || nullif(to_char(p.posted, 'US'), '000000'), '')
                 AS entered_time
          FROM journal_entry
         CROSS JOIN LATERAL (SELECT posted_at AT TIME ZONE 'UTC' AS posted) p
         WHERE period = $1
         ORDER BY id
        OFFSET 0) e
 CROSS JOIN LATERAL (SELECT row_number() OVER (ORDER BY id) AS number, account_id, amount
                       FROM entry_line WHERE entry_id = e.id) l
  JOIN account a ON a.id = l.account_id
 ORDER BY e.id, l.number"""


async def gl_detail(conn: asyncpg.Connection, period: str) -> AsyncIterator[tuple[str, ...]]:
    """Every line of the period's entries as a GL Detail row (``ads.GL_DETAIL_FIELDS``)."""
    async with bulk_snapshot(conn):
        async for record in stream(conn, GL_DETAIL, period):
            yield tuple(record)


async def gl_detail_csv(
    conn: asyncpg.Connection, period: str, copied: Callable[[int], object] | None = None
) -> AsyncIterator[bytes]:
    """The GL Detail CSV (header first) in the chunks ``COPY`` sends, as they arrive.

    Byte for byte what ``write_stream`` writes of ``gl_detail``, as long as no value holds
    a bare carriage return (``COPY`` quotes it, Python's csv does not): ledger keys, codes
    and kinds are built from names that never do. No cell needs ``csv_cells.safe_row``
    either: none can start with a formula's character (ids, dates, unsigned amounts, kinds,
    ``org/``/``platform/`` codes, organization names whose CHECK wants a letter or digit
    first). At most ``COPY_AHEAD`` chunks wait for
    the reader: a slow one slows the copy instead of growing memory. At the end,
    ``copied`` hears how many lines were sent (the header not counted).
    """
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(COPY_AHEAD)
    left = False  # the reader stopped early: the rest of the copy is dropped

    async def keep(chunk: bytes) -> None:
        if not left:
            await chunks.put(bytes(chunk))  # the driver hands over a buffer of its own

    async def copy() -> None:
        try:
            async with bulk_snapshot(conn):
                status = await conn.copy_from_query(
                    GL_DETAIL, period, output=keep, format="csv", header=True
                )
            if copied is not None:
                copied(int(status.split()[-1]))
        finally:
            if not left:
                await chunks.put(None)

    copying = asyncio.create_task(copy())
    try:
        while (chunk := await chunks.get()) is not None:
            yield chunk
    finally:
        # A reader that leaves early lets the copy run out (dropping its chunks) rather
        # than cancel it: a COPY cancelled in the driver leaves its connection unusable.
        left = True
        while not chunks.empty():  # unblock a copy waiting for room
            chunks.get_nowait()
        await copying  # the copy's error, if it ended with one


async def copy_gl_detail_csv(conn: asyncpg.Connection, period: str, out: TextSink) -> int:
    """The GL Detail CSV to ``out``; returns how many lines (the header not counted)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines: list[int] = []
    async for chunk in gl_detail_csv(conn, period, lines.append):
        out.write(decoder.decode(chunk))
    out.write(decoder.decode(b"", final=True))
    return lines[0]


async def write_gl_detail(
    conn: asyncpg.Connection, period: str, out: TextSink, fmt: StreamFormat
) -> int:
    """The GL Detail shape to ``out``: CSV straight from ``COPY``, JSON row by row."""
    if fmt is StreamFormat.csv:
        return await copy_gl_detail_csv(conn, period, out)
    return await write_stream(out, ads.GL_DETAIL_FIELDS, gl_detail(conn, period), fmt)


async def trial_balance(conn: asyncpg.Connection, period: str) -> AsyncIterator[tuple[str, ...]]:
    """Every account of the period's trial balance as a Trial Balance row."""
    for row in (await accounts_balances(conn, period)).rows:
        yield ads.trial_balance_row(
            row.account, row.owner, row.unit, period, row.opening, row.debits, row.credits
        )


class Standard(StrEnum):
    ads = "ads"  # the AICPA Audit Data Standard, the only one so far


class Shape(StrEnum):
    gl_detail = "gl-detail"
    trial_balance = "trial-balance"


Rows = Callable[[asyncpg.Connection, str], AsyncIterator[tuple[str, ...]]]


def shaped(shape: Shape) -> tuple[tuple[str, ...], Rows]:
    """The shape's field names and the rows of a period in it (for the CLI and the API)."""
    if shape is Shape.gl_detail:
        return ads.GL_DETAIL_FIELDS, gl_detail
    return ads.TRIAL_BALANCE_FIELDS, trial_balance


async def write_trial_balance(
    conn: asyncpg.Connection, period: str, out: TextSink, fmt: StreamFormat
) -> int:
    """The Trial Balance shape to ``out`` (one row per account: few, whatever the lines)."""
    return await write_stream(out, ads.TRIAL_BALANCE_FIELDS, trial_balance(conn, period), fmt)
