"""AI tokens bought for a period: the SQL (the rules are in
``tally.service_layer.organizations``; the close reads them through ``allocations``)."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from tally.adapters.ports.token_purchases import Standing
from tally.adapters.postgres.close_store import CLOSE_LOCK
from tally.adapters.postgres.reads.invoices import invoice_number


class PostgresTokenPurchases:
    async def standing(self, conn: asyncpg.Connection, org: str, period: str) -> Standing:
        # shared: purchases do not wait for each other, only for (and hold off) a close
        await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", CLOSE_LOCK)
        row = await conn.fetchrow(
            """SELECT EXISTS (SELECT 1 FROM organization WHERE name = $1) AS org_exists,
                      EXISTS (SELECT 1 FROM period_close WHERE period = $2) AS period_closed,
                      (SELECT number FROM invoice WHERE org = $1 AND period = $2) AS invoice""",
            org,
            period,
        )
        assert row is not None
        number = row["invoice"]
        invoice = None if number is None else invoice_number(number)
        return Standing(row["org_exists"], row["period_closed"], invoice)

    async def insert(
        self, conn: asyncpg.Connection, org: str, period: str, tokens: Decimal, note: str | None
    ) -> int:
        purchase: int = await conn.fetchval(
            """INSERT INTO token_purchase (org, period, tokens, note) VALUES ($1, $2, $3, $4)
               RETURNING id""",
            org,
            period,
            tokens,
            note,
        )
        return purchase
