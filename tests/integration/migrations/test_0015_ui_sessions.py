"""Revision 0015, the pages' sessions: a 0014 ledger and its keys stay whole (a key of an
organization that does not exist included); sessions are opened only for a live key's
secret hash, only ever revoked, deleted a day after they expired; the functions run as
their owner with a pinned search_path and nobody but their grantees may call them; a new
key must name an organization that exists."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0014"  # the revision 0015 follows (the integrator rechains it: change it here)
KEY = """INSERT INTO api_key (id, name, role, scopes, org, secret_hash, expires_at)
         VALUES ($1, 'k', $2, '{invoices:read}', $3, $4, $5)"""
LIVE, ORPHAN, REVOKED = "0123456789ab", "0123456789ac", "0123456789ad"


def hashed(n: int) -> str:
    return f"{n:064x}"


async def test_0015_opens_sessions_only_for_live_keys(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await conn.execute(KEY, LIVE, "org_viewer", "acme", hashed(1), None)
        await conn.execute(KEY, ORPHAN, "org_viewer", "gone", hashed(2), None)  # no such org
        await conn.execute(KEY, REVOKED, "auditor", None, hashed(3), None)
        await conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = $1", REVOKED)
    tables = (*LEDGER_0001, "api_key")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0015")

    assert unchanged(before, await migrations.contents(*tables))
    async with raw_connection(migrations.engine) as conn:
        opened = await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(10), hashed(1))
        assert opened is not None
        assert await conn.fetchval(
            "SELECT expires_at - created_at FROM ui_session WHERE id_hash = $1", hashed(10)
        ) == await conn.fetchval("SELECT interval '8 hours'")
        for secret_hash in (hashed(3), hashed(99)):  # revoked, unknown: no session
            assert await conn.fetchval(
                "SELECT ui_session_open($1, $2)", hashed(11), secret_hash
            ) is None  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM ui_session") == 1
        assert await conn.fetchval("SELECT ui_session_revoke($1)", hashed(10)) is True
        assert await conn.fetchval("SELECT ui_session_revoke($1)", hashed(10)) is False
        refused = [
            "UPDATE ui_session SET revoked_at = NULL",
            "UPDATE ui_session SET expires_at = expires_at + interval '1 day'",
            "DELETE FROM ui_session",  # not expired for a day yet
            "TRUNCATE ui_session",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        await conn.execute(  # a session that expired two days ago: swept by the next open
            """INSERT INTO ui_session (id_hash, key_id, created_at, expires_at)
               VALUES ($1, $2, now() - interval '3 days', now() - interval '2 days')""",
            hashed(12),
            LIVE,
        )
        await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(13), hashed(1))
        assert {r[0] for r in await conn.fetch("SELECT id_hash FROM ui_session")} == {
            hashed(10),
            hashed(13),
        }
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.fetchval("SELECT ui_session_open('not a hash', $1)", hashed(1))
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # a new key of no organization
            await conn.execute(KEY, "0123456789ae", "org_viewer", "gone", hashed(4), None)
        functions = await conn.fetch(
            """SELECT proname, prosecdef, proconfig, has_function_privilege('public', oid,
                      'EXECUTE') AS anyone
                 FROM pg_proc WHERE proname LIKE 'ui_session_%' ORDER BY proname"""
        )
        assert [(f["proname"], f["prosecdef"], f["anyone"]) for f in functions] == [
            ("ui_session_open", True, False),
            ("ui_session_revoke", True, False),
        ]
        assert all(f["proconfig"] == ["search_path=public, pg_temp"] for f in functions)


async def test_0015_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0015")
