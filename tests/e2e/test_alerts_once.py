"""Threshold alerts fire once each under replays, duplicates, two consumers and crashes.

The allocations are reported first, then usage takes acme to 120 % of its API allocation
and globex to 85 % of its AI tokens. October 2026 is over, so the projection is the usage
itself: the alerts due are exactly the thresholds the final usage reached.
"""

from __future__ import annotations

import asyncio
import sys
from decimal import Decimal

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from e2e.test_crashes import crash, env_for
from support.ledger_support import ai, api, drain, event, urls_of
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings
from tally.sdk.producer import UsageProducer

LICENSES = [
    event("license.usage", f"lic-{org}", {"license": "gc2", "model": "named", "users": 1}, org=org)
    for org in ("acme", "globex")
]
# acme: 110,000 requests allocated, 132,000 used; globex: 250 tokens allocated, 212.5 used
USAGE = [api(f"r{n}", count=1000) for n in range(132)] + [
    ai(f"t{n}", "agent_copilot", "2.5", "token", org="globex") for n in range(85)
]
DUE = {
    ("acme", "api_request", "used", Decimal(80)),
    ("acme", "api_request", "used", Decimal(100)),
    ("acme", "api_request", "projected", Decimal(100)),
    ("globex", "ai_token", "used", Decimal(80)),
}


async def publish(settings: Settings, *entries: bytes) -> None:
    async with UsageProducer(urls_of(settings).redis, settings.stream) as producer:
        await producer.publish_raw(entries)


async def alerts(engine: AsyncEngine) -> list[tuple[str, str, str, Decimal]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch("SELECT org, meter, kind, threshold FROM alert ORDER BY id")
    return [(r["org"], r["meter"], r["kind"], r["threshold"]) for r in rows]


async def reported(settings: Settings) -> Settings:
    settings = settings.model_copy(update={"batch_size": 20, "claim_idle_ms": 300})
    await publish(settings, *LICENSES)
    await drain(settings)
    return settings


async def assert_once_each(engine: AsyncEngine, settings: Settings) -> None:
    found = await alerts(engine)
    assert sorted(found) == sorted(DUE)
    async with raw_connection(engine) as conn:  # the running totals are the ledger's usage
        totals = await conn.fetch("SELECT org, meter, used FROM usage_total ORDER BY 1, 2")
        balances = await conn.fetch(
            """SELECT a.owner AS org, a.unit AS meter, sum(l.amount) AS used
                 FROM account a JOIN entry_line l ON l.account_id = a.id
                WHERE a.kind = 'usage' GROUP BY 1, 2 ORDER BY 1, 2"""
        )
    assert [tuple(r) for r in totals] == [tuple(r) for r in balances]
    assert [tuple(r) for r in totals] == [
        ("acme", "api_request", Decimal(132_000)),
        ("globex", "ai_token", Decimal("212.5")),
    ]
    await publish(settings, *USAGE[:40], *USAGE[-10:])  # the producer retries: replays
    await drain(settings, consumer_name="late")
    assert await alerts(engine) == found


async def test_replays_and_duplicates_leave_one_alert_per_threshold(
    engine: AsyncEngine, settings: Settings
) -> None:
    settings = await reported(settings)
    await publish(settings, *USAGE, *USAGE[::7])  # duplicates inside the stream as well
    await drain(settings)
    await assert_once_each(engine, settings)


async def test_two_consumers_record_each_alert_once(
    engine: AsyncEngine, settings: Settings
) -> None:
    settings = await reported(settings)
    await publish(settings, *USAGE)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tally.entrypoints.cli",
            "consume",
            "--until-idle",
            env=env_for(settings, f"worker-{n}"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(2)
    ]
    for process in processes:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()[-2000:]
    await assert_once_each(engine, settings)


@pytest.mark.parametrize("point", ["mid_batch", "after_commit"])
async def test_a_crash_neither_loses_nor_doubles_an_alert(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis, point: str
) -> None:
    settings = await reported(settings)
    await publish(settings, *USAGE)
    await crash(settings, point, 7)  # acme has passed 80 % and 100 % by then
    await drain(settings, consumer_name="c1")
    assert (await stream.xpending(settings.stream, settings.group))["pending"] == 0
    await assert_once_each(engine, settings)
