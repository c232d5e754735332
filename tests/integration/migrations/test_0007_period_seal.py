"""Revision 0007, the month seal: a ledger of the previous revision stays whole; seals are
append-only records of closed periods, numbered without a gap, holding every lane's head,
and a later seal's heads never fall behind an earlier one's."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, digest, issue, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0006"  # the revision 0007 follows (the integrator may rechain it: change it here)
LANES = 16


async def seal(conn: asyncpg.Connection, sequence: int, lane_1_seq: int = 1) -> None:
    """A seal of 2026-10 with every lane's head, in one transaction as the close writes it."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
               VALUES ('2026-10', $1, $2, 1, 1)""",
            sequence,
            digest("root", sequence),
        )
        await conn.execute(
            """INSERT INTO period_seal_lane (period, sequence, lane, seq, head_hash)
               SELECT '2026-10', $1, lane, CASE lane WHEN 1 THEN $2 ELSE 0 END, $3
                 FROM ledger_lane""",
            sequence,
            lane_1_seq,
            digest("head", sequence),
        )


async def test_0007_adds_seals_and_keeps_them_whole(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await issue(conn, 1)
        await conn.execute("INSERT INTO period_close (period, as_of) VALUES ('2026-10', now())")
    tables = (*LEDGER_0001, "invoice", "period_close")
    before = await migrations.contents(*tables)

    await migrations.upgrade("0007")

    assert unchanged(before, await migrations.contents(*tables))
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM period_seal") == 0
        await seal(conn, 1)
        await seal(conn, 2, lane_1_seq=1)  # a lane that did not move keeps its head
        assert await conn.fetchval("SELECT count(*) FROM period_seal_lane") == 2 * LANES

        for sequence in (2, 4):  # taken; not the next one
            with pytest.raises((asyncpg.UniqueViolationError, asyncpg.CheckViolationError)):
                await seal(conn, sequence)
        with pytest.raises(asyncpg.CheckViolationError, match="behind seal 2"):
            await seal(conn, 3, lane_1_seq=0)
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # only a closed period
            await conn.execute(
                """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
                   VALUES ('2026-11', 1, $1, 0, 0)""",
                digest("root"),
            )
        with pytest.raises(asyncpg.CheckViolationError, match="holds 0 lane heads"):
            async with conn.transaction():  # a seal without its lane heads
                await conn.execute(
                    """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
                       VALUES ('2026-10', 3, $1, 0, 1)""",
                    digest("root", 3),
                )
        with pytest.raises(asyncpg.CheckViolationError):  # a root is a SHA-256
            await conn.execute(
                """INSERT INTO period_seal (period, sequence, root, entries, last_invoice)
                   VALUES ('2026-10', 3, 'short', 0, 1)"""
            )
        refused = [
            "UPDATE period_seal SET root = $1",
            "UPDATE period_seal_lane SET head_hash = $1",
            "DELETE FROM period_seal_lane WHERE $1::bytea IS NOT NULL",
            "DELETE FROM period_seal WHERE $1::bytea IS NOT NULL",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement, digest("forged"))
        for tables in ("period_seal_lane", "period_seal, period_seal_lane"):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(f"TRUNCATE {tables}")


async def test_0007_round_trip(migrations: Migrations) -> None:
    at_previous, at_0007 = await migrations.round_trip(PREVIOUS, "0007")
    assert ("index", "journal_entry_period_lane_seq") in at_0007
    assert ("index", "journal_entry_period_lane_seq") not in at_previous
