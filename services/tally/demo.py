"""``tally demo``: the whole path on one screen, from XADD to a verified ledger."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters import redis_streams
from tally.adapters.postgres import ledger_queries, organizations
from tally.adapters.postgres.verification import Verification, verify
from tally.bench import publish_mix
from tally.config import Settings
from tally.entrypoints.consumer import Consumer
from tally.loadgen import LoadMix, LoadSummary
from tally.metering import BatchReport
from tally.migrate import migrate
from tally.runtime import ServiceUrls

DEMO_ORGS = {"acme": "USD", "globex": "EUR", "initech": "JPY", "umbrella": "GBP"}
Step = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class DemoResult:
    period: str
    summary: LoadSummary
    consumed: Counter[str]
    balances: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    verification: Verification | None = None


def last_month(now: datetime) -> str:
    first = now.astimezone(UTC).replace(day=1)
    previous = first - timedelta(days=1)
    return f"{previous.year:04d}-{previous.month:02d}"


async def run_demo(
    settings: Settings,
    urls: ServiceUrls,
    engine: AsyncEngine,
    events: int,
    seed: int,
    step: Step,
    progress: Progress,
) -> DemoResult:
    for line in await migrate(settings, urls, engine):
        step(line)
    for org, currency in DEMO_ORGS.items():
        added = await organizations.add(engine, org, currency)
        step(f"organization {org} ({currency}) {'added' if added else 'already there'}")
    period = last_month(datetime.now(UTC))
    mix = LoadMix(
        list(DEMO_ORGS),
        period,
        events,
        seed=seed,
        duplicates=0.02,
        bad=0.01,
        source=f"demo-{period}",  # a rerun next month is new usage, not conflicts
    )
    await publish_mix(
        urls.redis, settings.stream, mix, lambda done: progress("publishing", done, events)
    )
    client = redis_streams.connect(urls.redis)
    try:
        backlog = await redis_streams.backlog(client, settings.stream, settings.group)
    finally:
        await client.aclose()
    to_meter = backlog.lag + backlog.pending
    done = [0]

    def on_batch(report: BatchReport) -> None:
        done[0] += len(report.outcomes)
        progress("metering", done[0], to_meter)

    consumed = await Consumer(settings, urls, until_idle=True, on_batch=on_batch).run()
    result = DemoResult(period, mix.summary, consumed)
    for org in DEMO_ORGS:
        result.balances[org] = await ledger_queries.balances(engine, org, period)
    result.dead_letters = await ledger_queries.dead_letters(engine, limit=1000)
    result.verification = await verify(engine)
    return result
