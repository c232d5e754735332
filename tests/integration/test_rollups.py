"""The daily rollups count each stored event once (replays, duplicates, a second consumer),
compaction moves the metering's deltas into the daily rows without changing a total, verify
names a rollup changed behind the application's back, and a rebuild (as tally_writer, even
while a consumer meters and another compacts) brings it back."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date
from decimal import Decimal

import asyncpg
import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ai, api, urls_of
from tally import bootstrap
from tally.adapters.postgres import rollups
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.service_layer.metering import MeteringService

OCT_15, OCT_16 = "2026-10-15T23:59:59Z", "2026-10-16T01:30:00+02:00"  # both UTC Oct 15th


def entry(sid: str, raw: bytes) -> tuple[str, dict[bytes, bytes]]:
    return (sid, {b"event": raw})


async def api_rows(engine: AsyncEngine) -> dict[tuple[object, ...], int]:
    async with raw_connection(engine) as conn:
        return {
            (r["org"], r["day"], r["oauth_client_id"], r["status"], r["billable"]): r["requests"]
            for r in await conn.fetch(
                f"""SELECT org, day, oauth_client_id, status, billable, sum(requests) AS requests
                      FROM {rollups.API_USAGE.rows_sql()} AS r
                     GROUP BY 1, 2, 3, 4, 5 HAVING sum(requests) > 0"""
            )
        }


async def ai_rows(engine: AsyncEngine) -> dict[tuple[object, ...], Decimal]:
    async with raw_connection(engine) as conn:
        return {
            (r["org"], r["day"], r["feature"]): r["quantity"]
            for r in await conn.fetch(
                f"""SELECT org, day, feature, sum(quantity) AS quantity
                      FROM {rollups.AI_USAGE.rows_sql()} AS r
                     GROUP BY 1, 2, 3 HAVING sum(quantity) > 0"""
            )
        }


async def test_replays_duplicates_and_a_second_consumer_count_once(
    engine: AsyncEngine, settings: Settings, service: MeteringService
) -> None:
    batch = [
        entry("1-0", api("r1", count=3, time=OCT_15)),
        entry("2-0", api("r2", count=2, time=OCT_16, status=503)),
        entry("3-0", api("r3", count=5, kind="ui", time=OCT_15)),  # on record, not billable
        entry("4-0", ai("a1", "voice_bot", "12.5", "minute", time=OCT_15)),
        entry("5-0", ai("a2", "voice_bot", "4.5", "minute", time="2026-10-16T08:00:00Z")),
        entry("6-0", b"not json"),  # a reject
    ]
    await service.process("s", batch)
    await service.process("s", batch)  # redelivered after a crash before XACK
    second = bootstrap.metering_service(engine, settings, require_known_sources=False)
    report = await second.process(
        "s",
        [
            entry("7-0", api("r1", count=3, time=OCT_15)),  # a producer's retry: duplicate
            entry("8-0", api("r1", count=300, time=OCT_15)),  # same key, new payload: conflict
            entry("9-0", ai("a1", "voice_bot", "12.5", "minute", time=OCT_15)),
            entry("10-0", api("r4", count=1, time="2026-10-16T00:00:00Z")),
        ],
    )
    assert report.counts == Counter({"duplicate": 2, "conflict": 1, "metered": 1})

    oct15, oct16 = date(2026, 10, 15), date(2026, 10, 16)
    assert await api_rows(engine) == {
        ("acme", oct15, "c-42", 200, True): 3,
        ("acme", oct15, "c-42", 503, True): 2,
        ("acme", oct15, "c-42", 200, False): 5,
        ("acme", oct16, "c-42", 200, True): 1,
    }
    assert await ai_rows(engine) == {
        ("acme", oct15, "voice_bot"): Decimal("12.5"),
        ("acme", oct16, "voice_bot"): Decimal("4.5"),
    }
    assert (await verify(engine)).ok


async def table_sizes(engine: AsyncEngine) -> dict[str, int]:
    async with raw_connection(engine) as conn:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")
            for rollup in rollups.ROLLUPS
            for table in (rollup.table, rollup.delta)
        }


async def test_metering_appends_deltas_and_compaction_folds_them_keeping_every_total(
    engine: AsyncEngine, service: MeteringService
) -> None:
    for n in range(3):  # three batches: three deltas of the same keys
        await service.process(
            "s",
            [
                entry(f"{n}-0", api(f"r{n}", count=2, time=OCT_15)),
                entry(f"{n}-1", ai(f"a{n}", "voice_bot", "1.5", "minute", time=OCT_16)),
            ],
        )
    right = (await api_rows(engine), await ai_rows(engine))
    assert right == (
        {("acme", date(2026, 10, 15), "c-42", 200, True): 6},
        {("acme", date(2026, 10, 15), "voice_bot"): Decimal("4.5")},
    )
    assert await table_sizes(engine) == {
        "api_usage_daily": 0, "api_usage_delta": 3, "ai_usage_daily": 0, "ai_usage_delta": 3
    }  # fmt: skip
    async with raw_connection(engine) as conn, conn.transaction():  # as tally_writer
        assert await rollups.compact(conn) == 6
    assert await table_sizes(engine) == {
        "api_usage_daily": 1, "api_usage_delta": 0, "ai_usage_daily": 1, "ai_usage_delta": 0
    }  # fmt: skip
    assert (await api_rows(engine), await ai_rows(engine)) == right
    async with raw_connection(engine) as conn:  # its month-week, its month, its day
        spans = await conn.fetch("SELECT first_day, last_day, requests FROM api_usage_span")
        days = await conn.fetch("SELECT day, requests FROM api_billable_daily")
    assert {(r["first_day"].day, r["last_day"].day, r["requests"]) for r in spans} == {
        (15, 21, 6), (1, 31, 6)
    }  # fmt: skip
    assert [(r["day"], r["requests"]) for r in days] == [(date(2026, 10, 15), 6)]
    assert (await verify(engine)).ok
    async with raw_connection(engine) as conn, conn.transaction():
        assert await rollups.compact(conn) == 0


async def test_a_running_consumer_compacts_the_deltas_off_the_batches_path(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    await stream.xadd(settings.stream, {b"event": api("r1", count=3, time=OCT_15)})
    tuned = settings.model_copy(update={"rollup_compact_interval_s": 0.05})
    consumer = bootstrap.consumer(tuned, urls_of(tuned))
    running = asyncio.create_task(consumer.run())

    async def compacted() -> None:
        while (await table_sizes(engine))["api_usage_daily"] == 0:
            await asyncio.sleep(0.05)

    try:
        await asyncio.wait_for(compacted(), timeout=60)  # a guard against a hang
    finally:
        consumer.stop()
        await running
    assert (await table_sizes(engine))["api_usage_delta"] == 0
    assert await api_rows(engine) == {("acme", date(2026, 10, 15), "c-42", 200, True): 3}
    assert (await verify(engine)).ok


EVENTS = "its events add up to"
DAYS = "its api_usage_daily rows add up to"
# (tamper, the tables verify names, rows the rebuild changes): a daily row changed differs
# from its events, and its month-week, month and billable day from it, until the rebuild
# puts the daily row back (the folds then agree again).
TAMPERS = [
    (
        "UPDATE api_usage_daily SET requests = requests + 1 WHERE status = 200 AND billable",
        {"api_usage_daily": EVENTS, "api_usage_span": DAYS, "api_billable_daily": DAYS},
        1,
    ),
    ("DELETE FROM ai_usage_daily", {"ai_usage_daily": EVENTS}, 2),
    (
        """INSERT INTO ai_usage_delta (org, period, day, feature, quantity)
           VALUES ('acme', '2026-10', '2026-10-15', 'voice_bot', 1)""",
        {"ai_usage_daily": EVENTS},
        1,
    ),
    (
        """INSERT INTO api_usage_daily (org, day, oauth_client_id, template_uri, method, status,
               billable, requests) VALUES ('globex', '2026-10-01', 'ghost', '/x', 'GET', 200,
               true, 9)""",
        {"api_usage_daily": EVENTS, "api_usage_span": DAYS, "api_billable_daily": DAYS},
        1,
    ),
    (
        "UPDATE api_usage_span SET requests = requests + 5 WHERE status = 503"
        " AND last_day < '2026-10-31'",
        {"api_usage_span": DAYS},
        1,
    ),
    ("DELETE FROM api_billable_daily", {"api_billable_daily": DAYS}, 1),
    (
        """INSERT INTO api_usage_span (org, first_day, last_day, oauth_client_id, template_uri,
               method, status, billable, requests) VALUES ('globex', '2026-10-01', '2026-10-31',
               'ghost', '/x', 'GET', 200, true, 9)""",
        {"api_usage_span": DAYS},
        1,
    ),
]


@pytest.mark.parametrize(("tamper", "named", "rows"), TAMPERS)
async def test_verify_names_a_tampered_rollup_and_rebuild_restores_it(
    engine: AsyncEngine,
    owner: AsyncEngine,
    service: MeteringService,
    tamper: str,
    named: dict[str, str],
    rows: int,
) -> None:
    await service.process(
        "s",
        [
            entry("1-0", api("r1", count=3, time=OCT_15)),
            entry("2-0", ai("a1", "voice_bot", "12.5", "minute", time=OCT_15)),
            entry("3-0", ai("a2", "virtual_agent", 2, "session", time=OCT_16)),
            entry("4-0", api("r2", count=2, time=OCT_16, status=503)),
        ],
    )
    right = (await api_rows(engine), await ai_rows(engine))
    async with raw_connection(owner) as conn:
        await rollups.compact(conn)
        await conn.execute(tamper)
    result = await verify(engine)
    assert {f.check for f in result.findings} == {"rollup"}, result.findings
    tables = [f.detail.split(" ", 1)[0] for f in result.findings]
    assert set(tables) == set(named), result.findings
    assert all(named[table] in f.detail for table, f in zip(tables, result.findings, strict=True))

    async with raw_connection(engine) as conn:  # tally_writer, within its grants
        changed = sum([await rollups.rebuild(conn, org) for org in ("acme", "globex")])
        assert changed == rows
        assert sum([await rollups.rebuild(conn, org) for org in ("acme", "globex")]) == 0
    assert (await api_rows(engine), await ai_rows(engine)) == right
    assert (await verify(engine)).ok


async def test_the_writer_may_only_add_to_the_counters(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await service.process("s", [entry("1-0", api("r1", count=3, time=OCT_15))])
    refused = [
        "DELETE FROM api_usage_daily",
        "DELETE FROM ai_usage_daily",
        "UPDATE api_usage_daily SET oauth_client_id = 'other'",
        "UPDATE api_usage_daily SET billable = false",
        "UPDATE ai_usage_daily SET day = '2026-10-02'",
        "TRUNCATE api_usage_daily",
        "UPDATE api_usage_delta SET requests = 1",
        "UPDATE ai_usage_delta SET quantity = 1",
        "TRUNCATE api_usage_delta",
        "DELETE FROM api_usage_span",
        "UPDATE api_usage_span SET last_day = first_day",
        "TRUNCATE api_usage_span",
        "DELETE FROM api_billable_daily",
        "UPDATE api_billable_daily SET day = '2026-10-02'",
    ]
    async with raw_connection(engine) as conn:
        for statement in refused:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)


async def test_a_delta_the_writer_deletes_is_named_by_verify_and_rebuilt(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """The writer may DELETE deltas (compaction moves them): one lost that way is found."""
    await service.process("s", [entry("1-0", api("r1", count=3, time=OCT_15))])
    async with raw_connection(engine) as conn:
        await conn.execute("DELETE FROM api_usage_delta")
    result = await verify(engine)
    assert [f.check for f in result.findings] == ["rollup"], result.findings
    assert "holds 0, its events add up to 3" in result.findings[0].detail
    async with raw_connection(engine) as conn, conn.transaction():
        # the daily row, then what it folds into: its month-week, its month, its day
        assert await rollups.rebuild(conn, "acme") == 4
    assert await api_rows(engine) == {("acme", date(2026, 10, 15), "c-42", 200, True): 3}
    assert (await verify(engine)).ok


async def test_a_rebuild_beside_a_running_consumer_loses_and_doubles_nothing(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    async def meter() -> None:
        for n in range(30):
            await service.process(
                "s",
                [entry(f"{n}-{i}", api(f"r{n}-{i}", count=i + 1, time=OCT_15)) for i in range(5)],
            )

    async def rebuild() -> None:
        for _ in range(30):
            async with raw_connection(engine) as conn, conn.transaction():
                await rollups.rebuild(conn, "acme")

    async def compact() -> None:
        for _ in range(30):
            async with raw_connection(engine) as conn, conn.transaction():
                await rollups.compact(conn)

    await service.process("s", [entry("999-0", api("r0", count=7, time=OCT_15))])
    async with raw_connection(owner) as conn:  # a wrong count the first rebuild fixes
        await rollups.compact(conn)
        await conn.execute("UPDATE api_usage_daily SET requests = 100")
    await asyncio.gather(meter(), rebuild(), compact())
    assert await api_rows(engine) == {("acme", date(2026, 10, 15), "c-42", 200, True): 7 + 30 * 15}
    assert (await verify(engine)).ok
