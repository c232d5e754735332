"""``tally bench api``: the read side at ledger scale, in a throwaway database.

Untimed, the scratch database is filled with bulk SQL (no consumer): ``lines`` entry lines
in balanced two-line usage entries (debit usage, credit allowance, in ``api_request`` or
``ai_token``) of ``orgs`` organizations over ``periods`` months, posted in id order through
each month; then the rollups are computed from the lines, as migration 0008 does. The
fill checks what it promises: every entry balances per unit, and (with ``--verify``) the
rollups are what ``tally ledger verify`` recomputes. Its hash chain is a placeholder (the
bench reads, it never verifies the chain).

Then the clock runs on the read side's four targets: an account's balance as of a random
instant (p50/p99), a period's trial balance (p50/max), the first page of an
organization's entries (p50/p99), and the GL export of the fullest period streamed as
CSV (lines per second, and the growth of the process's peak memory while it streams);
with ``--http``, that export again through a real ``tally serve`` (its memory watched).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import resource
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters.postgres import databases
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import balances, cursors, entries, gl_export, trial_balance
from tally.adapters.postgres.verification import Verification, check_rollups
from tally.adapters.tabular import StreamFormat
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.access import Role
from tally.domain.pagination import DEFAULT_LIMIT
from tally.domain.period import period_bounds
from tally.service_layer.api_keys import create_key

Step = Callable[[str], None]
AppOf = Callable[[AsyncEngine], Any]  # the HTTP app on an engine (an ASGI app)
FIRST_PERIOD = (2026, 1)
UNITS = ("api_request", "ai_token")
KINDS = ("usage", "allowance")

# Account ids are arithmetic: ((org * periods + period) * 2 + unit) * 2 + kind + 1.
ACCOUNTS = """
INSERT INTO account (id, code, owner, period, unit, kind)
SELECT ((o * $2 + p) * 2 + u) * 2 + k + 1,
       'org/' || org || '/' || per || '/' || ($3::text[])[u + 1] || '/' || ($4::text[])[k + 1],
       org, per, ($3::text[])[u + 1], ($4::text[])[k + 1]
  FROM generate_series(0, $1 - 1) o, generate_series(0, $2 - 1) p,
       generate_series(0, 1) u, generate_series(0, 1) k,
       LATERAL (SELECT 'bench' || lpad(o::text, 5, '0') AS org,
                       to_char(make_date($5, $6, 1) + make_interval(months => p::int),
                               'YYYY-MM') AS per) n"""

# Entry i (0-based) of n: period i * periods / n, posted through that month in id order.
ENTRIES = """
INSERT INTO journal_entry (id, idempotency_key, kind, org, period, posted_at, lane, seq,
                           prev_hash, hash)
