"""``tally bench close``: N organizations get a period of usage and license reports through
the metering service (untimed), then the clock runs over the month close alone, in the
throwaway database of :class:`tally_tools.bench.Bench`.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from itertools import islice
from pathlib import Path
from typing import Any

from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.verification import verify
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.period import period_bounds
from tally.domain.rating import StreamEntry
from tally.service_layer.month_close import close_period
from tally_tools.bench import Bench, Progress
from tally_tools.loadgen import (
    ai_usage_event,
    api_request_event,
    default_card,
    license_usage_event,
)
from tally_tools.resources import peak_rss_mb

CLOSE_PERIOD = "2026-10"
CLOSE_SOURCE = "bench-close"
CLOSE_CURRENCIES = ("USD", "EUR", "JPY", "GBP", "CAD")
METER_BATCH = 10_000  # entries per MeteringService.process call, as a consumer batch
FILL_WORKERS = 2  # fill processes (the cores): the fill is untimed, only waited for
ORG_BATCH = 10_000  # organizations per INSERT
# The rate card's allocations, so that some organizations go over and some not.
CARD = default_card()
GC2_NAMED_REQUESTS = CARD.api.allocation["gc2"]["named"]
GC2_CONCURRENT_REQUESTS = CARD.api.allocation["gc2"]["concurrent"]
NAMED_TOKENS, CONCURRENT_TOKENS = CARD.ai.allocation["named"], CARD.ai.allocation["concurrent"]
_VIRTUAL_AGENT = CARD.ai.features["virtual_agent"]
VIRTUAL_AGENT_TOKENS_PER_SESSION = _VIRTUAL_AGENT.tokens // _VIRTUAL_AGENT.per


def _reset_peak_rss() -> None:
    """Start VmHWM again from the current RSS (Linux: ``5`` into clear_refs), so that the
    peak read after the close is the close's."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


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
    close_cpu_seconds: float  # of the closing process (PostgreSQL's own CPU not included)
    peak_rss_mb: float  # the closing process's peak RSS during the close (VmHWM)
    verified_entries: int | None  # with --verify: the entries ledger verify found clean
    totals: dict[str, Decimal] = field(default_factory=dict)  # per currency


