"""Revision 0016, the cursor key: a 0015 ledger keeps its rows and gains one random 32-byte
secret, which the API (tally_reader) and the CLI (tally_writer) read and cannot change."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres import schema
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.privileges import READER, WRITER

PREVIOUS = "0015"  # the revision 0016 follows (the integrator rechains it: change it here)


async def secret(migrations: Migrations) -> bytes:
    async with raw_connection(migrations.engine) as conn:
        found: bytes = await conn.fetchval("SELECT secret FROM cursor_key")
        return found


async def test_0016_adds_one_random_secret_to_a_ledger(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001)

    await migrations.upgrade("0016")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    first = await secret(migrations)
    assert len(first) == 32 and len(set(first)) > 8  # not a constant or a pattern
    async with raw_connection(migrations.engine) as conn:
        with pytest.raises(asyncpg.UniqueViolationError):  # one key, never a second
            await conn.execute("INSERT INTO cursor_key (secret) VALUES ($1)", bytes(32))
    await migrations.downgrade(PREVIOUS)
    await migrations.upgrade("0016")
    assert await secret(migrations) != first  # made anew, not written in the revision


async def test_0016_the_roles_read_the_secret_and_cannot_change_it(
    migrations: Migrations,
) -> None:
    await migrations.upgrade("0016")
    await schema.grant(migrations.url, {})
    async with raw_connection(migrations.engine) as conn:
        try:
            for role in (READER, WRITER):
                await conn.execute(f"SET ROLE {role}")
                assert len(await conn.fetchval("SELECT secret FROM cursor_key")) == 32
                for statement in (
                    "UPDATE cursor_key SET secret = '\\x00'",
                    "DELETE FROM cursor_key",
                    "INSERT INTO cursor_key (one, secret) VALUES (false, '\\x00')",
                ):
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(statement)
        finally:
            await conn.execute("RESET ROLE")


async def test_0016_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0016")
