"""``tally bench``: drain throughput and steady-rate latency, in a throwaway database.

Drain: the stream is filled with N events first (untimed), then the clock runs from the
consumer's start to the commit of the last batch. Steady: events are published at a
fixed rate; latency is commit time minus the time Redis stamped on the entry's id.
The close benchmark is in ``bench_close``.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import secrets
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any, Self

from sqlalchemy.engine import make_url

from tally import bootstrap
from tally.adapters import redis_streams
from tally.adapters.postgres import databases, verification
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.shards import split_shards
from tally.service_layer import organizations
from tally.service_layer.metering import BatchReport
from tally_tools import bench_pipeline
from tally_tools.loadgen import (
    LoadMix,
    api_request_event,
)
from tally_tools.resources import BackendCpu, ProcessCpu, children_peak_rss_mb, peak_rss_mb

Progress = Callable[[int, int], None]  # (done, total)
PUBLISH_BATCH = 5000
LARGE_SOURCE = "bench-close"  # the source of tally bench large's entries


@dataclass
class PipelineCheck:
    """Proof that the bare pipeline did its whole job: every entry acknowledged, none left
    pending, and one committed row per distinct key."""

    entries: int
    acknowledged: int
    pending: int
    rows_inserted: int
    rows_stored: int


@dataclass
class DrainResult:
    events: int  # stream entries drained (each once, however often it was delivered)
    deliveries: int  # entries the consumers processed: more when one claimed another's
    seconds: float
    events_per_second: float
    pipeline_events_per_second: float  # the bare pipeline, same entries, same servers
    ratio: float  # events_per_second / pipeline_events_per_second
    consumer_cpu_s_per_100k: float  # the consumer processes' CPU, all of them
    rating_worker_cpu_s_per_100k: float  # of which their rating workers'
    postgres_cpu_s_per_100k: float | None  # their PostgreSQL backends' CPU (None: not local)
    pipeline_cpu_s_per_100k: float
    pipeline_postgres_cpu_s_per_100k: float | None
    consumer_peak_rss_mb: float  # the largest consumer's, its rating worker's added
    rating_worker_peak_rss_mb: float  # of which its rating worker's
    batch_size: int
    shards: int
    consumers: int
    entries_posted: int
    verified: bool  # tally ledger verify found nothing after the drain
    findings: list[str]
    pipeline: PipelineCheck


@dataclass
class SteadyResult:
    rate: int
    seconds: float
    events: int
    p50_ms: float
    p99_ms: float
    max_ms: float


async def publish_mix(
    settings: Settings,
    redis_url: str,
    mix: LoadMix,
    progress: Callable[[int], object] | None = None,
) -> int:
    """XADD a whole synthetic mix in pipelined batches to the settings' stream (each entry
    on its shard); returns how many entries were sent."""
    async with bootstrap.producer(settings, redis_url, batch_size=PUBLISH_BATCH) as producer:
        return len(await producer.publish_all((entry.fields for entry in mix), progress))


@dataclass
class ProcessRun:
    """What one benchmark process reports: its entries, postings, the time of its last
    commit (epoch seconds), CPU seconds and peak RSS."""

    entries: int
    postings: int
    last_commit: float
    cpu_seconds: float
    peak_rss_mb: float
    worker_cpu_seconds: float = 0.0  # of the above, its rating worker's
    worker_peak_rss_mb: float = 0.0  # of the above, its rating worker's


def _drain_in_process(
    settings: Settings, urls: ServiceUrls, shards: list[int], ready: Any, go: Any, results: Any
) -> None:
    """One benchmark consumer of ``shards``, started and imported before the clock runs."""
    counts: Counter[str] = Counter()
    last = [0.0]

    def on_batch(report: BatchReport) -> None:
        counts.update(events=len(report.outcomes), postings=report.postings)
        last[0] = time.time()

    consumer = bootstrap.consumer(settings, urls, until_idle=True, on_batch=on_batch, shards=shards)
    ready.wait()
    go.wait()
    cpu = ProcessCpu()
    asyncio.run(consumer.run())
    worker = children_peak_rss_mb()
    results.put(
        ProcessRun(
            counts["events"],
            counts["postings"],
            last[0],
            cpu.seconds(),
            peak_rss_mb() + worker,
            cpu.children_seconds(),
            worker,
        )
    )


def _pipeline_in_process(
    database: str, redis_url: str, stream: str, batch: int, ready: Any, go: Any, results: Any
) -> None:
    """The bare pipeline, started and imported before the clock runs."""
    ready.wait()
    go.wait()
    results.put(asyncio.run(bench_pipeline.drain(database, redis_url, stream, batch)))


async def _timed(
    target: Callable[..., None], args: list[tuple[Any, ...]], database: str
) -> tuple[float, list[Any], float | None]:
    """Run one process per ``args`` (spawned and imported first), start them at once and
    wait for them; returns the seconds from the start to the last commit, their runs, and
    the CPU seconds of the PostgreSQL backends of ``database`` meanwhile."""
    context = multiprocessing.get_context("spawn")
    ready, go, results = context.Barrier(len(args) + 1), context.Event(), context.Queue()
    processes = [context.Process(target=target, args=(*arg, ready, go, results)) for arg in args]
    for process in processes:
        process.start()
    await asyncio.to_thread(ready.wait)
    async with BackendCpu(databases.dsn(database), make_url(database).database or "") as pg:
        started = time.time()
        go.set()
        runs = [await asyncio.to_thread(_result, results, processes) for _ in processes]
        for process in processes:
            await asyncio.to_thread(process.join)
    return max(run.last_commit for run in runs) - started, runs, pg.seconds


def _result(results: Any, processes: list[Any]) -> Any:
    """The next process's result; a process that ended without one failed (its traceback
    is on stderr): say so instead of waiting forever."""
    while True:
        try:
            return results.get(timeout=1)
        except queue.Empty:
            failed = [p for p in processes if p.exitcode not in (None, 0)]
            if failed:
                codes = ", ".join(str(p.exitcode) for p in failed)
                raise RuntimeError(
                    f"a benchmark process failed (exit {codes}): see above"
                ) from None


def _per_100k(seconds: float | None, events: int) -> float | None:
    return None if seconds is None else round(seconds * 100_000 / max(events, 1), 3)


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


def _large_in_process(settings: Settings, urls: ServiceUrls, results: Any) -> None:
    """A consumer draining the large entries; reports its counts and its peak RSS."""
    counts: Counter[str] = Counter()

    def on_batch(report: BatchReport) -> None:
        counts.update(report.counts)

    asyncio.run(bootstrap.consumer(settings, urls, until_idle=True, on_batch=on_batch).run())
    results.put((counts, peak_rss_mb()))


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

    def __init__(
        self,
        settings: Settings,
        urls: ServiceUrls,
        orgs: int,
        template: str | None = None,
        check: bool = True,
    ) -> None:
        """``template``: the scratch database starts as a copy of this database (e.g. a
        ledger kept by ``tally bench api --keep``); ``check``: verify after the drain."""
        self.base_settings = settings
        self.base_urls = urls
        self.orgs = bench_orgs(orgs)
        self.template, self.check = template, check

    async def __aenter__(self) -> Self:
        database = await databases.create_scratch(
            self.base_urls.database, "tally_bench", self.template
        )
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

    @property
    def pipeline_stream(self) -> str:
        """The bare pipeline's stream: one key, filled with the same entries."""
        return f"{self.settings.stream}:pipeline"

    async def __aexit__(self, *exc: object) -> None:
        client = redis_streams.connect(self.urls.redis)
        try:
            for key in [*self.settings.stream_keys, self.pipeline_stream]:
                await client.delete(key)  # one key per call: a cluster's keys are in many slots
        finally:
            await client.aclose()
        await databases.drop(self.urls.database)

    async def fill(
        self, events: int, seed: int, progress: Progress | None = None, stream: str | None = None
    ) -> int:
        """Publish the benchmark's mix to its stream's shards (or the one key ``stream``),
        untimed."""
        mix = LoadMix(self.orgs, "2026-10", events, seed=seed, duplicates=0.01, bad=0.01)
        settings = self.settings
        if stream is not None:
            settings = settings.model_copy(update={"stream": stream, "stream_shards": 1})
        return await publish_mix(
            settings,
            self.urls.redis,
            mix,
            (lambda done: progress(done, events)) if progress else None,
        )

    async def drain(
        self, events: int, seed: int, consumers: int = 1, progress: Progress | None = None
    ) -> DrainResult:
        """Time the bare pipeline, then the consumers, on the same entries (each stream
        filled first, untimed): from the processes' start to the commit of the last batch.
        Each consumer is its own process (one group, as when scaling out), reading its share
        of the shards (dealt round-robin)."""
        pipeline_stream = self.pipeline_stream
        filled = await self.fill(events, seed, progress)
        await self.fill(events, seed, stream=pipeline_stream)
        await bench_pipeline.prepare(self.urls.database, self.urls.redis, pipeline_stream)
        batch = self.settings.batch_size
        args = (self.urls.database, self.urls.redis, pipeline_stream, batch)
        bare_seconds, (bare,), bare_pg = await _timed(
            _pipeline_in_process, [args], self.urls.database
        )
        check = await self._check_pipeline(pipeline_stream, bare)
        seconds, runs, pg = await _timed(
            _drain_in_process,
            [
                (self.settings.model_copy(update={"consumer_name": f"bench-{n}"}), self.urls, mine)
                for n, mine in enumerate(split_shards(self.settings.stream_shards, consumers))
            ],
            self.urls.database,
        )
        findings = await self.verify() if self.check else ["not verified (--no-verify)"]
        rate, bare_rate = filled / seconds, filled / bare_seconds
        return DrainResult(
            events=filled,
            deliveries=sum(run.entries for run in runs),
            seconds=round(seconds, 3),
            events_per_second=round(rate, 1),
            pipeline_events_per_second=round(bare_rate, 1),
            ratio=round(rate / bare_rate, 3),
            consumer_cpu_s_per_100k=_per_100k(sum(r.cpu_seconds for r in runs), filled) or 0,
            rating_worker_cpu_s_per_100k=_per_100k(sum(r.worker_cpu_seconds for r in runs), filled)
            or 0,
            postgres_cpu_s_per_100k=_per_100k(pg, filled),
            pipeline_cpu_s_per_100k=_per_100k(bare.cpu_seconds, filled) or 0,
            pipeline_postgres_cpu_s_per_100k=_per_100k(bare_pg, filled),
            consumer_peak_rss_mb=max(run.peak_rss_mb for run in runs),
            rating_worker_peak_rss_mb=max(run.worker_peak_rss_mb for run in runs),
            batch_size=batch,
            shards=self.settings.stream_shards,
            consumers=consumers,
            entries_posted=sum(run.postings for run in runs),
            verified=not findings,
            findings=findings,
            pipeline=check,
        )

    async def _check_pipeline(self, stream: str, run: bench_pipeline.PipelineRun) -> PipelineCheck:
        """What the bare pipeline left: its pending entries in Redis, its rows in PostgreSQL."""
        client = redis_streams.connect(self.urls.redis)
        try:
            pending = (await client.xpending(stream, bench_pipeline.GROUP))["pending"]
        finally:
            await client.aclose()
        return PipelineCheck(
            entries=run.entries,
            acknowledged=run.acknowledged,
            pending=pending,
            rows_inserted=run.inserted,
            rows_stored=await bench_pipeline.stored(self.urls.database),
        )

    async def verify(self) -> list[str]:
        """``tally ledger verify`` on the scratch database: its findings (none: all good)."""
        engine = bootstrap.engine(self.urls.database)
        try:
            result = await verification.verify(engine)
        finally:
            await engine.dispose()
        return [f"{finding.check}: {finding.detail}" for finding in result.findings]

    async def large(
        self, oversized: int, oversized_bytes: int, large: int, large_bytes: int
    ) -> LargeResult:
        """Fill the stream with large entries (untimed), then drain them in a consumer
        process and report its peak RSS: memory must follow the batch, not the backlog."""
        key = self.settings.stream_keys[0]  # memory, not routing, is measured: one shard
        client = redis_streams.connect(self.urls.redis)
        try:
            junk = b"x" * oversized_bytes
            for n in range(oversized):
                await client.xadd(key, {"event": junk + str(n).encode()})
            for start in range(0, large, 100):
                async with client.pipeline(transaction=False) as pipe:
                    for n in range(start, min(start + 100, large)):
                        org = self.orgs[n % len(self.orgs)]
                        pipe.xadd(
                            key,
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
        committed: dict[str, float] = {}  # stream id: latency of its first commit

        def on_batch(report: BatchReport) -> None:
            """An entry claimed again after its commit (slow acks under load) counts once."""
            now_ms = time.time() * 1000
            for sid in report.outcomes:
                committed.setdefault(sid, now_ms - int(sid.split("-")[0]))

        consumer = bootstrap.consumer(self.settings, self.urls, until_idle=False, on_batch=on_batch)
        runner = asyncio.create_task(consumer.run())
        # the producer has a process of its own, as an integration would: publishing in the
        # consumer's event loop would delay its batches by the producer's own work
        context = multiprocessing.get_context("spawn")
        publisher = context.Process(
            target=_publish_at_rate,
            args=(self.settings, self.urls.redis, self.orgs, rate, seconds, seed),
        )
        publisher.start()
        await asyncio.to_thread(publisher.join)
        if publisher.exitcode != 0:
            consumer.stop()
            await runner
            raise RuntimeError(f"the publishing process failed (exit {publisher.exitcode})")
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


def _publish_at_rate(
    settings: Settings, redis_url: str, orgs: list[str], rate: int, seconds: float, seed: int
) -> None:
    """XADD the steady mix at ``rate`` entries per second, in pipelined rounds every 10 ms."""
    total = int(rate * seconds)
    mix = iter(LoadMix(orgs, "2026-10", total, seed=seed, duplicates=0.0, bad=0.0))

    async def publish() -> None:
        async with bootstrap.producer(settings, redis_url) as producer:
            started = time.perf_counter()
            sent = 0
            while sent < total:
                due = min(total, int((time.perf_counter() - started) * rate) + 1)
                if due > sent:
                    await producer.publish_raw([next(mix).fields for _ in range(due - sent)])
                    sent = due
                await asyncio.sleep(0.01)

    asyncio.run(publish())


def as_dict(result: Any) -> dict[str, Any]:
    """A result dataclass (drain, steady, large, close) as plain data."""
    return asdict(result)
