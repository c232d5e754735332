"""An organization's account balances, for a period or over all time. Nothing here writes."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection


async def balances(engine: AsyncEngine, org: str, period: str | None) -> list[dict[str, Any]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT a.code AS account, a.unit, coalesce(sum(l.amount), 0) AS balance
                 FROM account a LEFT JOIN entry_line l ON l.account_id = a.id
                WHERE a.owner = $1 AND ($2::text IS NULL OR a.period = $2)
                GROUP BY a.code, a.unit ORDER BY a.code""",
            org,
            period,
        )
    return [dict(row) for row in rows]
