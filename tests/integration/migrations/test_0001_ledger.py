"""Revision 0001, the ledger: rows as it stores them, and the invariants it keeps."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, ZERO, Migrations, digest, ledger_0001
from tally.adapters.postgres.connection import raw_connection


async def post(conn: asyncpg.Connection, key: str, amounts: list[tuple[str, int]]) -> None:
    """An entry of acme's October with ``(account code, amount)`` lines, in one statement."""
    async with conn.transaction():
        entry = await conn.fetchval(
            """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
                   posted_at, lane, seq, prev_hash, hash)
               VALUES ($1, 'usage', 'acme', '2026-10', '2026-01', now(), 2,
                       (SELECT coalesce(max(seq), 0) + 1 FROM journal_entry WHERE lane = 2),
                       $2, $3) RETURNING id""",
            key,
            ZERO,
            digest(key),
        )
        await conn.execute(
            """INSERT INTO entry_line (entry_id, account_id, amount)
               SELECT $1, a.id, l.amount
                 FROM unnest($2::text[], $3::numeric[]) AS l(code, amount)
                 JOIN account a ON a.code = l.code""",
            entry,
            [code for code, _ in amounts],
            [amount for _, amount in amounts],
        )


async def test_0001_stores_a_ledger_and_keeps_its_invariants(migrations: Migrations) -> None:
    await migrations.upgrade("0001")
    async with raw_connection(migrations.engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_lane WHERE seq = 0") == 16
        await ledger_0001(conn)
        before = await migrations.contents(*LEDGER_0001)
        await conn.execute(
            """INSERT INTO account (code, owner, period, unit, kind) VALUES
                 ('org/acme/2026-10/ai_token/usage/search', 'acme', '2026-10', 'ai_token',
                  'usage'),
                 ('org/acme/2026-10/ai_token/allowance', 'acme', '2026-10', 'ai_token',
                  'allowance')"""
        )
        usage, allowance = (
            "org/acme/2026-10/api_request/usage",
            "org/acme/2026-10/api_request/allowance",
        )
        tokens, token_allowance = (
            "org/acme/2026-10/ai_token/usage/search",
            "org/acme/2026-10/ai_token/allowance",
        )

        await post(conn, "ok", [(usage, 2), (allowance, -2), (tokens, 5), (token_allowance, -5)])
        with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):
            await post(conn, "unbalanced", [(usage, 2), (allowance, -1)])
        with pytest.raises(asyncpg.CheckViolationError, match="unbalanced"):  # per unit
            await post(conn, "across units", [(usage, 2), (token_allowance, -2)])
        with pytest.raises(asyncpg.CheckViolationError, match="fewer than two lines"):
            await post(conn, "lonely", [(usage, 0)])
        with pytest.raises(asyncpg.UniqueViolationError):
            await post(conn, "ok", [(usage, 1), (allowance, -1)])

        refused = [
            "UPDATE journal_entry SET kind = 'grant'",
            "DELETE FROM entry_line",
            "UPDATE entry_line SET amount = 0",
            "UPDATE usage_event SET quantity = 0",
            "DELETE FROM usage_event",
            "UPDATE organization SET currency = 'JPY'",
            "UPDATE rate_card SET body = '{}'",
            "DELETE FROM duplicate_delivery",
            "DELETE FROM event_conflict",
            "TRUNCATE entry_line, journal_entry CASCADE",
            "TRUNCATE ledger_lane CASCADE",
            "TRUNCATE dead_letter",
            "UPDATE dead_letter SET raw = 'other'",
            "DELETE FROM dead_letter",
        ]
        for statement in refused:
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        # a dead letter records its replay, nothing else
        await conn.execute(
            "UPDATE dead_letter SET replayed_at = now(), replay_outcome = 'dead_letter' "
            "WHERE replayed_at IS NULL"
        )
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
            await conn.execute(
                """INSERT INTO usage_event (source, id, type, org, event_time, period, status,
                       quantity, rate_card_version, raw, stream, stream_id, received_at,
                       entry_id)
                   VALUES ('crm', 'r9', 'api.request', 'acme', now(), '2026-10', 'metered',
                           1, '2026-01', '{}', 's1', '9-0', now(), 999999)"""
            )
        with pytest.raises(asyncpg.CheckViolationError):  # metered <=> it has an entry
            await conn.execute(
                """INSERT INTO usage_event (source, id, type, org, event_time, period, status,
                       quantity, rate_card_version, raw, stream, stream_id, received_at)
                   VALUES ('crm', 'r9', 'api.request', 'acme', now(), '2026-10', 'metered',
                           1, '2026-01', '{}', 's1', '9-0', now())"""
            )
        await conn.execute(
            "INSERT INTO meter_total VALUES ('acme', '2026-10', 'search', '2026-01', 5)"
        )
        await conn.execute("UPDATE meter_total SET quantity = 7")
        for statement in ("UPDATE meter_total SET quantity = 6", "DELETE FROM meter_total"):
            with pytest.raises(asyncpg.RestrictViolationError, match="only grows"):
                await conn.execute(statement)

        after = await migrations.contents("journal_entry", "entry_line", "usage_event")
    assert len(after["journal_entry"]) == len(before["journal_entry"]) + 1  # only "ok"
    assert len(after["entry_line"]) == len(before["entry_line"]) + 4
    assert after["usage_event"] == before["usage_event"]


async def test_0001_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip("base", "0001")
