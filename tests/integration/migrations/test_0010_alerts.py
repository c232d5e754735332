"""Revision 0010, threshold alerts: a 0005 ledger stays whole; alerts are recorded once per
key and never rewritten; thresholds and webhooks are versions; attempts are records."""

from __future__ import annotations

import asyncpg
import pytest

from support.migrations import LEDGER_0001, Migrations, ledger_0001, unchanged
from tally.adapters.postgres.connection import raw_connection

PREVIOUS = "0009"  # the revision 0010 follows (the integrator rechains it here only)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
ALERT = """INSERT INTO alert (org, period, meter, kind, threshold, used, allocation, projected,
               crossed_at)
           VALUES ('acme', '2026-03', 'ai_token', $1, $2, 41000, 50000, 60000, now())"""


async def test_0010_adds_alerts_and_keeps_the_ledger_whole(migrations: Migrations) -> None:
    await migrations.upgrade(PREVIOUS)
    async with raw_connection(migrations.engine) as conn:
        await ledger_0001(conn)
    before = await migrations.contents(*LEDGER_0001, "delivery_tally")

    await migrations.upgrade("0010")

    assert unchanged(before, await migrations.contents(*LEDGER_0001, "delivery_tally"))
    async with raw_connection(migrations.engine) as conn:
        # the running usage totals start from the ledger's usage accounts, and only grow
        balances = await conn.fetch(
            """SELECT a.owner AS org, a.period, a.unit AS meter, sum(l.amount) AS used
                 FROM account a JOIN entry_line l ON l.account_id = a.id
                WHERE a.kind = 'usage' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"""
        )
        assert balances and [dict(r) for r in balances] == [
            dict(r) for r in await conn.fetch("SELECT * FROM usage_total ORDER BY 1, 2, 3")
        ]
        await conn.execute("UPDATE usage_total SET used = used + 1")
        for statement in (
            "UPDATE usage_total SET used = used - 1",
            "UPDATE usage_total SET period = '2026-11'",
            "DELETE FROM usage_total",
            "TRUNCATE usage_total",
        ):
            with pytest.raises(asyncpg.RestrictViolationError):
                await conn.execute(statement)
        await conn.execute(
            "INSERT INTO alert_threshold (org, thresholds) VALUES ('acme', '{75,90}')"
        )
        await conn.execute(ALERT, "used", 80)
        with pytest.raises(asyncpg.UniqueViolationError):  # 80 and 80.0 are the same threshold
            await conn.execute(ALERT, "used", 80.0)
        assert (
            await conn.fetchval(ALERT + " ON CONFLICT DO NOTHING RETURNING id", "used", 80) is None
        )
        await conn.execute(ALERT, "projected", 100)
        alert = await conn.fetchval("SELECT id FROM alert WHERE kind = 'used'")
        await conn.execute(
            "INSERT INTO alert_published (alert_id, stream, stream_id)"
            " VALUES ($1, 'tally:alerts', '1-0')",
            alert,
        )
        add = (
            "INSERT INTO webhook (id, url, secret, enabled)"
            " VALUES ($1, 'https://example.com/h', $2, $3)"
        )
        await conn.execute(add, "wh_0123456789abcdef", SECRET, True)
        with pytest.raises(asyncpg.UniqueViolationError):  # an id is enabled once, when added
            await conn.execute(add, "wh_0123456789abcdef", SECRET, True)
        with pytest.raises(asyncpg.ForeignKeyViolationError):  # only a known webhook is removed
            await conn.execute(add, "wh_ffffffffffffffff", None, False)
        await conn.execute(add, "wh_0123456789abcdef", None, False)  # removed: secret forgotten
        await conn.execute(
            """INSERT INTO webhook_attempt (alert_id, webhook, attempt, status_code, next_at)
               VALUES ($1, 'wh_0123456789abcdef', 1, 500, now() + interval '1 second')""",
            alert,
        )
        checked = [
            ("INSERT INTO alert_threshold (org, thresholds) VALUES ('acme', '{}')", ()),
            ("INSERT INTO alert_threshold (org, thresholds) VALUES ('acme', '{0,80}')", ()),
            ("INSERT INTO alert_threshold (org, thresholds) VALUES ('acme', '{80,1001}')", ()),
            (ALERT.replace("'ai_token'", "'minutes'"), ("used", 90)),
            (ALERT.replace("50000", "0"), ("used", 90)),
            (add, ("wh_00000000000000aa", None, True)),  # enabled needs its secret
            (add, ("wh_00000000000000aa", "hunter2", True)),  # a whsec_ secret
            (add, ("nope", SECRET, True)),
            (
                "INSERT INTO webhook_attempt (alert_id, webhook, attempt) VALUES ($1, 'w', 2)",
                (alert,),
            ),
        ]
        for statement, args in checked:
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute(statement, *args)
        with pytest.raises(asyncpg.UniqueViolationError):  # an attempt is logged once
            await conn.execute(
                """INSERT INTO webhook_attempt (alert_id, webhook, attempt, error)
                   VALUES ($1, 'wh_0123456789abcdef', 1, 'timeout')""",
                alert,
            )
        keys = {"alert": "id", "alert_threshold": "id", "alert_published": "alert_id",
                "webhook": "version", "webhook_attempt": "id"}  # fmt: skip
        for table, key in keys.items():
            for statement in (
                f"UPDATE {table} SET {key} = {key}",
                f"DELETE FROM {table}",
                f"TRUNCATE {table} CASCADE",
            ):
                with pytest.raises(asyncpg.RestrictViolationError):
                    await conn.execute(statement)


async def test_0010_round_trip(migrations: Migrations) -> None:
    await migrations.round_trip(PREVIOUS, "0010")
