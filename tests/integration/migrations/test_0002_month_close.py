"""Revision 0002, the month close: a 0001 ledger stays whole; invoices are immutable, numbered
without gaps, complete at commit; its downgrade gives 0001's balance check back."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, issue, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection


async def unbalanced(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        entry = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ('bad', 'usage', 'acme', '2026-10', '2026-01', now(), 3, 1,
                       '\\x00', '\\x01') RETURNING id"""
        )
        await conn.execute(
            """INSERT INTO entry_line (entry_id, account_id, amount)
               SELECT $1, id, 1 FROM account""",
            entry,
        )


async def test_0002_keeps_the_ledger_and_guards_invoices(migrations: Migrations) -> None:
    await migrations.upgrade("0001")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001)

    await migrations.upgrade("0002")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT last FROM invoice_counter") == 0
        await issue(conn, 1)
        with pytest.raises(asyncpg.CheckViolationError, match="gap"):
            await issue(conn, 3, org="globex")
        with pytest.raises(asyncpg.UniqueViolationError):  # a number is used once
            await issue(conn, 1, org="globex", period="2026-11")
        with pytest.raises(asyncpg.CheckViolationError, match="meter lines, not 2"):
            await issue(conn, 2, org="globex", lines={"api_requests": Decimal(5)})
        with pytest.raises(asyncpg.CheckViolationError, match="not the sum of its lines"):
            await issue(conn, 2, org="globex", total=Decimal("80.01"))
        with pytest.raises(asyncpg.UniqueViolationError):  # one invoice per org and period
            await issue(conn, 2)
        await issue(conn, 2, org="globex")
        assert [r["number"] for r in await conn.fetch("SELECT number FROM invoice")] == [1, 2]

        entry = await conn.fetchval("SELECT id FROM journal_entry")
        await conn.execute("INSERT INTO billed_entry VALUES ($1, 1, 'api_requests', NULL)", entry)
        with pytest.raises(asyncpg.UniqueViolationError):  # billed once
            await conn.execute(
                "INSERT INTO billed_entry VALUES ($1, 2, 'api_requests', NULL)", entry
            )
        await conn.execute(
            """INSERT INTO commitment (org, license, model, quantity, from_period)
               VALUES ('acme', 'gc2', 'named', 20, '2026-10')"""
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                """INSERT INTO commitment (org, license, model, quantity, from_period)
                   VALUES ('acme', 'gc2', 'seat', 20, '2026-10')"""
            )
        await conn.execute("INSERT INTO invoice_feature VALUES (1, 'search', 12)")
        await conn.execute("INSERT INTO period_close (period, as_of) VALUES ('2026-10', now())")
        refused = [
            "UPDATE invoice SET total = 0",
            "DELETE FROM invoice_line",
            "UPDATE invoice_feature SET tokens = 1",
            "DELETE FROM billed_entry",
            "UPDATE commitment SET quantity = 1",
            "TRUNCATE invoice CASCADE",
            "TRUNCATE invoice_counter",
            "DELETE FROM period_close",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):
            await unbalanced(conn)


async def test_0002_round_trip_restores_0001s_balance_check(migrations: Migrations) -> None:
    at_0001, at_0002 = await migrations.round_trip("0001", "0002")  # equal at each step
    balance = ("function", "tally_check_balanced")
    assert at_0002[balance] != at_0001[balance]  # 0002 rewrites it (LATERAL)

    await migrations.downgrade("0001")

    assert await migrations.function_source("tally_check_balanced") == at_0001[balance]
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):
            await unbalanced(conn)
