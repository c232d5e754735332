"""Revision 0020, voids: a 0019 ledger stays whole; a void is recorded once per metered event,
forever, with a usage reversal of the event's organization and period; running totals shrink
only in the transaction that records a void; an invoice adjustment may be a credit of one
sign; no way back down while voids exist."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, digest, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0019"
VOID = """INSERT INTO event_void (source, id, org, period, entry_id, reason, requested_by,
                                  voided_at)
          VALUES ('crm', $1, 'acme', '2026-10', $2, 'sent twice', 'cli:ops', now())"""


async def reversal(conn: asyncpg.Connection) -> int:
    """A usage reversal of r1's 3 requests, posted as the journal posts (lane 1, seq 2)."""
    entry: int = await conn.fetchval(
        """INSERT INTO journal_entry (idempotency_key, kind, org, period, rate_card_version,
               posted_at, lane, seq, prev_hash, hash)
           VALUES ('usage_reversal/acme/2026-10/api_request/r1', 'usage_reversal', 'acme',
                   '2026-10', '2026-01', '2026-10-16T00:00:00Z', 1, 2, $1, $2) RETURNING id""",
        digest("entry", 1),
        digest("entry", 2),
    )
    await conn.execute(
        """INSERT INTO entry_line (entry_id, account_id, amount)
           SELECT $1, id, CASE kind WHEN 'usage' THEN -3 ELSE 3 END FROM account""",
        entry,
    )
    await conn.execute(
        "UPDATE ledger_lane SET seq = 2, head_hash = $1 WHERE lane = 1", digest("entry", 2)
    )
    return entry


async def test_0020_keeps_the_ledger_and_records_each_void_once(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
        await conn.execute(
            """INSERT INTO meter_total (org, period, feature, rate_card_version, quantity)
               VALUES ('acme', '2026-10', 'agent_copilot', '2026-01', 10)"""
        )
    before = await migrations.contents(*LEDGER_0001)

    await migrations.upgrade("0020")

    assert unchanged(before, await migrations.contents(*LEDGER_0001))
    async with raw_connection(migrations.engine) as conn:
        original = await conn.fetchval("SELECT entry_id FROM usage_event WHERE id = 'r1'")
        with pytest.raises(asyncpg.RestrictViolationError, match="only grows, but for a void"):
            await conn.execute("UPDATE meter_total SET quantity = 4")
        async with conn.transaction():
            entry = await reversal(conn)
        for target, carrier, words in [
            ("r2", entry, "non_billable, not metered"),  # never metered
            ("r1", original, "not a usage_reversal"),  # the event's own usage entry
        ]:
            with pytest.raises(asyncpg.CheckViolationError, match=words):
                await conn.execute(VOID, target, carrier)
        async with conn.transaction():  # (the top-level one: no savepoint in between)
            await conn.execute(VOID, "r1", entry)
            await conn.execute("UPDATE meter_total SET quantity = 4")
        with pytest.raises(asyncpg.UniqueViolationError):  # voided once, forever
            await conn.execute(VOID, "r1", entry)
        for change in ("UPDATE event_void SET reason = 'x'", "DELETE FROM event_void"):
            with pytest.raises(asyncpg.RestrictViolationError, match="refused"):
                await conn.execute(change)
        assert await conn.fetchval("SELECT quantity FROM meter_total") == 4
        invoice = """INSERT INTO invoice_adjustment (invoice, original, period, meter, description,
                   used, unexpired, overage, unit_price, amount)
               VALUES (2, 1, '2026-10', 'api_requests', 'voided', $1, $2, $3, 0.0001, $4)"""
        with pytest.raises(asyncpg.CheckViolationError, match="one_sign"):
            await conn.execute(invoice, -3, 0, 1, 0)
    with pytest.raises(Exception, match="voids exist"):
        await migrations.downgrade(PREVIOUS)


async def test_0020_round_trips(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0020")
