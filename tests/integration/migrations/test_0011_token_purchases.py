"""Revision 0011, token purchases: a ledger of the previous revision stays whole; purchases
are append-only records of positive tokens for a period still open; an invoice bills them
on one line exactly when some were bought; the downgrade gives the old invoice check back."""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from support.migrations import LEDGER_0001, LINES, Migrations, issue, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0010"  # the revision 0011 follows (the integrator rechains it here only)
TABLES = (*LEDGER_0001, "invoice", "invoice_line")


async def buy(conn: asyncpg.Connection, org: str, period: str, tokens: object) -> None:
    await conn.execute(
        "INSERT INTO token_purchase (org, period, tokens, note) VALUES ($1, $2, $3, 'PO-1')",
        org,
        period,
        tokens,
    )


async def issue_bought(
    conn: asyncpg.Connection, number: int, org: str, period: str, tokens: Decimal | None
) -> None:
    """An invoice with its two meter lines and, given ``tokens``, a purchase line for them
    (1.00 a token), written in one transaction as the close does."""
    amount = tokens or Decimal(0)
    async with conn.transaction():
        await issue(conn, number, org, period, total=sum(LINES.values()) + amount)
        if tokens is not None:
            await conn.execute(
                """INSERT INTO invoice_line (invoice, meter, description, allocation, used,
                       overage, expired, unit_price, amount)
                   VALUES ($1, 'ai_tokens_purchased', 'x', $2, 0, 0, 0, 1, $2)""",
                number,
                tokens,
            )


async def test_0011_adds_purchases_and_bills_them_exactly(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await issue(conn, 1)  # acme 2026-10, as the previous revision invoices
    before = await migrations.contents(*TABLES)

    await migrations.upgrade("0011")

    assert unchanged(before, await migrations.contents(*TABLES))
    async with raw_connection(migrations.engine) as conn:
        await buy(conn, "globex", "2026-12", 20_000)
        await buy(conn, "globex", "2026-12", Decimal("0.5"))  # no minimum
        for tokens, period in ((0, "2026-12"), (-1, "2026-12"), (1, "2026-13")):
            with pytest.raises(asyncpg.CheckViolationError):
                await buy(conn, "globex", period, tokens)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await buy(conn, "hooli", "2026-12", 1)
        with pytest.raises(asyncpg.CheckViolationError, match="2026-10 is closed for acme"):
            await buy(conn, "acme", "2026-10", 1)  # acme has its invoice
        await conn.execute("INSERT INTO period_close (period, as_of) VALUES ('2026-11', now())")
        with pytest.raises(asyncpg.CheckViolationError, match="2026-11 is closed for globex"):
            await buy(conn, "globex", "2026-11", 1)  # the close ran, though without globex
        for statement in (
            "UPDATE token_purchase SET tokens = 1",
            "DELETE FROM token_purchase",
            "TRUNCATE token_purchase",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)

        with pytest.raises(asyncpg.CheckViolationError, match="bills 0 purchased tokens"):
            await issue_bought(conn, 2, "globex", "2026-12", None)
        with pytest.raises(asyncpg.CheckViolationError, match="bills 20000 purchased tokens"):
            await issue_bought(conn, 2, "globex", "2026-12", Decimal(20_000))
        with pytest.raises(asyncpg.CheckViolationError, match="bills 5 purchased tokens"):
            await issue_bought(conn, 2, "acme", "2026-12", Decimal(5))  # none bought
        await issue_bought(conn, 2, "globex", "2026-12", Decimal("20000.5"))
        await issue_bought(conn, 3, "acme", "2026-12", None)
        entry = await conn.fetchval("SELECT id FROM journal_entry")
        await conn.execute(
            "INSERT INTO billed_entry VALUES ($1, 2, 'ai_tokens_purchased', NULL)", entry
        )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                """INSERT INTO invoice_line (invoice, meter, description, allocation, used,
                       overage, expired, unit_price, amount)
                   VALUES (3, 'ai_tokens_bought', 'x', 0, 0, 0, 0, 1, 0)"""
            )
        assert await conn.fetchval("SELECT count(*) FROM token_purchase") == 2

    with pytest.raises(Exception, match="cannot be undone"):  # a purchase line is billed
        await migrations.downgrade(PREVIOUS)


async def test_0011_round_trip(migrations: Migrations) -> None:
    at_previous, at_0011 = await migrations.round_trip(PREVIOUS, "0011")
    complete = ("function", "tally_invoice_complete")
    assert at_0011[complete] != at_previous[complete]

    await migrations.downgrade(PREVIOUS)

    assert await migrations.function_source(complete[1]) == at_previous[complete]