SELECT i + 1, 'bench:' || i, 'usage', 'bench' || lpad((i % $2)::text, 5, '0'),
       to_char(start, 'YYYY-MM'),
       start + (start + interval '1 month' - start) * ((i - first) / per::float8),
       i % 16 + 1, i / 16 + 1, '\\x00'::bytea, sha256(int8send(i))
  FROM generate_series(0, $1::bigint - 1) i,
       LATERAL (SELECT i * $3 / $1 AS p) pp,
       LATERAL (SELECT make_timestamptz($4, $5, 1, 0, 0, 0, 'UTC')
                       + make_interval(months => pp.p::int) AS start,
                       (pp.p * $1 + $3 - 1) / $3 AS first,
                       ((pp.p + 1) * $1 + $3 - 1) / $3 - (pp.p * $1 + $3 - 1) / $3 AS per) t"""

# Each lane's head at its last entry's seq, so a later posting (`tally bench --template`
# drains into a kept fill) continues the lanes; the hashes stay placeholders.
LANE_HEADS = """
UPDATE ledger_lane l SET seq = m.seq
  FROM (SELECT lane, max(seq) AS seq FROM journal_entry GROUP BY lane) m
 WHERE l.lane = m.lane"""

LINES = """
INSERT INTO entry_line (entry_id, account_id, amount)
SELECT i + 1, ((i % $2 * $3 + i * $3 / $1) * 2 + u) * 2 + k + 1,
       CASE WHEN k = 0 THEN q ELSE -q END
  FROM generate_series(0, $1::bigint - 1) i,
       LATERAL (SELECT (i / $2) % 2 AS u) uu,
       LATERAL (SELECT CASE WHEN uu.u = 0 THEN (1 + i * 7919 % 500)::numeric
                            ELSE (i * 31 % 100000)::numeric / 1000 END AS q) qq,
       generate_series(0, 1) k"""

ROLLUPS = (
    """INSERT INTO account_day
       SELECT l.account_id, (e.posted_at AT TIME ZONE 'UTC')::date,
              sum(greatest(l.amount, 0)), sum(greatest(-l.amount, 0)), count(*),
              min(e.id), max(e.id)
         FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id GROUP BY 1, 2""",
    """INSERT INTO account_period
       SELECT l.account_id, e.period, sum(greatest(l.amount, 0)),
              sum(greatest(-l.amount, 0)), count(*)
         FROM entry_line l JOIN journal_entry e ON e.id = l.entry_id GROUP BY 1, 2""",
)


@dataclass
class ApiBenchResult:
    lines: int
    entries: int
    accounts: int
    orgs: int
    periods: int
    fill_seconds: float
    balance_as_of_p50_ms: float
    balance_as_of_p99_ms: float
    trial_balance_p50_ms: float
    trial_balance_max_ms: float
    trial_balance_accounts: int
    trial_balance_period: str
    entries_first_page_p50_ms: float
    entries_first_page_p99_ms: float
    export_period: str
    export_lines: int
    export_seconds: float
    export_lines_per_second: float
    export_peak_rss_growth_mb: float
    # --http: the same export through `tally serve` (CSV over HTTP, read by a client here)
    http_export_lines_per_second: float | None = None
    http_export_server_rss_growth_mb: float | None = None  # the server process's, peak
    # the trial balance as an auditor gets it: GET /v1/trial-balance (JSON), in process
    http_trial_balance_p50_ms: float | None = None
    http_trial_balance_max_ms: float | None = None


async def check_balanced(conn: asyncpg.Connection, step: Step) -> None:
    """What a fill promises (its triggers were off): every entry balances per unit."""
    step("checking every entry balances")
    unbalanced = await conn.fetchval(
        """SELECT count(*) FROM (SELECT 1 FROM entry_line l
             JOIN account a ON a.id = l.account_id
            GROUP BY l.entry_id, a.unit HAVING sum(l.amount) <> 0) bad"""
    )
    if unbalanced:
        raise AssertionError(f"the fill left {unbalanced} unbalanced entries")


def _ms(samples: list[float], quantile: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000, 3)


async def _timed(samples: list[float], work: Any) -> Any:
    started = time.perf_counter()
    result = await work
    samples.append(time.perf_counter() - started)
    return result


class WatchedNull:
    """Where the timed export goes: never kept (so memory shows the stream alone), with
    the process's peak resident memory sampled every 50 writes."""

    def __init__(self) -> None:
        self.start_rss = self.peak_rss = _rss()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes % 50 == 0:
            self.peak_rss = max(self.peak_rss, _rss())
        return len(text)


