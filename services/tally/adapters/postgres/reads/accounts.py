"""Accounts with their current totals (from ``account_period``, not the lines)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount, fetch_limit, stream
from tally.domain.pagination import DEFAULT_LIMIT, Cursors, Key, Page


class AccountFilter(BaseModel):
    org: str | None = None  # owner: an organization or "platform"
    period: str | None = None
    unit: str | None = None
    kind: str | None = None


class AccountRow(BaseModel):
    id: int
    code: str
    owner: str
    period: str | None
    unit: str
    kind: str
    feature: str | None
    debits: Amount
    credits: Amount
    balance: Amount  # debits - credits

    def cursor_key(self) -> Key:
        return (self.code,)


QUERY = """
SELECT a.id, a.code, a.owner, a.period, a.unit, a.kind, a.feature,
       coalesce(t.debits, 0) AS debits, coalesce(t.credits, 0) AS credits,
       coalesce(t.debits - t.credits, 0) AS balance
  FROM account a
  LEFT JOIN LATERAL (SELECT sum(debits) AS debits, sum(credits) AS credits
                       FROM account_period p WHERE p.account_id = a.id) t ON true
 WHERE ($1::text IS NULL OR a.owner = $1) AND ($2::text IS NULL OR a.period = $2)
   AND ($3::text IS NULL OR a.unit = $3) AND ($4::text IS NULL OR a.kind = $4)
   AND ($5::text IS NULL OR a.code > $5)
 ORDER BY a.code"""


def _args(filters: AccountFilter) -> tuple[str | None, ...]:
    return (filters.org, filters.period, filters.unit, filters.kind)


async def accounts(
    conn: asyncpg.Connection,
    filters: AccountFilter,
    cursors: Cursors,
    after: str | None = None,
    limit: int = DEFAULT_LIMIT,
) -> Page[AccountRow]:
    cursors = cursors.bound_to("accounts")
    key = cursors.after(after, (str,))
    rows = await conn.fetch(
        QUERY + " LIMIT $6", *_args(filters), key[0] if key else None, fetch_limit(limit)
    )
    return cursors.page([AccountRow(**dict(row)) for row in rows], limit)


async def iter_accounts(
    conn: asyncpg.Connection, filters: AccountFilter
) -> AsyncIterator[AccountRow]:
    async for row in stream(conn, QUERY, *_args(filters), None):
        yield AccountRow(**dict(row))
