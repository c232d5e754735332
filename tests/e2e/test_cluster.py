"""Scale-out on a real Redis Cluster (3 masters, 3 replicas, ``support.cluster``): the usage
stream in 4 shards, consumers splitting them, a consumer killed, a master killed mid-drain.

The cluster is the module's; the failover test comes last (its killed master stays dead).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator

import pytest
from faststream.redis import RedisClusterBroker
from redis.asyncio.cluster import RedisCluster
from sqlalchemy.ext.asyncio import AsyncEngine

from e2e.test_crashes import assert_exact, crash
from support.alerts import ALERT
from support.cli import CLI, env_for, tally, tally_all
from support.cluster import PrivateCluster, private_cluster
from support.ledger_support import ORGS, drain, urls_of
from tally import bootstrap
from tally.adapters.alert_feed import FastStreamAlertFeed
from tally.config import Settings
from tally.domain.alert_delivery import AlertEvent, cloud_event
from tally.domain.events import parse_event
from tally.domain.shards import shard_of
from tally.service_layer import organizations
from tally_tools.loadgen import LoadEntry, LoadMix

SHARDS = 4
# With ORGS (acme: shard 0, globex and initech: 3), every one of the 4 shards has events.
MORE_ORGS = {"cyberdyne": "EUR", "stark": "USD"}  # shards 1 and 2
EVERY_ORG = [*ORGS, *MORE_ORGS]


@pytest.fixture(scope="module")
def cluster() -> Iterator[PrivateCluster]:
    with private_cluster() as started:
        yield started


@pytest.fixture
async def sharded(engine: AsyncEngine, settings: Settings, cluster: PrivateCluster) -> Settings:
    """This test's ledger, its stream in 4 shards on the cluster, migrated by `tally migrate`."""
    tuned = settings.model_copy(
        update={"redis_url": cluster.url, "stream_shards": SHARDS, "batch_size": 300}
    )
    for org, currency in MORE_ORGS.items():
        await organizations.add(bootstrap.database(engine), org, currency)
    migrated = await tally(tuned, "migrate")
    assert migrated.code == 0, migrated
    for key in tuned.stream_keys:
        assert f"consumer group 'metering' on '{key}' created from id 0" in migrated.said
    return tuned


def mix_of(events: int, seed: int) -> LoadMix:
    return LoadMix(EVERY_ORG, "2026-10", events, seed=seed, duplicates=0.02, bad=0.01)


async def publish(settings: Settings, mix: LoadMix) -> list[LoadEntry]:
    """The mix's entries, each XADDed to its shard (``mix.summary``: what they hold)."""
    entries = list(mix)
    async with bootstrap.producer(settings, settings.redis_url or "", batch_size=500) as p:
        await p.publish_all(entry.fields for entry in entries)
    return entries


async def cluster_client(settings: Settings) -> RedisCluster:
    client = bootstrap.STREAMS.connect(settings.redis_url or "")
    assert isinstance(client, RedisCluster)  # Tally found out by itself
    return client


async def pending_by_consumer(settings: Settings) -> dict[bytes, int]:
    client = await cluster_client(settings)
    try:
        owners: dict[bytes, int] = {}
        for key in settings.stream_keys:
            for consumer in await client.xinfo_consumers(key, settings.group):
                owners[consumer["name"]] = owners.get(consumer["name"], 0) + consumer["pending"]
        return owners
    finally:
        await client.aclose()


def named(settings: Settings, name: str) -> dict[str, str]:
    return env_for(settings) | {"TALLY_CONSUMER_NAME": name}


async def test_two_consumer_processes_split_four_shards_and_the_totals_are_exact(
    engine: AsyncEngine, sharded: Settings
) -> None:
    mix = mix_of(4000, seed=21)
    entries = await publish(sharded, mix)
    # The same event again, on a shard that is not its own: still counted once.
    first = next(entry for entry in entries if entry.kind == "event")
    elsewhere = (shard_of(parse_event(first.fields["event"]).subject, SHARDS) + 1) % SHARDS
    client = await cluster_client(sharded)
    try:
        lengths = [await client.xlen(key) for key in sharded.stream_keys]
        await client.xadd(sharded.stream_keys[elsewhere], dict(first.fields))
    finally:
        await client.aclose()
    assert all(lengths) and sum(lengths) == mix.summary.entries  # every shard has events

    evens, odds = await asyncio.gather(
        tally(sharded, "consume", "--until-idle", "--shards", "0,2", env=named(sharded, "c0")),
        tally(sharded, "consume", "--until-idle", "--shards", "1,3", env=named(sharded, "c1")),
    )
    assert evens.code == 0 and odds.code == 0, (evens, odds)
    assert f"'{sharded.stream_keys[0]}', '{sharded.stream_keys[2]}'" in evens.said
    await assert_exact(engine, mix.summary, EVERY_ORG)
    assert await pending_by_consumer(sharded) == {b"c0": 0, b"c1": 0}
    status, verified = await tally_all(
        sharded, ["stream", "status", "--format", "json"], ["ledger", "verify"]
    )
    assert [shard["stream"] for shard in status.json()] == sharded.stream_keys
    assert all(shard["drained"] for shard in status.json())
    assert verified.code == 0, verified


