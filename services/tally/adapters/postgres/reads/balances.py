"""An account's balance as of any instant, and the movements (lines) that make it.

The balance sums ``account_day`` for the UTC days before the instant's day, then the
account's lines of that one day posted up to the instant; the day's entry-id range
(``first_entry``..``last_entry``) bounds the lines read, so the cost does not grow with
the account's history. "As of" is by ``posted_at``, the time the entry was posted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount, snapshot
from tally.adapters.postgres.reads.listing import KeyedRow, Listing
from tally.domain.pagination import DEFAULT_LIMIT, Cursors, Key, Page


class Movement(KeyedRow):
    line_id: int
    entry_id: int
    kind: str
    posted_at: datetime
    amount: Amount
    side: Literal["debit", "credit"]

    def cursor_key(self) -> Key:
        return (self.entry_id, self.line_id)


class Balance(BaseModel):
    account: str
    unit: str
    as_of: datetime
    debits: Amount
    credits: Amount
    balance: Amount  # debits - credits: positive is a debit balance
    movements: Page[Movement]  # newest first, posted up to ``as_of``


BALANCE = """
WITH acct AS (SELECT id, unit FROM account WHERE code = $1),
before AS (
    SELECT coalesce(sum(d.debits), 0) AS debits, coalesce(sum(d.credits), 0) AS credits
      FROM account_day d WHERE d.account_id = (SELECT id FROM acct) AND d.day < $3),
today AS (
    SELECT coalesce(sum(greatest(l.amount, 0)), 0) AS debits,
           coalesce(sum(greatest(-l.amount, 0)), 0) AS credits
      FROM account_day d
      JOIN entry_line l ON l.account_id = d.account_id
                       AND l.entry_id BETWEEN d.first_entry AND d.last_entry
      JOIN journal_entry e ON e.id = l.entry_id
     WHERE d.account_id = (SELECT id FROM acct) AND d.day = $3
       AND e.posted_at <= $2 AND (e.posted_at AT TIME ZONE 'UTC')::date = $3)
SELECT acct.unit, before.debits + today.debits AS debits,
       before.credits + today.credits AS credits
  FROM acct, before, today"""

MOVEMENTS = """
SELECT l.id AS line_id, l.entry_id, e.kind, e.posted_at, l.amount,
       CASE WHEN l.amount < 0 THEN 'credit' ELSE 'debit' END AS side
  FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id
 WHERE l.account_id = (SELECT id FROM account WHERE code = $1) AND e.posted_at <= $2
   AND ($3::bigint IS NULL OR (l.entry_id, l.id) < ($3, $4))
 ORDER BY l.entry_id DESC, l.id DESC"""


async def balance_totals(
    conn: asyncpg.Connection, account: str, as_of: datetime
) -> tuple[str, Decimal, Decimal] | None:
    """(unit, debits, credits) of the account as of ``as_of``; None: no such account."""
    row = await conn.fetchrow(BALANCE, account, as_of, as_of.astimezone(UTC).date())
    return None if row is None else (row["unit"], row["debits"], row["credits"])


async def balance(
    conn: asyncpg.Connection,
    account: str,
    cursors: Cursors,
    as_of: datetime | None = None,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Balance | None:
    """The account's balance as of ``as_of`` (default: now) with a page of its movements."""
    instant = as_of or datetime.now(UTC)
    movements = Listing(f"balance {account}", MOVEMENTS, (account, instant), Movement, (int, int))
    async with snapshot(conn):
        totals = await balance_totals(conn, account, instant)
        if totals is None:
            return None
        page = await movements.page(conn, cursors, after, limit)
    unit, debits, credits = totals
    return Balance(
        account=account,
        unit=unit,
        as_of=instant,
        debits=debits,
        credits=credits,
        balance=debits - credits,
        movements=page,
    )