class ApiBench:
    """A scratch database filled with ``lines`` entry lines; dropped on exit."""

    def __init__(
        self,
        settings: Settings,
        urls: ServiceUrls,
        lines: int,
        orgs: int,
        periods: int,
        keep: bool = False,
        filled: str | None = None,
    ) -> None:
        """``keep``: leave the scratch database for later runs; ``filled``: the URL of one
        so kept, measured again without a fill (its size read from it)."""
        if lines < 2 * orgs * 2 or lines % 2:
            raise ValueError("--lines must be even and at least four per organization")
        self.settings, self.base_urls = settings, urls
        self.lines, self.orgs, self.periods = lines, orgs, periods
        self.entries = lines // 2
        self.keep, self.filled = keep, filled

    async def __aenter__(self) -> Self:
        if self.filled is not None:
            self.database = self.filled
            await self._read_size()
            return self
        self.database = await databases.create_scratch(self.base_urls.database, "tally_bench_api")
        await bootstrap.migrate(
            self.settings, ServiceUrls(self.database, self.base_urls.redis, False)
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.keep and self.filled is None:
            await databases.drop(self.database)

    async def _read_size(self) -> None:
        """A kept database's size, as its fill made it (two lines an entry)."""
        conn = await asyncpg.connect(databases.dsn(self.database))
        try:
            self.entries = await conn.fetchval("SELECT coalesce(max(id), 0) FROM journal_entry")
            self.lines = 2 * self.entries
            self.orgs = await conn.fetchval("SELECT count(*) FROM organization")
            self.periods = await conn.fetchval("SELECT count(DISTINCT period) FROM account")
        finally:
            await conn.close()

    async def fill(self, step: Step) -> float:
        """Untimed for the figures: the ledger, balanced, with its rollups. Returns seconds."""
        started = time.perf_counter()
        conn = await asyncpg.connect(databases.dsn(self.database))
        try:
            year, month = FIRST_PERIOD
            async with conn.transaction():
                # The checks run once, after the fill, not per statement and row (superuser).
                replica = await conn.fetchval(
                    "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
                )
                if replica:
                    await conn.execute("SET LOCAL session_replication_role = replica")
                step(f"accounts of {self.orgs} organizations over {self.periods} months")
                await conn.execute(
                    ACCOUNTS, self.orgs, self.periods, list(UNITS), list(KINDS), year, month
                )
                await conn.execute(
                    "INSERT INTO organization (name, currency) SELECT DISTINCT owner, 'USD'"
                    " FROM account"
                )
                step(f"{self.entries} entries")
                await conn.execute(ENTRIES, self.entries, self.orgs, self.periods, year, month)
                await conn.execute(LANE_HEADS)
                step(f"{self.lines} lines")
                await conn.execute(LINES, self.entries, self.orgs, self.periods)
                step("rollups by day and by period")
                for statement in ROLLUPS:
                    await conn.execute(statement)
            await conn.execute("SELECT setval('journal_entry_id_seq', $1)", self.entries)
            await conn.execute("SELECT setval('account_id_seq', (SELECT max(id) FROM account))")
            await check_balanced(conn, step)
            step("ANALYZE")
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()
        return time.perf_counter() - started

    async def rollup_findings(self) -> list[str]:
        """What ``tally ledger verify`` says of the rollups (a full pass over the lines)."""
        result = Verification()
        conn = await asyncpg.connect(databases.dsn(self.database))
        try:
            await check_rollups(conn, result)
        finally:
            await conn.close()
        return [finding.detail for finding in result.findings]

    async def measure(self, fill_seconds: float, step: Step, samples: int = 1000) -> ApiBenchResult:
        rng = random.Random(7)
        engine = bootstrap.engine(self.database, owner=True)
        try:
            async with raw_connection(engine) as conn:
                accounts = await conn.fetch("SELECT code, period FROM account ORDER BY id")
                step(f"balance as of a random instant, {samples} times")
                timings: list[float] = []
                for _ in range(samples):
                    account = rng.choice(accounts)
                    start, end = period_bounds(account["period"])
                    instant = start + (end - start) * rng.random() * 1.2  # some after the month
                    await _timed(timings, balances.balance_totals(conn, account["code"], instant))
                balance_figures = (_ms(timings, 0.5), _ms(timings, 0.99))

                periods = sorted({row["period"] for row in accounts})
                step(f"trial balance of {periods[-1]}, 5 times")
                timings = []
                for _ in range(5):  # the document the API answers
                    found = json.loads(
                        await _timed(timings, trial_balance.trial_balance_json(conn, periods[-1]))
                    )
                assert found["balanced"], "the trial balance does not balance"
                tb_figures = (_ms(timings, 0.5), round(max(timings) * 1000, 3))
                tb_accounts = len(found["rows"])

                step(f"first page of an organization's entries, {samples // 5} times")
                timings = []
                orgs = sorted({row["code"].split("/")[1] for row in accounts})
                signing = await cursors(conn)  # as the API does: once
                for _ in range(samples // 5):
                    filters = entries.EntryFilter(org=rng.choice(orgs))
                    page = entries.entry_listing(filters).page(conn, signing, None, DEFAULT_LIMIT)
                    await _timed(timings, page)
                entry_figures = (_ms(timings, 0.5), _ms(timings, 0.99))

                period = periods[len(periods) // 2]
                step(f"GL export of {period} (ADS GL Detail, CSV)")
                export = await self._export(conn, period)
        finally:
            await engine.dispose()
        lines, seconds, rate, growth = export
        return ApiBenchResult(
            lines=self.lines,
            entries=self.entries,
            accounts=len(accounts),
            orgs=self.orgs,
            periods=self.periods,
            fill_seconds=round(fill_seconds, 1),
            balance_as_of_p50_ms=balance_figures[0],
            balance_as_of_p99_ms=balance_figures[1],
            trial_balance_p50_ms=tb_figures[0],
            trial_balance_max_ms=tb_figures[1],
            trial_balance_accounts=tb_accounts,
            trial_balance_period=periods[-1],
            entries_first_page_p50_ms=entry_figures[0],
            entries_first_page_p99_ms=entry_figures[1],
            export_period=period,
            export_lines=lines,
            export_seconds=seconds,
            export_lines_per_second=rate,
            export_peak_rss_growth_mb=growth,
        )

    async def _export(
        self, conn: asyncpg.Connection, period: str
    ) -> tuple[int, float, float, float]:
        """(lines, seconds, lines per second, growth of resident memory in MB), as
        ``tally ledger export`` writes the CSV."""
        sink = WatchedNull()
        started = time.perf_counter()
        written = await gl_export.write_gl_detail(conn, period, sink, StreamFormat.csv)
        seconds = time.perf_counter() - started
        sink.peak_rss = max(sink.peak_rss, _rss())
        return (
            written,
            round(seconds, 3),
            round(written / seconds, 1),
            round((sink.peak_rss - sink.start_rss) / 1e6, 1),
        )

    async def _auditor_secret(self) -> str:
        """A new auditor key's secret, made in the scratch database."""
        engine = bootstrap.engine(self.database, owner=True)
        try:
            key, _ = await create_key(
                bootstrap.api_key_store(engine), Role.auditor, None, "bench api", None
            )
        finally:
            await engine.dispose()
        return key.secret

    async def trial_balance_over_http(
        self, app_of: AppOf, period: str, step: Step, runs: int = 5
    ) -> tuple[float, float]:
        """``GET /v1/trial-balance`` of ``period`` through the HTTP app in process (``app_of``:
        tools sit below the entrypoints), as an auditor's key: (p50, max) in ms."""
        secret = await self._auditor_secret()
        reader = bootstrap.reader_engine(self.database)  # as `tally serve` reads
        try:
            transport = httpx.ASGITransport(app=app_of(reader))
            async with httpx.AsyncClient(
                transport=transport,
                base_url="http://bench",
                headers={"Authorization": f"Bearer {secret}"},
            ) as client:
                step(f"trial balance of {period} over HTTP, {runs} times")
                timings: list[float] = []
                for _ in range(runs + 1):  # the first warms the pool
                    started = time.perf_counter()
                    answer = await client.get("/v1/trial-balance", params={"period": period})
                    timings.append(time.perf_counter() - started)
                    if answer.status_code != 200 or not answer.json()["balanced"]:
                        raise RuntimeError(f"/v1/trial-balance answered {answer.status_code}")
        finally:
            await reader.dispose()
        return _ms(timings[1:], 0.5), round(max(timings[1:]) * 1000, 3)

    async def export_over_http(self, period: str, step: Step) -> tuple[float, float]:
        """The GL export of ``period`` through a real ``tally serve`` on this database, read
        as a client would: (lines per second, growth of the server's resident memory, MB)."""
        secret = await self._auditor_secret()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        server = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tally.entrypoints.cli",
            "serve",
            "--port",
            str(port),
            env={**os.environ, "TALLY_DATABASE_URL": self.database},
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{port}", timeout=600
            ) as client:
                step("tally serve starting")
                while True:
                    try:
                        if (await client.get("/v1/health")).status_code == 200:
                            break
                    except httpx.TransportError:
                        if server.returncode is not None:
                            raise RuntimeError("tally serve exited") from None
                    await asyncio.sleep(0.1)
                step(f"GL export of {period} over HTTP (CSV)")
                start_rss = peak_rss = _rss(server.pid)
                lines = 0
                started = time.perf_counter()
                async with client.stream(
                    "GET",
                    "/v1/gl-export",
                    params={"period": period, "format": "csv"},
                    headers={"Authorization": f"Bearer {secret}"},
                ) as answer:
                    answer.raise_for_status()
                    async for chunk in answer.aiter_bytes():  # ~64 KB each
                        lines += chunk.count(b"\n")
                        peak_rss = max(peak_rss, _rss(server.pid))
                seconds = time.perf_counter() - started
        finally:
            server.terminate()
            await server.wait()
        return round((lines - 1) / seconds, 1), round((peak_rss - start_rss) / 1e6, 1)


def _rss(pid: int | str = "self") -> int:
    """A process's resident memory now, in bytes (Linux)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()
