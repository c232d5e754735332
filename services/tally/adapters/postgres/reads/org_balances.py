"""An organization's account balances, for a period or over all time, summed from the
lines themselves (not ``account_period``): what the tests and the kill matrix compare
against what was sent. Nothing here writes."""

from __future__ import annotations

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount


class OrgBalance(BaseModel):
    account: str
    unit: str
    balance: Amount  # debits positive


async def balances(conn: asyncpg.Connection, org: str, period: str | None) -> list[OrgBalance]:
    rows = await conn.fetch(
        """SELECT a.code AS account, a.unit, coalesce(sum(l.amount), 0) AS balance
             FROM account a LEFT JOIN entry_line l ON l.account_id = a.id
            WHERE a.owner = $1 AND ($2::text IS NULL OR a.period = $2)
            GROUP BY a.code, a.unit ORDER BY a.code""",
        org,
        period,
    )
    return [OrgBalance.model_validate(dict(row)) for row in rows]
