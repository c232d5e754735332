"""Revision 0006, API keys: a 0005 ledger stays whole; a key keeps its hash, role and
dates for good and may only be revoked, once; an org_viewer key has exactly one org."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

HASH = "ab" * 32
INSERT = """INSERT INTO api_key (id, name, role, scopes, org, secret_hash, expires_at)
            VALUES ($1, 'k', $2, '{invoices:read}', $3, $4, $5)"""


async def test_0006_adds_api_keys_that_are_only_ever_revoked(migrations: Migrations) -> None:
    await migrations.upgrade("0005")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    tables = (*LEDGER_0001, "stream_trim")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0006")

    assert unchanged(before, await migrations.contents(*tables))
    async with raw_connection(migrations.engine) as conn:
        await conn.execute(INSERT, "0123456789ab", "org_viewer", "acme", HASH, None)
        await conn.execute(INSERT, "0123456789ac", "auditor", None, "cd" * 32, None)
        checked = [  # a bad id, role, hash, expiry; an org where none belongs, or missing
            ("XYZ", "auditor", None, "ef" * 32, None),
            ("0123456789ad", "root", None, "ef" * 32, None),
            ("0123456789ad", "auditor", None, "secret", None),
            ("0123456789ad", "auditor", "acme", "ef" * 32, None),
            ("0123456789ad", "org_viewer", None, "ef" * 32, None),
        ]
        for values in checked:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(INSERT, *values)
        with pytest.raises(asyncpg.CheckViolationError):  # expires before it is made
            await conn.execute(
                INSERT + "",
                "0123456789ae",
                "auditor",
                None,
                "ef" * 32,
                await conn.fetchval("SELECT now() - interval '1 day'"),
            )
        with pytest.raises(asyncpg.UniqueViolationError):  # one hash, one key
            await conn.execute(INSERT, "0123456789af", "auditor", None, HASH, None)
        await conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = '0123456789ab'")
        refused = [
            "UPDATE api_key SET revoked_at = now() WHERE id = '0123456789ab'",  # once only
            "UPDATE api_key SET revoked_at = NULL WHERE id = '0123456789ab'",
            "UPDATE api_key SET role = 'auditor', org = NULL WHERE id = '0123456789ab'",
            "UPDATE api_key SET scopes = '{ledger:read}', revoked_at = now()"
            " WHERE id = '0123456789ac'",
            "UPDATE api_key SET expires_at = NULL WHERE id = '0123456789ac'",
            "DELETE FROM api_key",
            "TRUNCATE api_key",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)


async def test_0006_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip("0005", "0006")
