"""Revision 0017, the balance check by account key: the same check (an unbalanced entry
is refused, a balanced one posts), the ledger kept, and a round trip restores 0002's."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0016"  # the revision 0017 follows (the integrator rechains it: change it here)


async def post(conn: asyncpg.Connection, key: str, amounts: list[int]) -> None:
    """One entry with a line of each amount, on the ledger's first accounts, in turn."""
    async with conn.transaction():
        lane, seq = await conn.fetchrow(
            "SELECT lane, coalesce((SELECT max(seq) FROM journal_entry j WHERE j.lane = l.lane),"
            " 0) + 1 FROM ledger_lane l ORDER BY lane DESC LIMIT 1"
        )
        entry = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ($1, 'usage', 'acme', '2026-10', '2026-01', now(), $2, $3,
                       '\\x00', '\\x01') RETURNING id""",
            key,
            lane,
            seq,
        )
        accounts = await conn.fetch(
            "SELECT id FROM account WHERE unit = 'api_request' ORDER BY id LIMIT $1",
            len(amounts),
        )
        await conn.execute(
            """INSERT INTO entry_line (entry_id, account_id, amount)
               SELECT $1, * FROM unnest($2::bigint[], $3::numeric[])""",
            entry,
            [row["id"] for row in accounts],
            amounts,
        )


async def test_0017_keeps_the_ledger_and_the_same_check(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001)

    await migrations.upgrade("0017")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    async with raw_connection(migrations.engine) as conn:
        with pytest.raises(asyncpg.CheckViolationError, match=r"unbalanced entry .*api_request"):
            await post(conn, "bad", [5, -4])
        await post(conn, "good", [5, -5])
        assert (
            await conn.fetchval("SELECT count(*) FROM journal_entry WHERE idempotency_key = 'good'")
            == 1
        )


async def test_0017_round_trip_restores_0002s_balance_check(migrations: Migrations) -> None:
    at_before, at_0017 = await migrations.round_trip(PREVIOUS, "0017")  # equal at each step
    balance = ("function", "tally_check_balanced")
    assert at_0017[balance] != at_before[balance]  # 0017 rewrites it (the unit by key)

    await migrations.downgrade(PREVIOUS)

    assert await migrations.function_source("tally_check_balanced") == at_before[balance]
