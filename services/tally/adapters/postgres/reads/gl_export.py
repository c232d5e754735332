"""The general-ledger export of a period in the AICPA Audit Data Standard shapes
(``tally.domain.ads``): GL Detail streamed line by line in entry order (a server-side
cursor, flat memory), and the Trial Balance shape from the trial balance."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from enum import StrEnum

import asyncpg

from tally.adapters.postgres.reads import stream
from tally.adapters.postgres.reads.trial_balance import iter_trial_balance
from tally.domain import ads

GL_DETAIL = """
SELECT e.id, e.kind, e.idempotency_key, e.org, e.period, e.posted_at, a.code, a.kind,
       a.unit, l.amount
  FROM journal_entry e
  JOIN entry_line l ON l.entry_id = e.id
  JOIN account a ON a.id = l.account_id
 WHERE e.period = $1
 ORDER BY e.id, l.id"""


async def gl_detail(conn: asyncpg.Connection, period: str) -> AsyncIterator[tuple[str, ...]]:
    """Every line of the period's entries as a GL Detail row (``ads.GL_DETAIL_FIELDS``)."""
    entry_id, number = None, 0
    async for record in stream(conn, GL_DETAIL, period):
        number = number + 1 if record[0] == entry_id else 1  # the line's place in its entry
        entry_id = record[0]
        yield ads.gl_detail(ads.LedgerLine(entry_id, number, *record[1:]))


async def trial_balance(conn: asyncpg.Connection, period: str) -> AsyncIterator[tuple[str, ...]]:
    """Every account of the period's trial balance as a Trial Balance row."""
    async for row in iter_trial_balance(conn, period):
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
