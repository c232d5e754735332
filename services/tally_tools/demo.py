"""``tally demo``: the whole path on one screen, from XADD to a verified ledger and the
month's invoices.

``acme`` (USD) gets the fair-use policy's worked example (gc2 named, 20 users, 3,000,000 billable
requests: USD 80.00); the other organizations get a seeded synthetic month.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters import redis_streams
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads
from tally.adapters.postgres.reads import invoices, org_balances
from tally.adapters.postgres.reads.dead_letters import CodeCount
from tally.adapters.postgres.reads.invoices import Invoice
from tally.adapters.postgres.reads.org_balances import OrgBalance
from tally.adapters.postgres.verification import Verification, verify
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.access import NewKey, Role
from tally.domain.period import closable_from, previous_period
from tally.service_layer import organizations
from tally.service_layer.api_keys import create_key
from tally.service_layer.metering import BatchReport
from tally.service_layer.month_close import CloseReport, close_period
from tally_tools.bench import publish_mix
from tally_tools.loadgen import LoadMix, LoadSummary

DEMO_ORGS = {"acme": "USD", "globex": "EUR", "initech": "JPY", "umbrella": "GBP"}
FAIR_USE_ORG = "acme"
FAIR_USE_REQUESTS = 3_000_000
Step = Callable[[str], None]
Progress = Callable[[str, int, int], None]  # (what, done, total)


@dataclass
class DemoResult:
    period: str
    summary: LoadSummary
    consumed: Counter[str]
    balances: dict[str, list[OrgBalance]] = field(default_factory=dict)
    dead_letters: list[CodeCount] = field(default_factory=list)
    verification: Verification | None = None
    close: CloseReport | None = None
    invoices: dict[str, Invoice] = field(default_factory=dict)
    api_key: NewKey | None = None  # an auditor's key for the HTTP API (tally serve)

    def billable_requests(self, org: str) -> int:
        """What the demo sent: the fair-use policy's requests for acme, the generator's for
        the rest."""
        sent = self.summary.billable_requests.get(org, 0)
        return sent + (FAIR_USE_REQUESTS if org == FAIR_USE_ORG else 0)


async def publish_fair_use_example(settings: Settings, redis_url: str, period: str) -> None:
    """gc2 named, 20 users, 3,000,000 requests: three pre-aggregated events (``count``)."""
    source = f"demo-seed-000-{period}"
    async with bootstrap.producer(settings, redis_url, source=source) as producer:
        day = f"{period}-01T09:00:00Z"
        await producer.license_usage(
            FAIR_USE_ORG, license="gc2", model="named", users=20, time=day, id="licenses"
        )
        for n in range(3):
            await producer.api_request(
                FAIR_USE_ORG,
                oauth_client_id="crm-sync",
                method="GET",
                template_uri="/api/v2/users/{userId}",
                status=200,
                client_kind="integration",
                count=FAIR_USE_REQUESTS // 3,
                time=f"{period}-{10 + n}T12:00:00Z",
                id=f"requests-{n}",
            )


async def run_demo(
    settings: Settings,
    urls: ServiceUrls,
    engine: AsyncEngine,
    events: int,
    seed: int,
    step: Step,
    progress: Progress,
) -> DemoResult:
    for line in await bootstrap.migrate(settings, urls):
        step(line)
    for org, currency in DEMO_ORGS.items():
        added = await organizations.add(bootstrap.database(engine), org, currency)
        step(f"organization {org} ({currency}) {'added' if added else 'already there'}")
    period = previous_period(datetime.now(UTC))
    mix = LoadMix(
        [org for org in DEMO_ORGS if org != FAIR_USE_ORG],
        period,
        events,
        seed=seed,
        duplicates=0.02,
        bad=0.01,
        source=f"demo-{period}",  # a rerun next month is new usage, not conflicts
    )
    await publish_fair_use_example(settings, urls.redis, period)
    await publish_mix(settings, urls.redis, mix, lambda done: progress("publishing", done, events))
    client = redis_streams.connect(urls.redis)
    try:
        groups = [
            (await redis_streams.stream_status(client, key)).group(settings.group)
            for key in settings.stream_keys
        ]
    finally:
        await client.aclose()
    to_meter = sum((group.lag or 0) + group.pending for group in groups)
    done = [0]

    def on_batch(report: BatchReport) -> None:
        done[0] += len(report.outcomes)
        progress("metering", done[0], to_meter)

    consumed = await bootstrap.consumer(settings, urls, until_idle=True, on_batch=on_batch).run()
    result = DemoResult(period, mix.summary, consumed)
    async with raw_connection(engine) as conn:
        result.dead_letters = await dead_letter_reads.dead_letter_codes(conn)
    # the close's clock: now, or the earliest instant the month may close (its grace)
    as_of = max(datetime.now(UTC), closable_from(period, settings.close_grace))
    result.close = await close_period(
        bootstrap.database(engine),
        period,
        as_of,
        settings.close_grace,
        lambda done, total: progress("closing", done, total),
        settings.close_chunk,
    )
    step(f"closed {period}: {result.close.invoices} invoices")
    async with raw_connection(engine) as conn:
        for org in DEMO_ORGS:
            result.balances[org] = await org_balances.balances(conn, org, period)
            invoice = await invoices.invoice(conn, org, period)
            if invoice is not None:
                result.invoices[org] = invoice
    result.verification = await verify(engine)
    result.api_key, _ = await create_key(
        bootstrap.api_key_store(engine), Role.auditor, None, "demo auditor", None
    )
    step(f"auditor API key {result.api_key.id} created")
    return result
