"""Revision 0008, the read side's rollups: a ledger stored before it gets its rollups
computed from its lines; a rollup row only grows and is never removed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0007"  # the revision 0008 follows (the integrator rechains it)


async def test_0008_rolls_up_the_existing_lines_and_rollups_only_grow(
    migrations: Migrations,
) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001)

    await migrations.upgrade("0008")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    async with raw_connection(migrations.engine) as conn:
        days = [
            dict(r)
            for r in await conn.fetch(
                """SELECT a.code, d.day, d.debits, d.credits, d.lines, d.first_entry,
                          d.last_entry
                     FROM account_day d JOIN account a ON a.id = d.account_id ORDER BY 1"""
            )
        ]
        entry = await conn.fetchval("SELECT id FROM journal_entry")
        oct15 = date(2026, 10, 15)
        assert days == [
            {"code": "org/acme/2026-10/api_request/allowance", "day": oct15, "debits": 0,
             "credits": 3, "lines": 1, "first_entry": entry, "last_entry": entry},
            {"code": "org/acme/2026-10/api_request/usage", "day": oct15, "debits": 3,
             "credits": 0, "lines": 1, "first_entry": entry, "last_entry": entry},
        ]  # fmt: skip
        periods = await conn.fetch(
            "SELECT period, debits - credits AS balance FROM account_period ORDER BY balance"
        )
        assert [(r["period"], r["balance"]) for r in periods] == [
            ("2026-10", Decimal(-3)),
            ("2026-10", Decimal(3)),
        ]
        account = await conn.fetchval("SELECT min(account_id) FROM account_day")
        await conn.execute(  # what a posting does: add lines, widen the entry range
            """UPDATE account_day SET debits = debits + 1, lines = lines + 1,
                      last_entry = last_entry + 1 WHERE account_id = $1""",
            account,
        )
        await conn.execute(
            "UPDATE account_period SET credits = credits + 1, lines = lines + 1"
            " WHERE account_id = $1",
            account,
        )
        refused = [
            "UPDATE account_day SET debits = debits - 1",
            "UPDATE account_day SET lines = lines",  # no new line: nothing to roll up
            "UPDATE account_day SET lines = lines + 1, first_entry = first_entry + 1",
            "UPDATE account_day SET lines = lines + 1, day = day + 1",
            "UPDATE account_period SET credits = 0, lines = lines + 1",
            "UPDATE account_period SET lines = lines + 1, period = '2026-11'",
            "DELETE FROM account_day",
            "DELETE FROM account_period",
            "TRUNCATE account_day",
            "TRUNCATE account_period",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        for statement in (
            "INSERT INTO account_period VALUES ($1, '2026-13', 0, 0, 1)",
            "INSERT INTO account_period VALUES ($1, '2026-11', -1, 0, 1)",
            "INSERT INTO account_day VALUES ($1, '2026-10-16', 0, 0, 1, 5, 4)",
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(statement, account)


async def test_0008_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0008")
