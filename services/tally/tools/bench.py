"""``tally bench``: drain throughput and steady-rate latency, in a throwaway database.

Drain: the stream is filled with N events first (untimed), then the clock runs from the
consumer's start to the commit of the last batch. Steady: events are published at a
fixed rate; latency is commit time minus the time Redis stamped on the entry's id.
The close benchmark is in ``bench_close``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Self

from tally import bootstrap
from tally.adapters import redis_streams
from tally.adapters.postgres import databases
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.sdk.producer import UsageProducer
from tally.service_layer import organizations
from tally.service_layer.metering import BatchReport
from tally.tools.loadgen import (
    LoadMix,
    api_request_event,
)

Progress = Callable[[int, int], None]  # (done, total)
PUBLISH_BATCH = 5000
LARGE_SOURCE = "bench-close"  # the source of tally bench large's entries


@dataclass
class DrainResult:
    events: int  # stream entries drained (each once, however often it was delivered)
    deliveries: int  # entries the consumers processed: more when one claimed another's
    seconds: float
    events_per_second: float
    batch_size: int
    consumers: int
    entries_posted: int


@dataclass
class SteadyResult:
    rate: int
    seconds: float
    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def publish_mix(
    redis_url: str, stream: str, mix: LoadMix, progress: Callable[[int], object] | None = None
) -> int:
    """XADD a whole synthetic mix in pipelined batches; returns how many entries were sent."""
    async with UsageProducer(redis_url, stream, batch_size=PUBLISH_BATCH) as producer:
        return len(await producer.publish_all((entry.fields for entry in mix), progress))


def _drain_in_process(
    settings: Settings,
    urls: ServiceUrls,
    ready: Any,
    go: Any,
    results: Any,
) -> None:
    """One benchmark consumer: (entries, ledger entries, time of its last commit)."""
    counts: Counter[str] = Counter()
    last = [0.0]

    def on_batch(report: BatchReport) -> None:
        counts.update(events=len(report.outcomes), postings=report.postings)
        last[0] = time.time()

    consumer = bootstrap.consumer(settings, urls, until_idle=True, on_batch=on_batch)
    ready.wait()
    go.wait()
    asyncio.run(consumer.run())
    results.put((counts["events"], counts["postings"], last[0]))


@dataclass
class LargeResult:
    oversized: int
    oversized_bytes: int
    large: int
    large_bytes: int
    waiting_bytes: int
    seconds: float
    metered: int
    dead_lettered: int
    consumer_peak_rss_mb: float
    batch_max_bytes: int


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _large_in_process(settings: Settings, urls: ServiceUrls, results: Any) -> None:
    """A consumer draining the large entries; reports its counts and its peak RSS."""
    counts: Counter[str] = Counter()

    def on_batch(report: BatchReport) -> None:
        counts.update(report.counts)

    asyncio.run(bootstrap.consumer(settings, urls, until_idle=True, on_batch=on_batch).run())
    results.put((counts, _peak_rss_mb()))


def padded_event(event_id: str, org: str, size: int) -> bytes:
    """A valid api.request of ``size`` bytes: JSON allows the whitespace that pads it."""
    body = api_request_event(
        event_id, LARGE_SOURCE, org, "2026-10-15T12:00:00Z", client_id="c-bench"
    )
    return body + b" " * max(size - len(body), 0)


def bench_orgs(count: int) -> list[str]:
    return [f"bench-{i:03d}" for i in range(count)]


class Bench:
    """A scratch database and stream, migrated, with the benchmark's organizations."""

    def __init__(self, settings: Settings, urls: ServiceUrls, orgs: int) -> None:
        self.base_settings = settings
        self.base_urls = urls
        self.orgs = bench_orgs(orgs)

    async def __aenter__(self) -> Self:
        database = await databases.create_scratch(self.base_urls.database, "tally_bench")
        self.urls = replace(self.base_urls, database=database)
        self.settings = self.base_settings.model_copy(
            update={"stream": f"tally:bench:{secrets.token_hex(4)}", "consumer_name": "bench"}
        )
        await bootstrap.migrate(self.settings, self.urls)
        engine = bootstrap.engine(self.urls.database)
        try:
            for org in self.orgs:
                await organizations.add(bootstrap.database(engine), org, "USD")
        finally:
            await engine.dispose()
        return self

    async def __aexit__(self, *exc: object) -> None:
        client = redis_streams.connect(self.urls.redis)
        try:
            await client.delete(self.settings.stream)
        finally:
            await client.aclose()
        await databases.drop(self.urls.database)

    async def fill(self, events: int, seed: int, progress: Progress | None = None) -> int:
        mix = LoadMix(self.orgs, "2026-10", events, seed=seed, duplicates=0.01, bad=0.01)
        return await publish_mix(
            self.urls.redis,
            self.settings.stream,
            mix,
            (lambda done: progress(done, events)) if progress else None,
        )

    async def drain(
        self, events: int, seed: int, consumers: int = 1, progress: Progress | None = None
    ) -> DrainResult:
        """Time from the consumers' start to the commit of the last batch. Each consumer is
        its own process (one group, as when scaling out), started and imported before the
        clock runs."""
        filled = await self.fill(events, seed, progress)
        context = multiprocessing.get_context("spawn")
        ready, go, results = context.Barrier(consumers + 1), context.Event(), context.Queue()
        processes = [
            context.Process(
                target=_drain_in_process,
                args=(
                    self.settings.model_copy(update={"consumer_name": f"bench-{n}"}),
                    self.urls,
                    ready,
                    go,
                    results,
                ),
            )
            for n in range(consumers)
        ]
        for process in processes:
            process.start()
        await asyncio.to_thread(ready.wait)
        started = time.time()
        go.set()
        outcomes = [await asyncio.to_thread(results.get) for _ in processes]
        for process in processes:
            await asyncio.to_thread(process.join)
        drained = sum(n for n, _, _ in outcomes)
        seconds = max(last for _, _, last in outcomes) - started
        return DrainResult(
            events=filled,
            deliveries=drained,
            seconds=round(seconds, 3),
            events_per_second=round(filled / seconds, 1),
            batch_size=self.settings.batch_size,
            consumers=consumers,
            entries_posted=sum(p for _, p, _ in outcomes),
        )

    async def large(
        self, oversized: int, oversized_bytes: int, large: int, large_bytes: int
    ) -> LargeResult:
        """Fill the stream with large entries (untimed), then drain them in a consumer
        process and report its peak RSS: memory must follow the batch, not the backlog."""
        client = redis_streams.connect(self.urls.redis)
        try:
            junk = b"x" * oversized_bytes
            for n in range(oversized):
                await client.xadd(self.settings.stream, {"event": junk + str(n).encode()})
            for start in range(0, large, 100):
                async with client.pipeline(transaction=False) as pipe:
                    for n in range(start, min(start + 100, large)):
                        org = self.orgs[n % len(self.orgs)]
                        pipe.xadd(
                            self.settings.stream,
                            {"event": padded_event(f"large-{n}", org, large_bytes)},
                        )
                    await pipe.execute()
        finally:
            await client.aclose()
        context = multiprocessing.get_context("spawn")
        results = context.Queue()
        process = context.Process(
            target=_large_in_process, args=(self.settings, self.urls, results)
        )
        started = time.time()
        process.start()
        counts, peak = await asyncio.to_thread(results.get)
        seconds = time.time() - started
        await asyncio.to_thread(process.join)
        return LargeResult(
            oversized=oversized,
            oversized_bytes=oversized_bytes,
            large=large,
            large_bytes=large_bytes,
            waiting_bytes=oversized * oversized_bytes + large * large_bytes,
            seconds=round(seconds, 3),
            metered=counts["metered"],
            dead_lettered=counts["rejected"],
            consumer_peak_rss_mb=peak,
            batch_max_bytes=self.settings.batch_max_bytes,
        )

    async def steady(self, rate: int, seconds: float, seed: int) -> SteadyResult:
        total = int(rate * seconds)
        mix = iter(LoadMix(self.orgs, "2026-10", total, seed=seed, duplicates=0.0, bad=0.0))
        committed: dict[str, float] = {}  # stream id: latency of its first commit

        def on_batch(report: BatchReport) -> None:
            """An entry claimed again after its commit (slow acks under load) counts once."""
            now_ms = time.time() * 1000
            for sid in report.outcomes:
                committed.setdefault(sid, now_ms - int(sid.split("-")[0]))

        consumer = bootstrap.consumer(self.settings, self.urls, until_idle=False, on_batch=on_batch)
        runner = asyncio.create_task(consumer.run())
        tick = 0.01
        async with UsageProducer(self.urls.redis, self.settings.stream) as producer:
            started = time.perf_counter()
            sent = 0
            while sent < total:
                due = min(total, int((time.perf_counter() - started) * rate) + 1)
                if due > sent:
                    await producer.publish_raw([next(mix).fields for _ in range(due - sent)])
                    sent = due
                await asyncio.sleep(tick)
        deadline = time.perf_counter() + 60
        while len(committed) < total:
            if time.perf_counter() > deadline:
                consumer.stop()
                await runner
                raise RuntimeError(
                    f"only {len(committed)} of {total} events were committed a minute after "
                    "the last was published: see the consumer's log above"
                )
            await asyncio.sleep(0.05)
        consumer.stop()
        await runner
        latencies = sorted(committed.values())
        return SteadyResult(
            rate=rate,
            seconds=seconds,
            events=len(latencies),
            p50_ms=round(latencies[len(latencies) // 2], 1),
            p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 1),
            max_ms=round(latencies[-1], 1),
        )


def as_dict(result: Any) -> dict[str, Any]:
    """A result dataclass (drain, steady, large, close) as plain data."""
    return asdict(result)
