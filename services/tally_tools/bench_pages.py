"""``tally bench pages``: the pages under ``/ui`` for one organization with 10M events.

The pages never read ``usage_event``: the dashboard reads the ledger's usage accounts, the
daily rollups and the licence reports; the API usage report and its CSV read
``api_usage_daily``; the invoices page reads the invoices. So the scratch database gets,
untimed and in bulk SQL, what ``events`` events of one organization leave behind, over the
three whole months before this one and this month so far (the widest preset's days):

* ``api_usage_daily`` (appended as deltas, then compacted into it and its folds, the spans
  and billable days): 9 events in 10 are API requests, spread over 40 OAuth clients (2 of
  them non-billable) x 150 template URLs (each with its method) a day, every cell with
  status 200 and some with 400 (1 in 10), 429 (1 in 25) and 500 (1 in 50): about 850,000
  rows at 10M events (fewer URLs, then clients, when there are fewer events than cells);
* ``ai_usage_daily``: the other events, over the rate card's 11 AI features every day
  (400 tokens an event for token features, one unit for the others);
* the ledger: usage entries of 50 events each (a consumer batch's share of one
  organization), posted through each month, whose lines add up per period to the billable
  requests and to each feature's tokens of the rollups (so the dashboard's used figures
  agree with its daily charts), with the account rollups; a placeholder hash chain;
* a licence report a day (gc2: 120 named users) through the metering service, and the
  past months closed by the real month close (their invoices).

Then, through the HTTP app in process (``httpx.ASGITransport``) with an org_viewer key made
in the scratch database and the pages' cookie, each page is requested once to warm up (then
``gc.freeze()``, as the app's start-up under ``tally serve``), then ``samples`` times;
the figures are the p50 and p99 of the time to the whole response, in milliseconds.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Self
from urllib.parse import urlencode

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters.postgres import databases, rollups
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import usage_reports
from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.adapters.postgres.ui_sessions import open_session
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.access import Role
from tally.domain.ledger import AI_TOKEN, API_REQUEST, allowance, usage
from tally.domain.period import period_bounds, period_of
from tally.domain.sessions import new_session_id
from tally.service_layer import organizations
from tally.service_layer.api_keys import create_key
from tally.service_layer.month_close import close_period
from tally_tools.bench_api import ROLLUPS, _ms, check_balanced
from tally_tools.loadgen import license_usage_event

Step = Callable[[str], None]
AppOf = Callable[[AsyncEngine], Any]  # an ASGI app
ORG = "bench-org"
SOURCE = "bench-pages"
CLIENTS, NON_BILLABLE_CLIENTS, URLS = 40, 2, 150
EVENTS_PER_ENTRY = 50
TOKENS_PER_TOKEN_EVENT = 400
GRACE = timedelta(hours=24)
MIN_EVENTS = 1000

# One row per (day, client, URL) with status 200, and the error statuses on some cells.
# Each row weighs w; its requests are its share of $1 (floors of running sums: exact total).
# Appended as the metering transaction does, then compacted (daily rows, spans, days).
API_ROLLUP = """
INSERT INTO api_usage_delta (org, day, oauth_client_id, template_uri, method, status,
                             billable, requests)
