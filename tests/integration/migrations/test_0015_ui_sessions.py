"""Revision 0015, the pages' sessions: a 0014 ledger and its keys stay whole (a key of an
organization that does not exist included); sessions are opened only for a live key's
secret (its stored hash opens nothing), at most 20 live a key, only ever revoked, deleted
a day after they expired; the functions run as
their owner with a pinned search_path and nobody but their grantees may call them; a new
key must name an organization that exists."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection
from tally.domain.access import hash_secret

PREVIOUS = "0014"  # the revision 0015 follows (the integrator rechains it: change it here)
KEY = """INSERT INTO api_key (id, name, role, scopes, org, secret_hash, expires_at)
         VALUES ($1, 'k', $2, '{invoices:read}', $3, $4, $5)"""
LIVE, ORPHAN, REVOKED = "0123456789ab", "0123456789ac", "0123456789ad"


def hashed(n: int) -> str:
    return f"{n:064x}"


def secret(n: int) -> str:
    return f"tally_{n:012x}_" + "s" * 43


def secret_hash(n: int) -> str:
    return hash_secret(secret(n))


async def test_0015_opens_sessions_only_for_live_keys(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await conn.execute(KEY, LIVE, "org_viewer", "acme", secret_hash(1), None)
        await conn.execute(KEY, ORPHAN, "org_viewer", "gone", secret_hash(2), None)  # no org
        await conn.execute(KEY, REVOKED, "auditor", None, secret_hash(3), None)
        await conn.execute("UPDATE api_key SET revoked_at = now() WHERE id = $1", REVOKED)
    tables = (*LEDGER_0001, "api_key")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0015")

    assert unchanged(before, await migrations.contents(*tables))
    async with raw_connection(migrations.engine) as conn:
        opened = await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(10), secret(1))
        assert opened is not None
        assert await conn.fetchval(
            "SELECT expires_at - created_at FROM ui_session WHERE id_hash = $1", hashed(10)
        ) == await conn.fetchval("SELECT interval '8 hours'")
        # revoked, unknown, and the live key's stored hash (tally_reader may read it): none
        for presented in (secret(3), secret(99), secret_hash(1)):
            assert await conn.fetchval(
                "SELECT ui_session_open($1, $2)", hashed(11), presented
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
        await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(13), secret(1))
        assert {r[0] for r in await conn.fetch("SELECT id_hash FROM ui_session")} == {
            hashed(10),
            hashed(13),
        }
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.fetchval("SELECT ui_session_open('not a hash', $1)", secret(1))
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # a new key of no organization
            await conn.execute(KEY, "0123456789ae", "org_viewer", "gone", secret_hash(4), None)
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


async def test_0015_keeps_at_most_20_live_sessions_a_key(migrations: Migrations) -> None:
    await migrations.upgrade("0015")
    async with raw_connection(migrations.engine) as conn:
        await conn.execute(KEY, LIVE, "auditor", None, secret_hash(1), None)
        await conn.execute(KEY, "0123456789af", "auditor", None, secret_hash(2), None)
        await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(1000), secret(2))
        for n in range(25):  # one a transaction: each later than the last
            await conn.fetchval("SELECT ui_session_open($1, $2)", hashed(n), secret(1))
        live = await conn.fetch(
            "SELECT id_hash FROM ui_session WHERE key_id = $1 AND revoked_at IS NULL", LIVE
        )
        assert {r[0] for r in live} == {hashed(n) for n in range(5, 25)}  # the 20 newest
        assert await conn.fetchval(  # another key's session is left alone
            "SELECT revoked_at IS NULL FROM ui_session WHERE id_hash = $1", hashed(1000)
        )


async def test_0015_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0015")
