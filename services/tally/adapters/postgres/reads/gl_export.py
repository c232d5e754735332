"""The general-ledger export of a period in the AICPA Audit Data Standard shapes
(``tally.domain.ads``): GL Detail streamed line by line in entry order, and the Trial
Balance shape from the trial balance.

PostgreSQL computes the GL Detail columns itself (``GL_DETAIL``, the SQL twin of
``ads.gl_detail``, which stays the definition: a test holds them byte for byte equal) so
that CSV comes straight out of ``COPY ... TO STDOUT`` in chunks, with no Python object
per line (flat memory; figures in the README, Benchmarks); JSON streams the same rows through a
server-side cursor.
"""

from __future__ import annotations

import codecs
from collections.abc import AsyncIterator, Callable
from enum import StrEnum

import asyncpg

from tally.adapters.postgres.reads import stream
from tally.adapters.postgres.reads.trial_balance import trial_balance as accounts_balances
from tally.adapters.tabular import StreamFormat, TextSink, write_stream
from tally.domain import ads

# Column for column ``ads.gl_detail``: the same text (dates ISO, time with microseconds
# only when there are some, amounts unsigned without trailing zeros), named as the fields.
# The entry's columns are computed once per entry (OFFSET 0 keeps PostgreSQL from
# flattening the subquery and computing them again on every line).
GL_DETAIL = """
SELECT e.id::text AS "journalId",
       row_number() OVER (PARTITION BY e.id ORDER BY l.id)::text AS "journalIdLineNumber",
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
        OFFSET 0) e
  JOIN entry_line l ON l.entry_id = e.id
  JOIN account a ON a.id = l.account_id
 ORDER BY e.id, l.id"""


async def gl_detail(conn: asyncpg.Connection, period: str) -> AsyncIterator[tuple[str, ...]]:
    """Every line of the period's entries as a GL Detail row (``ads.GL_DETAIL_FIELDS``)."""
    async for record in stream(conn, GL_DETAIL, period):
        yield tuple(record)


async def copy_gl_detail_csv(conn: asyncpg.Connection, period: str, out: TextSink) -> int:
    """The GL Detail CSV (header first) as ``COPY`` sends it; returns how many lines.

    Byte for byte what ``write_stream`` writes of ``gl_detail``, as long as no value holds
    a bare carriage return (``COPY`` quotes it, Python's csv does not): ledger keys, codes
    and kinds are built from names that never do.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()

    async def write(chunk: bytes) -> None:
        out.write(decoder.decode(chunk))

    status = await conn.copy_from_query(GL_DETAIL, period, output=write, format="csv", header=True)
    out.write(decoder.decode(b"", final=True))
    return int(status.split()[-1])


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