SELECT $2, day, client, url, method, status, c >= $7, requests
  FROM (SELECT *, floor($1::numeric * sum(w) OVER (ORDER BY n) / sum(w) OVER ())
                  - floor($1::numeric * (sum(w) OVER (ORDER BY n) - w) / sum(w) OVER ())
                  AS requests
          FROM (SELECT row_number() OVER () AS n, d.day, c, 'c-' || lpad(c::text, 2, '0') AS client,
                       '/api/v2/resource' || u || '/{id}' AS url,
                       (ARRAY['GET', 'GET', 'POST', 'PUT', 'DELETE'])[u % 5 + 1] AS method,
                       s.status,
                       CASE WHEN s.status = 200 THEN 20 + (c * 7 + u * 13 + i) % 80
                            ELSE 1 + (c + u + i) % 5 END AS w
                  FROM generate_series(0, $3 - 1) i,
                       LATERAL (SELECT $4::date + i AS day) d,
                       generate_series(0, $5 - 1) c, generate_series(0, $6 - 1) u,
                       LATERAL (SELECT 200 AS status
                                UNION ALL SELECT 400 WHERE (c + u + i) % 10 = 0
                                UNION ALL SELECT 429 WHERE (c + u + i) % 25 = 0
                                UNION ALL SELECT 500 WHERE (c + u + i) % 50 = 0) s) cells
       ) shared
 WHERE requests > 0"""

# Per (day, feature): events spread by weight, as quantity in the feature's unit.
AI_ROLLUP = """
INSERT INTO ai_usage_daily (org, period, day, feature, quantity)
SELECT $2, to_char(day, 'YYYY-MM'), day, feature, events * per_event
  FROM (SELECT *, floor($1::numeric * sum(w) OVER (ORDER BY n) / sum(w) OVER ())
                  - floor($1::numeric * (sum(w) OVER (ORDER BY n) - w) / sum(w) OVER ())
                  AS events
          FROM (SELECT row_number() OVER () AS n, $4::date + i AS day, f.feature,
                       f.per_event, 5 + (i * 3 + f.k * 11) % 20 AS w
                  FROM generate_series(0, $3 - 1) i,
                       unnest($5::text[], $6::numeric[]) WITH ORDINALITY f(feature, per_event, k)
               ) cells
       ) shared
 WHERE events > 0"""

ENTRIES = """
INSERT INTO journal_entry (id, idempotency_key, kind, org, period, rate_card_version,
                           posted_at, lane, seq, prev_hash, hash)
