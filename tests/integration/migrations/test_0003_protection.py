"""Revision 0003, protection: a 0002 ledger stays whole and gets one opening delivery tally
per stream, chained on lane 1; tallies are append-only; the invoice counter never goes back.

The roles and grants are not a revision: ``tally migrate`` applies them after every upgrade
(``tally.adapters.postgres.privileges``); here they are applied to 0003's schema as it is.
"""

from __future__ import annotations

from decimal import Decimal

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, issue, ledger_0001, unchanged
from tally.adapters.postgres import schema
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.privileges import READER, WRITER
from tally.domain.deliveries import DeliveryCounts, tally_hash
from tally.domain.ledger import GENESIS_HASH

TABLES = (*LEDGER_0001, "invoice", "invoice_line", "invoice_counter")


async def test_0003_opens_one_tally_per_stream_in_a_chain(migrations: Migrations) -> None:
    await migrations.upgrade("0002")
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await issue(conn, 1, lines={"api_requests": Decimal(80), "ai_tokens": Decimal(0)})
        await conn.execute("UPDATE invoice_counter SET last = 1")
    before = await migrations.contents(*TABLES)

    await migrations.upgrade("0003")

    assert unchanged(before, await migrations.contents(*TABLES))
    async with raw_connection(migrations.engine) as conn:
        tallies = await conn.fetch("SELECT * FROM delivery_tally ORDER BY lane, seq")
        lanes = await conn.fetch("SELECT * FROM delivery_lane ORDER BY lane")
        # s1: two events and a duplicate; s2: a conflict and two dead letters, one replayed
        expected = {
            "s1": DeliveryCounts(events=2, duplicates=1),
            "s2": DeliveryCounts(conflicts=1, dead_letters=2, replayed=1),
        }
        assert [(t["lane"], t["seq"], t["stream"]) for t in tallies] == [
            (1, 1, "s1"),
            (1, 2, "s2"),
        ]
        head = GENESIS_HASH
        for tally in tallies:
            counts = DeliveryCounts(
                tally["events"],
                tally["duplicates"],
                tally["conflicts"],
                tally["dead_letters"],
                tally["replayed"],
            )
            assert counts == expected[tally["stream"]]
            assert tally["prev_hash"] == head
            head = tally_hash(head, 1, tally["seq"], tally["stream"], tally["recorded_at"], counts)
            assert tally["hash"] == head
        assert (lanes[0]["seq"], lanes[0]["head_hash"]) == (2, head)
        assert len(lanes) == 16
        assert all((lane["seq"], lane["head_hash"]) == (0, GENESIS_HASH) for lane in lanes[1:])

        refused = [
            "UPDATE delivery_tally SET events = 3",
            "DELETE FROM delivery_tally",
            "TRUNCATE delivery_tally",
            "TRUNCATE delivery_lane CASCADE",
            "UPDATE invoice_counter SET last = 0",  # never goes back
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        await conn.execute("UPDATE invoice_counter SET last = 2")


async def test_0003_on_an_empty_ledger_opens_nothing(migrations: Migrations) -> None:
    await migrations.upgrade("0003")
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM delivery_tally") == 0
        assert await conn.fetchval("SELECT max(seq) FROM delivery_lane") == 0


async def test_0003_tables_follow_the_roles_policy(migrations: Migrations) -> None:
    await migrations.upgrade("0003")
    await schema.grant(migrations.url, {})
    tally = """INSERT INTO delivery_tally VALUES (2, 1, 's1', 1, 0, 0, 0, 0, now(),
                   '\\x00', '\\x01')"""
    async with raw_connection(migrations.engine) as conn:
        await conn.execute(f"SET ROLE {WRITER}")
        try:
            await conn.execute(tally)
            await conn.execute(
                "UPDATE delivery_lane SET seq = 1, head_hash = '\\x01' WHERE lane = 2"
            )
            await conn.execute("UPDATE invoice_counter SET last = 1")
            for statement in (
                "INSERT INTO delivery_lane (lane) VALUES (17)",  # migrate fills the lanes
                "UPDATE delivery_lane SET lane = 18 WHERE lane = 2",
                "UPDATE delivery_tally SET events = 2",
                "DELETE FROM delivery_tally",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)
            await conn.execute(f"SET ROLE {READER}")
            assert await conn.fetchval("SELECT count(*) FROM delivery_tally") == 1
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(tally.replace("(2, 1,", "(3, 1,"))
        finally:
            await conn.execute("RESET ROLE")


async def test_0003_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip("0002", "0003")
