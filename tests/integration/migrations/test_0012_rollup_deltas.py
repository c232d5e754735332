"""Revision 0012, rollup deltas: a 0011 ledger's daily rollups stay whole, a delta holds a
positive count of a valid key, and a downgrade folds the deltas into the daily rows first
(nothing counted is lost)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0011"  # the revision 0012 follows (the integrator rechains it: change it here)
ROLLUPS = ("api_usage_daily", "ai_usage_daily")
API_ROW = "'acme', '2026-10-15', 'c-1', '/users', 'GET', 200, true"


async def test_0012_keeps_the_rollups_and_checks_the_deltas(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await conn.execute(
            f"""INSERT INTO api_usage_daily (org, day, oauth_client_id, template_uri, method,
                    status, billable, requests) VALUES ({API_ROW}, 5);
                INSERT INTO ai_usage_daily (org, period, day, feature, quantity)
                VALUES ('acme', '2026-10', '2026-10-15', 'voice_bot', 12.5)"""
        )
    before = await migrations.contents(*LEDGER_0001, *ROLLUPS)

    await migrations.upgrade("0012")

    assert unchanged(before, await migrations.contents(*LEDGER_0001, *ROLLUPS))
    async with raw_connection(migrations.engine) as conn:
        await conn.execute(
            f"""INSERT INTO api_usage_delta (org, day, oauth_client_id, template_uri, method,
                    status, billable, requests) VALUES ({API_ROW}, 2), ({API_ROW}, 3),
                    ('acme', '2026-10-16', 'c-2', '/users', 'POST', 429, true, 7);
                INSERT INTO ai_usage_delta (org, period, day, feature, quantity)
                VALUES ('acme', '2026-10', '2026-10-15', 'voice_bot', 0.5)"""
        )
        refused = [
            f"""INSERT INTO api_usage_delta (org, day, oauth_client_id, template_uri, method,
                    status, billable, requests) VALUES ({API_ROW}, 0)""",
            """INSERT INTO api_usage_delta (org, day, oauth_client_id, template_uri, method,
                    status, billable, requests)
               VALUES ('acme', '2026-10-15', 'c', '/x', 'GET', 600, true, 1)""",
            """INSERT INTO ai_usage_delta (org, period, day, feature, quantity)
               VALUES ('acme', '2026-11', '2026-10-31', 'voice_bot', 1)""",
            """INSERT INTO ai_usage_delta (org, period, day, feature, quantity)
               VALUES ('acme', '2026-10', '2026-10-31', 'voice_bot', -1)""",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(statement)

    await migrations.downgrade(PREVIOUS)

    async with raw_connection(migrations.engine) as conn:
        api = {
            (r["day"], r["oauth_client_id"], r["status"]): r["requests"]
            for r in await conn.fetch("SELECT * FROM api_usage_daily")
        }
        assert api == {(date(2026, 10, 15), "c-1", 200): 10, (date(2026, 10, 16), "c-2", 429): 7}
        assert await conn.fetchval("SELECT quantity FROM ai_usage_daily") == Decimal("13.0")


async def test_0012_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0012")