SELECT $1 + i, 'bench-pages:' || $2 || ':' || $3 || ':' || i, 'usage', $4, $2, $5,
       $6::timestamptz + ($7::timestamptz - $6::timestamptz) * ((i + 0.5) / $8),
       ($1 + i) % 16 + 1, ($1 + i) / 16 + 1, '\\x00'::bytea, sha256(int8send($1 + i))
  FROM generate_series(0, $8 - 1) i"""

# An account's period total split over the entries (telescoping: the parts add up to it).
USAGE_LINES = """
INSERT INTO entry_line (entry_id, account_id, amount)
SELECT $1 + i, $2, part
  FROM generate_series(0, $3 - 1) i,
       LATERAL (SELECT trunc($4::numeric * (i + 1) / $3, 12) - trunc($4::numeric * i / $3, 12)
                       AS part) p
 WHERE part <> 0"""

ALLOWANCE_LINES = """
INSERT INTO entry_line (entry_id, account_id, amount)
SELECT entry_id, $3, -sum(amount) FROM entry_line
 WHERE entry_id BETWEEN $1 AND $2 GROUP BY entry_id"""


@dataclass
class PageFigures:
    page: str
    path: str
    status: int
    p50_ms: float
    p99_ms: float


@dataclass
class PagesBenchResult:
    events: int
    api_rollup_rows: int
    ai_rollup_rows: int
    entries: int
    lines: int
    invoices: int
    fill_seconds: float
    samples: int
    pages: list[PageFigures]


def periods_of(first: date, last: date) -> list[str]:
    """The periods from ``first``'s to ``last``'s, in order."""
    found, day = [], first.replace(day=1)
    while day <= last:
        found.append(period_of(datetime(day.year, day.month, 1, tzinfo=UTC)))
        day = (day + timedelta(days=32)).replace(day=1)
    return found


def per_event(unit: str) -> Decimal:
    """An AI event's quantity in its feature's unit."""
    return Decimal(TOKENS_PER_TOKEN_EVENT if unit == "token" else 1)


class PagesBench:
    """A scratch database holding one organization's ``events`` events; dropped on exit."""

    def __init__(self, settings: Settings, urls: ServiceUrls, events: int) -> None:
        if events < MIN_EVENTS:
            raise ValueError(f"--events must be at least {MIN_EVENTS}")
        self.settings, self.base_urls, self.events = settings, urls, events
        self.now = datetime.now(UTC)
        today = self.now.date()
        self.first = (today.replace(day=1) - timedelta(days=80)).replace(day=1)
        self.days = (today - self.first).days + 1  # the three months before, and this one
        self.periods = periods_of(self.first, today)
        self.api_events = events * 9 // 10
        self.ai_events = events - self.api_events

    async def __aenter__(self) -> Self:
        self.database = await databases.create_scratch(self.base_urls.database, "tally_bench_pages")
        self.urls = ServiceUrls(self.database, self.base_urls.redis, False)
        await bootstrap.migrate(self.settings, self.urls)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await databases.drop(self.database)

    async def fill(self, step: Step) -> float:
        """Untimed: the rollups, the ledger, licence reports, closed months. Returns seconds."""
        started = time.perf_counter()
        engine = bootstrap.engine(self.database, owner=True)
        try:
            await organizations.add(bootstrap.database(engine), ORG, "USD")
        finally:
            await engine.dispose()
        conn = await asyncpg.connect(databases.dsn(self.database))
        try:
            async with conn.transaction():
                superuser = "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                if await conn.fetchval(superuser):
                    # The ledger's triggers (balance, chain) are skipped: checked below.
                    await conn.execute("SET LOCAL session_replication_role = replica")
                await self._rollups(conn, step)
                await self._ledger(conn, step)
            await check_balanced(conn, step)
        finally:
            await conn.close()
        await self._licences_and_closes(step)
        conn = await asyncpg.connect(databases.dsn(self.database))
        try:
            step("checking the dashboard's used figures add up to its days")
            await self._consistent(conn)
            step("ANALYZE")
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        return time.perf_counter() - started

    async def _rollups(self, conn: asyncpg.Connection, step: Step) -> None:
        cells_a_day = max(1, self.api_events // self.days)
        clients = max(1, min(CLIENTS, cells_a_day))
        urls = max(1, min(URLS, cells_a_day // clients))
        step(f"api_usage_delta: {self.days} days x {clients} clients x {urls} URLs")
        await conn.execute(
            API_ROLLUP,
            self.api_events, ORG, self.days, self.first, clients, urls,
            min(NON_BILLABLE_CLIENTS, clients - 1),
        )  # fmt: skip
        step("compacting: api_usage_daily, api_usage_span, api_billable_daily")
        await rollups.compact(conn, ORG)
        card = (await load_rate_cards(conn)).in_effect(self.now)
        assert card is not None, "migrate installs the rate cards"
        features = sorted(card.ai.features.items())
        step(f"ai_usage_daily: {self.days} days x {len(features)} features")
        await conn.execute(
            AI_ROLLUP,
            self.ai_events, ORG, self.days, self.first,
            [name for name, _ in features],
            [per_event(conversion.unit) for _, conversion in features],
        )  # fmt: skip

    async def _ledger(self, conn: asyncpg.Connection, step: Step) -> None:
        """Each period's usage entries, adding up to what its rollups hold."""
        cards = await load_rate_cards(conn)
        next_id = 1
        for period in self.periods:
            start, end = period_bounds(period)
            card = cards.in_effect(start)
            assert card is not None, "migrate installs the rate cards"
            requests, events = await conn.fetchrow(
                """SELECT coalesce(sum(requests) FILTER (WHERE billable), 0),
                          coalesce(sum(requests), 0)
                     FROM api_usage_daily WHERE org = $1 AND day >= $2 AND day < $3""",
                ORG, start.date(), end.date(),
            )  # fmt: skip
            quantities = await conn.fetch(
                """SELECT feature, sum(quantity) AS q FROM ai_usage_daily
                    WHERE org = $1 AND period = $2 GROUP BY feature""",
                ORG, period,
            )  # fmt: skip
            tokens = {row["feature"]: card.tokens(row["feature"], row["q"]) for row in quantities}
            ai_events = sum(
                row["q"] / per_event(card.ai.features[row["feature"]].unit) for row in quantities
            )
            posted_until = min(end, self.now)
            for unit, totals, count in (
                (API_REQUEST, {None: Decimal(requests)}, events),
                (AI_TOKEN, {f: t for f, t in tokens.items() if t}, ai_events),
            ):
                total = sum(totals.values(), Decimal(0))
                if not total:
                    continue
                entries = max(1, min(int(count) // EVENTS_PER_ENTRY, int(total)))
                step(f"{period} {unit}: {entries} usage entries")
                await conn.execute(
                    ENTRIES, next_id, period, unit, ORG, card.version, start, posted_until,
                    entries,
                )  # fmt: skip
                for feature, amount in totals.items():
                    account = await self._account(conn, usage(ORG, period, unit, feature))
                    await conn.execute(USAGE_LINES, next_id, account, entries, amount)
                account = await self._account(conn, allowance(ORG, period, unit))
                await conn.execute(ALLOWANCE_LINES, next_id, next_id + entries - 1, account)
                next_id += entries
        step("account rollups by day and by period")
        for statement in ROLLUPS:
            await conn.execute(statement)
        await conn.execute("SELECT setval('journal_entry_id_seq', $1)", next_id)
        await conn.execute(
            """UPDATE ledger_lane g SET seq = e.seq, head_hash = e.hash
                 FROM (SELECT DISTINCT ON (lane) lane, seq, hash FROM journal_entry
                        ORDER BY lane, seq DESC) e
                WHERE g.lane = e.lane"""
        )

    async def _consistent(self, conn: asyncpg.Connection) -> None:
        """This month's ledger usage (the dashboard's "used") equals its daily rollups."""
        tracking = await usage_reports.allocation_tracking(conn, ORG, self.periods[-1], self.now)
        for meter in (tracking.api_requests, tracking.ai_tokens):
            if sum(meter.days, Decimal(0)) != meter.used:
                raise AssertionError(
                    f"{meter.unit}: the ledger holds {meter.used}, the days add up to"
                    f" {sum(meter.days, Decimal(0))}"
                )

    @staticmethod
    async def _account(conn: asyncpg.Connection, account: Any) -> int:
        found: int = await conn.fetchval(
            """INSERT INTO account (code, owner, period, unit, kind, feature)
               VALUES ($1, $2, $3, $4, $5, $6)
               ON CONFLICT (code) DO UPDATE SET code = excluded.code RETURNING id""",
            account.code, account.owner, account.period, account.unit, account.kind,
            account.feature,
        )  # fmt: skip
        return found

    async def _licences_and_closes(self, step: Step) -> None:
        """A gc2 report a day through the metering service; the ended months closed."""
        engine = bootstrap.engine(self.database, owner=True)
        try:
            service = bootstrap.metering_service(engine, self.settings, require_known_sources=False)
            step(f"{self.days} licence reports")
            entries = [
                (f"{n + 1}-0", {b"event": self._licence_report(n)}) for n in range(self.days)
            ]
            await service.process(self.settings.stream, entries)
            for period in self.periods:
                as_of = period_bounds(period)[1] + GRACE
                if as_of <= self.now:
                    step(f"closing {period}")
                    await close_period(bootstrap.database(engine), period, as_of, GRACE)
        finally:
            await engine.dispose()

    def _licence_report(self, n: int) -> bytes:
        day = self.first + timedelta(days=n)
        return license_usage_event(f"lic-{n}", SOURCE, ORG, f"{day}T23:00:00Z", "gc2", "named", 120)

    def paths(self, clients: list[str], urls: list[str]) -> list[tuple[str, str]]:
        """(name, path) of each page timed (a filter picks a middling client and URL)."""
        base = f"/ui/orgs/{ORG}"
        client = clients[len(clients) // 2] if clients else "c-00"
        url = urls[len(urls) // 2] if urls else "GET /"
        last_closed = [p for p in self.periods if period_bounds(p)[1] + GRACE <= self.now]
        pages = [("dashboard", base)]
        pages += [
            (f"api-usage {preset}", f"{base}/api-usage?preset={preset}")
            for preset in (
                "previous-7-days", "previous-30-days", "this-month", "last-month",
                "previous-3-months",
            )
        ]  # fmt: skip
        pages += [
            ("api-usage client filter", f"{base}/api-usage?preset=last-month&client={client}"),
            ("api-usage URL filter", f"{base}/api-usage?{urlencode({'url': url})}"),
            ("api-usage.csv", f"{base}/api-usage.csv?preset=previous-3-months"),
            ("invoices", f"{base}/invoices"),
        ]
        if last_closed:
            pages.append(("invoice", f"{base}/invoices/{last_closed[-1]}"))
        pages.append(
            ("estimator", "/ui/estimate?copilot_users=50&interactions_per_day=2000"
             "&license=gc2&model=named&users=120")
        )  # fmt: skip
        return pages

    async def measure(
        self, app_of: AppOf, cookie: str, fill_seconds: float, step: Step, samples: int
    ) -> PagesBenchResult:
        """``app_of`` makes the HTTP app on an engine, ``cookie`` is the pages' session cookie
        (the entrypoint gives both: tools sit below the entrypoints)."""
        engine = bootstrap.engine(self.database, owner=True)
        reader = bootstrap.reader_engine(self.database)  # as `tally serve` reads
        try:
            key, _ = await create_key(
                bootstrap.api_key_store(engine), Role.org_viewer, ORG, "bench", None
            )
            async with raw_connection(engine) as conn:
                counts = await conn.fetchrow(
                    """SELECT (SELECT count(*) FROM api_usage_daily) AS api,
                              (SELECT count(*) FROM ai_usage_daily) AS ai,
                              (SELECT count(*) FROM journal_entry) AS entries,
                              (SELECT count(*) FROM entry_line) AS lines,
                              (SELECT count(*) FROM invoice) AS invoices"""
                )
                clients = [
                    r["oauth_client_id"]
                    for r in await conn.fetch(
                        "SELECT DISTINCT oauth_client_id FROM api_usage_daily WHERE billable"
                        " ORDER BY 1"
                    )
                ]
                urls = [
                    r["url"]
                    for r in await conn.fetch(
                        "SELECT DISTINCT method || ' ' || template_uri AS url FROM api_usage_daily"
                        " WHERE billable ORDER BY 1"
                    )
                ]
            session = new_session_id()  # signed in as the pages' sign-in form does it
            await open_session(reader, session, key.secret)
            app = app_of(reader)
            figures = []
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://bench", cookies={cookie: session}
            ) as client:
                for name, path in self.paths(clients, urls):
                    step(f"{name}, {samples} times")
                    first = await client.get(path)  # warms the connection pool and templates
                    if first.status_code != 200:
                        raise RuntimeError(f"{path} answered {first.status_code}: {first.text}")
                    gc.freeze()  # as the app's start-up does under `tally serve`
                    timings = []
                    for _ in range(samples):
                        started = time.perf_counter()
                        await client.get(path)
                        timings.append(time.perf_counter() - started)
                    figures.append(
                        PageFigures(
                            name, path, first.status_code, _ms(timings, 0.5), _ms(timings, 0.99)
                        )
                    )
        finally:
            await reader.dispose()
            await engine.dispose()
        return PagesBenchResult(
            events=self.events,
            api_rollup_rows=counts["api"],
            ai_rollup_rows=counts["ai"],
            entries=counts["entries"],
            lines=counts["lines"],
            invoices=counts["invoices"],
            fill_seconds=round(fill_seconds, 1),
            samples=samples,
            pages=figures,
        )
