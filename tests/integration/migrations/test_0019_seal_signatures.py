"""Revision 0019, signed seals: a 0018 ledger and its seals stay whole; public keys and
signatures are append-only records, a key's id is its public key's, a signature is the
current key's, stamped by the database's clock."""

from __future__ import annotations

import hashlib

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, digest, issue, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0018"
SEAL = """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
          VALUES ('2026-10', $1, $2, 1, 1)"""
LANES = """INSERT INTO period_seal_lane (period, sequence, lane, seq, head_hash)
           SELECT '2026-10', $1, lane, 0, $2 FROM ledger_lane"""
KEY = "INSERT INTO seal_key (key_id, public_key) VALUES ($1, $2)"
SIGN = "INSERT INTO seal_signature (period, sequence, key_id, signature) VALUES ($1, $2, $3, $4)"


def public_key(name: str) -> tuple[str, bytes]:
    """Some 32-byte public key and its id (the database checks ids, never the curve)."""
    raw = digest("key", name)
    return hashlib.sha256(raw).hexdigest()[:16], raw


async def sealed(conn: asyncpg.Connection, sequence: int) -> None:
    async with conn.transaction():
        await conn.execute(SEAL, sequence, digest("root", sequence))
        await conn.execute(LANES, sequence, digest("head", sequence))


async def test_0019_keeps_the_seals_and_signs_them_append_only(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await issue(conn, 1)
        await conn.execute("INSERT INTO period_close (period, as_of) VALUES ('2026-10', now())")
        await sealed(conn, 1)
        await sealed(conn, 2)
    tables = (*LEDGER_0001, "invoice", "period_close", "period_seal", "period_seal_lane")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0019")

    assert unchanged(before, await migrations.contents(*tables))
    first, second = public_key("first"), public_key("second")
    async with raw_connection(migrations.engine) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match="not the key valid"):
            await conn.execute(SIGN, "2026-10", 1, first[0], bytes(64))  # no key yet
        await conn.execute(KEY, *first)
        await conn.execute(SIGN, "2026-10", 1, first[0], bytes(64))
        # backdated: the database stamps its own clock
        await conn.execute(
            "INSERT INTO seal_key (key_id, public_key, valid_from) VALUES ($1, $2, '2000-01-01')",
            *second,
        )
        keys = await conn.fetch("SELECT key_id, valid_from FROM seal_key ORDER BY valid_from")
        assert [row["key_id"] for row in keys] == [first[0], second[0]]
        with pytest.raises(asyncpg.CheckViolationError, match="not the key valid"):
            await conn.execute(SIGN, "2026-10", 2, first[0], bytes(64))  # the first is retired
        await conn.execute(SIGN, "2026-10", 2, second[0], bytes(64))
        assert await conn.fetchval("SELECT count(*) FROM seal_signature") == 2

        refused_rows = [
            (KEY, ("0" * 16, digest("other")), asyncpg.CheckViolationError),  # not its id
            (KEY, (first[0][:8], digest("other")), asyncpg.CheckViolationError),
            (KEY, (*public_key("short")[:1], b"short"), asyncpg.CheckViolationError),
            (KEY, first, asyncpg.UniqueViolationError),
            (SIGN, ("2026-10", 1, second[0], bytes(64)), asyncpg.UniqueViolationError),
            (SIGN, ("2026-10", 3, second[0], bytes(64)), asyncpg.ForeignKeyViolationError),
            (SIGN, ("2026-10", 2, "f" * 16, bytes(64)), asyncpg.CheckViolationError),  # unknown
        ]
        for statement, values, error in refused_rows:
            with pytest.raises(error):
                await conn.execute(statement, *values)
        await sealed(conn, 3)
        with pytest.raises(asyncpg.CheckViolationError):  # a signature is 64 bytes
            await conn.execute(SIGN, "2026-10", 3, second[0], bytes(32))
        for statement in (
            "UPDATE seal_key SET valid_from = now()",
            "UPDATE seal_signature SET signature = $1",
            "DELETE FROM seal_signature",
            "DELETE FROM seal_key",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement, *([bytes(64)] if "$1" in statement else []))
        for table in ("seal_key", "seal_signature"):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(f"TRUNCATE {table} CASCADE")


async def test_0019_round_trips(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0019")
