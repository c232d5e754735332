"""``tally bench``: drain throughput and steady-rate latency, in a throwaway database.

Drain: the stream is filled with N events first (untimed), then the clock runs from the
consumer's start to the commit of the last batch. Steady: events are published at a
fixed rate; latency is commit time minus the time Redis stamped on the entry's id.
Close (``tally bench close``): N organizations get a period of usage and license reports
through the metering service (untimed), then the clock runs over the month close alone.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, Self

from tally import bootstrap
from tally.adapters import redis_streams
from tally.adapters.postgres import databases
from tally.adapters.postgres.connection import make_engine, raw_connection, raw_transaction
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.period import period_bounds
from tally.domain.rating import StreamEntry
from tally.sdk.producer import UsageProducer
from tally.service_layer import organizations
from tally.service_layer.metering import BatchReport
from tally.service_layer.month_close import close_period
from tally.service_layer.setup import migrate
from tally.tools.loadgen import (
    LoadMix,
    ai_usage_event,
    api_request_event,
    default_card,
    license_usage_event,
)

Progress = Callable[[int, int], None]  # (done, total)
PUBLISH_BATCH = 5000


@dataclass
class DrainResult:
    events: int
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
        event_id, CLOSE_SOURCE, org, "2026-10-15T12:00:00Z", client_id="c-bench"
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
        await migrate(self.settings, self.urls)
        engine = make_engine(database)
        try:
            for org in self.orgs:
                await organizations.add(engine, org, "USD")
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
        await self.fill(events, seed, progress)
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
            events=drained,
            seconds=round(seconds, 3),
            events_per_second=round(drained / seconds, 1),
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
        latencies: list[float] = []

        def on_batch(report: BatchReport) -> None:
            now_ms = time.time() * 1000
            latencies.extend(now_ms - int(sid.split("-")[0]) for sid in report.outcomes)

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
        while len(latencies) < total:
            if time.perf_counter() > deadline:
                consumer.stop()
                await runner
                raise RuntimeError(
                    f"only {len(latencies)} of {total} events were committed a minute after "
                    "the last was published: see the consumer's log above"
                )
            await asyncio.sleep(0.05)
        consumer.stop()
        await runner
        latencies.sort()
        return SteadyResult(
            rate=rate,
            seconds=seconds,
            events=len(latencies),
            p50_ms=round(latencies[len(latencies) // 2], 1),
            p99_ms=round(latencies[int(len(latencies) * 0.99) - 1], 1),
            max_ms=round(latencies[-1], 1),
        )


# ---------------------------------------------------------------------------- close

CLOSE_PERIOD = "2026-10"
CLOSE_SOURCE = "bench-close"
CLOSE_CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CAD")
METER_BATCH = 10_000  # entries per MeteringService.process call, as a consumer batch
# The rate card's allocations, so that some organizations go over and some not.
CARD = default_card()
GC2_NAMED_REQUESTS = CARD.api.allocation["gc2"]["named"]
GC2_CONCURRENT_REQUESTS = CARD.api.allocation["gc2"]["concurrent"]
NAMED_TOKENS, CONCURRENT_TOKENS = CARD.ai.allocation["named"], CARD.ai.allocation["concurrent"]
_VIRTUAL_AGENT = CARD.ai.features["virtual_agent"]
VIRTUAL_AGENT_TOKENS_PER_SESSION = _VIRTUAL_AGENT.tokens // _VIRTUAL_AGENT.per


@dataclass
class CloseResult:
    period: str
    organizations: int
    events: int
    fill_seconds: float
    invoices_issued: int
    invoices: int
    close_seconds: float
    invoices_per_second: float
    chunk: int
    totals: dict[str, Decimal] = field(default_factory=dict)  # per currency


def close_org_names(count: int) -> list[tuple[str, str]]:
    """``(name, currency)``: org-00001, org-00002 …, the currencies taken in turn."""
    return [
        (f"org-{n:05d}", CLOSE_CURRENCIES[(n - 1) % len(CLOSE_CURRENCIES)])
        for n in range(1, count + 1)
    ]


def license_event(event_id: str, lic: str, model: str, users: int, org: str, day: str) -> bytes:
    return license_usage_event(event_id, CLOSE_SOURCE, org, f"{day}T23:00:00Z", lic, model, users)


def api_event(event_id: str, count: int, org: str, time: str) -> bytes:
    return api_request_event(event_id, CLOSE_SOURCE, org, time, count, client_id="bench-client")


def ai_event(event_id: str, sessions: int, org: str, time: str) -> bytes:
    return ai_usage_event(event_id, CLOSE_SOURCE, org, time, "virtual_agent", sessions, "session")


def close_events(n: int, org: str, period: str) -> list[bytes]:
    """One organization's period (n counts from 0): gc2 named users (some also concurrent
    ones), API requests and virtual agent sessions; about half go over each allocation."""
    named = 5 + n % 40
    concurrent = 2 + n % 7 if n % 4 == 0 else 0
    requests = named * GC2_NAMED_REQUESTS + concurrent * GC2_CONCURRENT_REQUESTS
    tokens = named * NAMED_TOKENS + concurrent * CONCURRENT_TOKENS
    api_used = requests * (120 + n % 37) // 100 if n % 2 == 0 else requests * (40 + n % 53) // 100
    ai_used = tokens * (105 + n % 29) // 100 if n % 3 == 0 else tokens * (30 + n % 61) // 100
    sessions = max(1, ai_used // VIRTUAL_AGENT_TOKENS_PER_SESSION)
    events = [license_event(f"{org}-lic-1", "gc2", "named", named, org, f"{period}-05")]
    if concurrent:
        events.append(
            license_event(f"{org}-lic-2", "gc2", "concurrent", concurrent, org, f"{period}-12")
        )
    if n % 3 == 1:  # two API reports
        first = api_used // 3
        events += [
            api_event(f"{org}-api-1", first, org, f"{period}-10T09:00:00Z"),
            api_event(f"{org}-api-2", api_used - first, org, f"{period}-20T15:30:00Z"),
        ]
    else:
        events.append(api_event(f"{org}-api-1", api_used, org, f"{period}-15T12:00:00Z"))
    if n % 5 == 2:  # two AI reports
        first = sessions // 2
        events += [
            ai_event(f"{org}-ai-1", max(1, first), org, f"{period}-08T10:00:00Z"),
            ai_event(f"{org}-ai-2", max(1, sessions - first), org, f"{period}-25T18:45:00Z"),
        ]
    else:
        events.append(ai_event(f"{org}-ai-1", sessions, org, f"{period}-18T11:15:00Z"))
    return events


def close_entries(orgs: list[tuple[str, str]], period: str) -> Iterator[StreamEntry]:
    """The period's events as stream entries, ids 1-0, 2-0 …"""
    sid = 0
    for n, (org, _) in enumerate(orgs):
        for payload in close_events(n, org, period):
            sid += 1
            yield f"{sid}-0", {b"event": payload}