def close_org_names(count: int, first: int = 0) -> list[tuple[str, str]]:
    """``(name, currency)`` of organizations ``first`` to ``count - 1`` (counted from 0):
    org-00001, org-00002 …, the currencies taken in turn."""
    return [
        (f"org-{n:05d}", CLOSE_CURRENCIES[(n - 1) % len(CLOSE_CURRENCIES)])
        for n in range(first + 1, count + 1)
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


def close_entries(
    count: int, period: str, worker: int = 0, workers: int = 1
) -> Iterator[StreamEntry]:
    """The period's events of every ``workers``-th organization from ``worker`` on, as stream
    entries, generated as they are read: organization n's k-th event has the id ``n+1-k``."""
    for n in range(worker, count, workers):
        org = f"org-{n + 1:05d}"
        for k, payload in enumerate(close_events(n, org, period)):
            yield f"{n + 1}-{k}", {b"event": payload}


def close_event_count(count: int, period: str) -> int:
    """How many events :func:`close_entries` yields for ``count`` organizations."""
    return sum(len(close_events(n, f"org-{n + 1:05d}", period)) for n in range(count))


def _meter_worker(
    settings: Settings,
    urls: ServiceUrls,
    count: int,
    period: str,
    worker: int,
    workers: int,
    done: Any,
) -> None:
    """One fill process: meters its share of the organizations' events, batch by batch."""
    asyncio.run(_meter_share(settings, urls, count, period, worker, workers, done))


async def _meter_share(
    settings: Settings,
    urls: ServiceUrls,
    count: int,
    period: str,
    worker: int,
    workers: int,
    done: Any,
) -> None:
    after_close = period_bounds(period)[1] + timedelta(hours=24)
    engine = bootstrap.engine(urls.database)
    service = bootstrap.metering_service(
        engine,
        settings,
        clock=lambda: after_close,  # received once the period ended, whatever today is
        require_known_sources=False,
    )
    entries = close_entries(count, period, worker, workers)
    try:
        while batch := list(islice(entries, METER_BATCH)):
            report = await service.process(settings.stream, batch)
            refused = {
                sid: outcome
                for sid, outcome in report.outcomes.items()
                if outcome not in ("metered", "recorded")
            }
            if refused:
                example = next(iter(refused.items()))
                raise RuntimeError(f"{len(refused)} bench events were not metered: {example}")
            with done.get_lock():
                done.value += len(batch)
    finally:
        await engine.dispose()


class CloseBench(Bench):
    """The scratch database of :class:`Bench`, with ``orgs`` organizations for a close."""

    def __init__(self, settings: Settings, urls: ServiceUrls, orgs: int) -> None:
        super().__init__(settings, urls, 0)
        self.close_orgs = orgs

    async def add_orgs(self) -> None:
        """The organizations, in INSERTs of ``ORG_BATCH`` (``organizations.add`` is one
        transaction each)."""
        engine = bootstrap.engine(self.urls.database)
        try:
            async with raw_transaction(engine) as conn:
                for first in range(0, self.close_orgs, ORG_BATCH):
                    orgs = close_org_names(min(self.close_orgs, first + ORG_BATCH), first)
                    await conn.execute(
                        "INSERT INTO organization (name, currency) "
                        "SELECT * FROM unnest($1::text[], $2::text[])",
                        [name for name, _ in orgs],
                        [currency for _, currency in orgs],
                    )
        finally:
            await engine.dispose()

    async def meter_period(self, period: str, progress: Progress | None = None) -> int:
        """Meter the period's events through the metering service, batch by batch, in
        ``FILL_WORKERS`` processes (each its share of the organizations); returns how many
        were stored (every one, or this raises). The events are generated as they are
        metered, so no process holds the whole period."""
        total = close_event_count(self.close_orgs, period)
        context = multiprocessing.get_context("spawn")
        done = context.Value("q", 0)
        workers = [
            context.Process(
                target=_meter_worker,
                args=(self.settings, self.urls, self.close_orgs, period, n, FILL_WORKERS, done),
            )
            for n in range(FILL_WORKERS)
        ]
        for process in workers:
            process.start()
        try:
            while any(process.is_alive() for process in workers):
                if progress:
                    progress(done.value, total)
                await asyncio.sleep(0.2)
        except BaseException:  # interrupted: the fill processes stop too
            for process in workers:
                process.terminate()
            raise
        finally:
            for process in workers:
                process.join()
        if failed := [process.exitcode for process in workers if process.exitcode]:
            raise RuntimeError(f"a fill process failed (exit codes {failed}): see its log above")
        if done.value != total:
            raise RuntimeError(f"{done.value} of {total} bench events were metered")
        if progress:
            progress(total, total)
        return total

    async def analyze(self) -> None:
        """ANALYZE the scratch database once it is filled, as autovacuum would have done
        (it may be off on a shared server): planning the close on tables never analyzed
        measures the planner's guesses, not the close."""
        engine = bootstrap.engine(self.urls.database)
        try:
            async with raw_connection(engine) as conn:
                await conn.execute("ANALYZE")
        finally:
            await engine.dispose()

    async def close(
        self,
        period: str,
        fill_progress: Progress | None = None,
        close_progress: Progress | None = None,
        check: bool = False,
    ) -> CloseResult:
        """Add the organizations and meter the period (untimed), then time the close; with
        ``check``, ``tally ledger verify`` afterwards (untimed; findings raise)."""
        await self.add_orgs()
        started = time.perf_counter()
        events = await self.meter_period(period, fill_progress)
        filled = time.perf_counter() - started
        await self.analyze()
        engine = bootstrap.engine(self.urls.database)
        try:
            _reset_peak_rss()
            cpu = time.process_time()
            started = time.perf_counter()
            report = await close_period(
                bootstrap.database(engine),
                period,
                as_of=period_bounds(period)[1] + timedelta(hours=24),
                grace=timedelta(hours=24),
                progress=close_progress,
                chunk=self.settings.close_chunk,
            )
            seconds = time.perf_counter() - started
            cpu = time.process_time() - cpu
            peak = peak_rss_mb()
            verified = None
            if check:
                verification = await verify(engine)
                if not verification.ok:
                    raise RuntimeError(f"ledger verify after the close: {verification.findings}")
                verified = verification.entries
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
            organizations=self.close_orgs,
            events=events,
            fill_seconds=round(filled, 3),
            invoices_issued=report.issued,
            invoices=report.invoices,
            close_seconds=round(seconds, 3),
            invoices_per_second=round(report.issued / seconds, 1) if seconds else 0.0,
            chunk=self.settings.close_chunk,
            close_cpu_seconds=round(cpu, 3),
            peak_rss_mb=peak,
            verified_entries=verified,
            totals={row["currency"]: row["total"] for row in rows},
        )
