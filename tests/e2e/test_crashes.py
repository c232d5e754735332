"""SIGKILL the consumer anywhere; restart; the ledger is exact. Dead consumers are claimed."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ORGS, balance_map, dead_letters_of, drain, read, urls_of
from tally.adapters.postgres import rollups
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.sdk.producer import UsageProducer
from tally_tools.loadgen import LoadMix, LoadSummary

DRIVER = Path(__file__).with_name("crash_consumer.py")


async def fill(settings: Settings, events: int) -> LoadSummary:
    mix = LoadMix(list(ORGS), "2026-10", events, seed=11, duplicates=0.05, bad=0.03)
    async with UsageProducer(urls_of(settings).redis, settings.stream) as producer:
        await producer.publish_raw([entry.fields for entry in mix])
    return mix.summary


def env_for(settings: Settings, consumer: str) -> dict[str, str]:
    return os.environ | {
        "TALLY_RATING_PROCESS": str(settings.rating_process).lower(),
        "TALLY_DATABASE_URL": urls_of(settings).database,
        "TALLY_REDIS_URL": urls_of(settings).redis,
        "TALLY_STREAM": settings.stream,
        "TALLY_STREAM_SHARDS": str(settings.stream_shards),
        "TALLY_CONSUMER_NAME": consumer,
        "TALLY_BATCH_SIZE": str(settings.batch_size),
        "TALLY_BLOCK_MS": str(settings.block_ms),
        "TALLY_CLAIM_IDLE_MS": str(settings.claim_idle_ms),
    }


async def crash(settings: Settings, point: str, nth: int, consumer: str = "c1") -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DRIVER),
        point,
        str(nth),
        env=env_for(settings, consumer),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]


async def assert_exact(
    engine: AsyncEngine, summary: LoadSummary, orgs: Iterable[str] = ORGS
) -> None:
    for org in orgs:
        balances = balance_map(await read(engine, org_balances.balances, org, "2026-10"))
        assert (
            balances.get(f"org/{org}/2026-10/api_request/usage", 0)
            == (summary.billable_requests[org])
        )
        tokens = sum((v for k, v in balances.items() if "/ai_token/usage/" in k), start=0)
        assert tokens == summary.ai_tokens[org]
    letters = await dead_letters_of(engine)
    assert len(letters) == summary.bad_total
    async with engine.connect() as conn:
        stored = (await conn.exec_driver_sql("SELECT count(*) FROM usage_event")).scalar()
        rolled = dict(
            (
                await conn.exec_driver_sql(
                    f"SELECT org, sum(requests) FROM {rollups.API_USAGE.rows_sql()} AS r"
                    " WHERE billable GROUP BY org"
                )
            ).all()
        )
    assert stored == summary.good
    assert rolled == {org: n for org, n in summary.billable_requests.items() if n}  # once each
    assert (await verify(engine)).ok


async def test_sigkill_before_commit_mid_batch_and_after_commit_then_restart_is_exact(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"batch_size": 150})
    summary = await fill(settings, 2000)
    await crash(settings, "before_commit", 2)
    await crash(settings, "mid_batch", 3)
    await crash(settings, "after_commit", 2)
    await crash(settings, "after_commit", 1)
    pending = await stream.xpending(settings.stream, settings.group)
    assert pending["pending"] > 0  # the dead runs left entries unacknowledged
    await drain(settings, consumer_name="c1", batch_size=150)
    assert (await stream.xpending(settings.stream, settings.group))["pending"] == 0
    await assert_exact(engine, summary)


async def test_with_a_rating_worker_sigkill_ends_it_too_and_restart_is_exact(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    """The worker process dies with its consumer (``crash`` reads the consumer's stderr to
    its end: an orphan holding it would hang the test), and rating there changes nothing."""
    settings = settings.model_copy(update={"batch_size": 150, "rating_process": True})
    summary = await fill(settings, 1500)
    await crash(settings, "mid_batch", 3)
    await crash(settings, "after_commit", 2)
    await drain(settings, consumer_name="c1", batch_size=150, rating_process=True)
    assert (await stream.xpending(settings.stream, settings.group))["pending"] == 0
    await assert_exact(engine, summary)


async def test_a_live_consumer_claims_a_dead_ones_pending_entries(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    settings = settings.model_copy(update={"batch_size": 400})
    summary = await fill(settings, 1200)
    await crash(settings, "after_commit", 2, consumer="doomed")
    owners = {
        c["name"]: c["pending"] for c in await stream.xinfo_consumers(settings.stream, "metering")
    }
    assert owners[b"doomed"] > 0
    survivor = await drain(settings, consumer_name="survivor", claim_idle_ms=300)
    owners = {
        c["name"]: c["pending"] for c in await stream.xinfo_consumers(settings.stream, "metering")
    }
    assert owners[b"doomed"] == 0 and owners[b"survivor"] == 0
    assert survivor.totals["already stored"] > 0  # the committed-but-unacked batch: a no-op
    await assert_exact(engine, summary)


@pytest.mark.parametrize("consumers", [2, 3])
async def test_consumers_in_one_group_share_the_work_without_double_counting(
    engine: AsyncEngine, settings: Settings, consumers: int
) -> None:
    summary = await fill(settings, 3000)
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
        for n in range(consumers)
    ]
    for process in processes:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
        assert process.returncode == 0, stderr.decode()[-2000:]
    await assert_exact(engine, summary)