async def test_a_killed_consumers_pending_entries_on_its_shard_are_claimed_by_another(
    engine: AsyncEngine, sharded: Settings
) -> None:
    mix = mix_of(1500, seed=22)
    await publish(sharded, mix)
    await crash(sharded, "after_commit_cluster", 2, consumer="doomed")  # SIGKILLed before XACK
    assert (await pending_by_consumer(sharded))[b"doomed"] > 0
    survivor = await drain(sharded, consumer_name="survivor", claim_idle_ms=300)
    owners = await pending_by_consumer(sharded)
    assert owners[b"doomed"] == 0 and owners[b"survivor"] == 0
    assert survivor.totals["already stored"] > 0  # the committed-but-unacked batch: a no-op
    await assert_exact(engine, mix.summary, EVERY_ORG)


async def test_alerts_are_published_and_read_on_the_cluster(
    engine: AsyncEngine, sharded: Settings
) -> None:
    alert = cloud_event(ALERT)
    read: list[AlertEvent] = []

    async def deliver(event: AlertEvent) -> None:
        read.append(event)

    async with bootstrap.alert_delivery(engine, sharded, urls_of(sharded)) as delivery:
        feed = delivery.feed
        assert isinstance(feed, FastStreamAlertFeed)
        assert isinstance(feed.broker, RedisClusterBroker)
        published = await delivery.stream.publish(alert)
        async with feed.running(deliver), asyncio.timeout(30):
            while not await feed.idle():
                await asyncio.sleep(0.05)
    client = await cluster_client(sharded)
    try:
        stored = await client.xrange(sharded.alerts_stream)
    finally:
        await client.aclose()
    assert [stream_id.decode() for stream_id, _ in stored] == [published]
    assert [event.model_dump(mode="json") for event in read] == [alert]


@pytest.fixture
async def consumers(sharded: Settings) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Two long-running `tally consume` processes splitting the shards; stopped by PID."""
    started = [
        await asyncio.create_subprocess_exec(
            *CLI,
            "consume",
            "--shards",
            shards,
            env=named(sharded, name),
            cwd=sharded.data_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        for name, shards in (("c0", "0,2"), ("c1", "1,3"))
    ]
    yield started
    for process in started:
        if process.returncode is None:
            os.kill(process.pid, signal.SIGKILL)
            await process.wait()


async def test_a_master_killed_mid_drain_loses_nothing_and_doubles_nothing(
    engine: AsyncEngine,
    sharded: Settings,
    cluster: PrivateCluster,
    consumers: list[asyncio.subprocess.Process],
) -> None:
    mix = mix_of(12_000, seed=23)
    # a master that holds a shard, and not the node the URL names
    victim = next(
        port for port in map(cluster.master_of, sharded.stream_keys) if port != cluster.ports[0]
    )
    entries = list(mix)
    a_third_sent = asyncio.Event()

    def progress(done: int) -> None:
        if done >= len(entries) // 3:
            a_third_sent.set()

    producer = bootstrap.producer(sharded, cluster.url, batch_size=200)

    async def produce() -> None:
        async with producer:
            await producer.publish_all((entry.fields for entry in entries), progress)

    producing = asyncio.create_task(produce())
    await a_third_sent.wait()
    await asyncio.to_thread(cluster.kill, victim)  # SIGKILL: its replica must take over
    await producing  # every batch the producer was told is written, after retries
    assert producer.retries > 0  # the failover reached it: batches were sent again
    await asyncio.to_thread(cluster.wait_healthy, False)
    assert victim not in cluster.masters() and len(cluster.masters()) == 3

    last = await tally(sharded, "consume", "--until-idle", env=named(sharded, "last"))
    assert last.code == 0, last
    for process in consumers:
        if process.returncode is None:  # (one that died on the failover is reported below)
            process.send_signal(signal.SIGTERM)  # a clean stop: commit what is queued, exit
    for process in consumers:
        _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
        assert process.returncode == 0, stderr.decode()[-3000:]
    await assert_exact(engine, mix.summary, EVERY_ORG)  # nothing lost, nothing doubled
    verified = await tally(sharded, "ledger", "verify")
    assert verified.code == 0, verified