class CloseBench(Bench):
    """The scratch database of :class:`Bench`, with ``orgs`` organizations for a close."""

    def __init__(self, settings: Settings, urls: ServiceUrls, orgs: int) -> None:
        super().__init__(settings, urls, 0)
        self.close_orgs = close_org_names(orgs)

    async def add_orgs(self) -> None:
        """All organizations in one INSERT (``organizations.add`` is one transaction each)."""
        engine = make_engine(self.urls.database)
        try:
            async with raw_transaction(engine) as conn:
                await conn.execute(
                    "INSERT INTO organization (name, currency) "
                    "SELECT * FROM unnest($1::text[], $2::text[])",
                    [name for name, _ in self.close_orgs],
                    [currency for _, currency in self.close_orgs],
                )
        finally:
            await engine.dispose()

    async def meter_period(self, period: str, progress: Progress | None = None) -> int:
        """Meter the period's events through the metering service, batch by batch; returns
        how many were stored (every one, or this raises)."""
        entries = list(close_entries(self.close_orgs, period))
        after_close = period_bounds(period)[1] + timedelta(hours=24)
        engine = bootstrap.engine(self.urls)
        service = bootstrap.metering_service(
            engine,
            self.settings,
            clock=lambda: after_close,  # received once the period ended, whatever today is
            require_known_sources=False,
        )
        stored = 0
        try:
            if progress:
                progress(0, len(entries))
            for first in range(0, len(entries), METER_BATCH):
                batch = entries[first : first + METER_BATCH]
                report = await service.process(self.settings.stream, batch)
                refused = {
                    sid: outcome
                    for sid, outcome in report.outcomes.items()
                    if outcome not in ("metered", "recorded")
                }
                if refused:
                    example = next(iter(refused.items()))
                    raise RuntimeError(f"{len(refused)} bench events were not metered: {example}")
                stored += len(batch)
                if progress:
                    progress(first + len(batch), len(entries))
        finally:
            await engine.dispose()
        return stored

    async def close(
        self,
        period: str,
        fill_progress: Progress | None = None,
        close_progress: Progress | None = None,
    ) -> CloseResult:
        """Add the organizations and meter the period (untimed), then time the close."""
        await self.add_orgs()
        started = time.perf_counter()
        events = await self.meter_period(period, fill_progress)
        filled = time.perf_counter() - started
        engine = make_engine(self.urls.database)
        try:
            started = time.perf_counter()
            report = await close_period(
                engine,
                period,
                as_of=period_bounds(period)[1] + timedelta(hours=24),
                grace=timedelta(hours=24),
                progress=close_progress,
                chunk=self.settings.close_chunk,
            )
            seconds = time.perf_counter() - started
            async with raw_connection(engine) as conn:
                rows = await conn.fetch(
                    "SELECT currency, sum(total) AS total FROM invoice WHERE period = $1 "
                    "GROUP BY currency ORDER BY currency",
                    period,
                )
        finally:
            await engine.dispose()
        return CloseResult(
            period=period,
            organizations=len(self.close_orgs),
            events=events,
            fill_seconds=round(filled, 3),
            invoices_issued=report.issued,
            invoices=report.invoices,
            close_seconds=round(seconds, 3),
            invoices_per_second=round(report.issued / seconds, 1) if seconds else 0.0,
            chunk=self.settings.close_chunk,
            totals={row["currency"]: row["total"] for row in rows},
        )


def as_dict(result: DrainResult | SteadyResult | CloseResult | LargeResult) -> dict[str, Any]:
    return asdict(result)
