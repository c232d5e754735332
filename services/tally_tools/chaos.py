"""``tally chaos``: drain a mix while the consumer is SIGKILLed (and the servers restarted)
at random moments, then check the ledger event by event against what was sent.

Everything runs on private servers started here (``private_servers``): a redis-server
with AOF ``always`` and a PostgreSQL cluster, on free loopback ports, stopped by PID at
the end, Ctrl-C included. The mix (the loadgen default: duplicates and every class of bad
entry) is published first, with each entry's stream id kept; then ``tally consume`` runs
as a real subprocess, one life after another. A life starts, commits a batch (a kill
during start-up tests nothing), lives a random while longer and is SIGKILLed. With
``restart_servers``, some lives also see Redis (SIGTERM or SIGKILL) or PostgreSQL
(``-m fast`` or ``-m immediate``) restarted at a random moment. Three consumer names take
turns, so lives finish their own name's pending entries and claim the others'.

The seed fixes the mix, which lives restart a server and the delay fractions. The delays
are fractions of a window that follows the measured drain rate, so the kills spread over
the whole drain instead of all landing after it (the moments themselves are timing).

After the last kill one consumer drains to idle; then every valid key sent must be stored
once, every bad entry dead-lettered once, every duplicate recorded, each organization's
usage equal to what the generator computed from the events it built, and
``tally ledger verify`` clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg

from tally import bootstrap
from tally.adapters.postgres import databases
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.bootstrap import ServiceUrls
from tally.config import Settings
from tally.domain.period import previous_period
from tally.service_layer import organizations
from tally_tools.bench import PUBLISH_BATCH
from tally_tools.loadgen import LoadEntry, LoadMix, LoadSummary
from tally_tools.private_servers import PrivatePostgres, PrivateRedis

Report = Callable[[str, int, int | None, str], None]
"""Progress: (stage, done, total or None, a note)."""

CONSUMER_NAMES = ("chaos-0", "chaos-1", "chaos-2")
CLAIM_IDLE_MS = 500  # lives claim a dead name's entries quickly
FIRST_WINDOW_S = 0.3  # until a drain rate is measured
MIN_WINDOW_S, MAX_WINDOW_S = 0.02, 3.0
PROGRESS_TIMEOUT_S = 120.0  # a life that acknowledges nothing for this long is a failure


class ChaosError(RuntimeError):
    """The run could not go on (a consumer died by itself, no progress): not a ledger finding."""


@dataclass
class ChaosResult:
    events: int  # stream entries sent
    valid_events: int  # distinct valid keys among them
    metered: int  # usage events stored in PostgreSQL
    duplicates: int  # duplicates sent
    duplicates_recorded: int
    bad: int  # bad entries sent
    dead_lettered: int
    lost: int  # valid keys not stored + bad entries without a dead letter
    doubled: int  # extra dead letters, stored keys or duplicate records beyond what was sent
    totals_checked: int  # organization x meter totals compared
    totals_wrong: list[dict[str, str]]
    conflicts: int
    verify_findings: list[dict[str, str]]
    kills: int
    kills_mid_work: int  # kills before PostgreSQL held a record of every entry sent
    restarts: dict[str, int]
    consumer_lives: int
    batch_size: int
    seed: int
    orgs: int
    final_drain_seconds: float
    wall_seconds: float
    load_average: list[float] = field(default_factory=list)  # 1-minute, at start and end
    ok: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sent:
    """What was published, keyed the way the ledger keeps it. Which delivery of a key is
    stored as the event and which are recorded as duplicates depends on the order the
    lives processed them in, so a key's deliveries are checked together."""

    deliveries: dict[tuple[str, str], set[str]] = field(default_factory=dict)  # key: stream ids
    duplicates: int = 0
    bad: set[str] = field(default_factory=set)  # stream ids
    entries: int = 0


Delivery = tuple[str, str, str]  # (source, id, stream id)


@dataclass
class Comparison:
    metered: int  # keys stored as events
    lost: int  # keys sent and not stored; bad entries without a dead letter
    doubled: int  # records beyond one per entry sent: a delivery or a dead letter twice,
    # or one that matches nothing sent
    duplicates_recorded: int  # re-deliveries of a stored key recorded as duplicates


def compare(
    sent: Sent, events: list[Delivery], repeats: list[Delivery], letters: list[str]
) -> Comparison:
    """The ledger's records (stored events, duplicate deliveries, dead letters' stream
    ids) against what was sent: each entry must be recorded exactly once."""
    stored = {(source, id_) for source, id_, _ in events}
    recorded: dict[tuple[str, str], list[str]] = {}
    for source, id_, stream_id in [*events, *repeats]:
        recorded.setdefault((source, id_), []).append(stream_id)
    right = sum(len(set(ids) & sent.deliveries.get(key, set())) for key, ids in recorded.items())
    lettered = Counter(letters)
    valid = set(sent.deliveries)
    return Comparison(
        metered=len(stored),
        lost=len(valid - stored) + len(sent.bad - set(lettered)),
        doubled=sum(len(ids) for ids in recorded.values())
        - right
        + sum(n - (stream_id in sent.bad) for stream_id, n in lettered.items()),
        duplicates_recorded=right - len(stored & valid),
    )


def chaos_orgs(count: int) -> list[str]:
    return [f"chaos-{i:02d}" for i in range(count)]


def consumer_env(
    urls: ServiceUrls, name: str, batch_size: int, pycache: Path | None = None
) -> dict[str, str]:
    """The consumer's environment: the private servers, none of the caller's TALLY_ settings.

    With ``pycache`` (and no PYTHONPYCACHEPREFIX of the caller's), the lives share compiled
    bytecode there even under PYTHONDONTWRITEBYTECODE: otherwise each of a hundred starts
    compiles every module again (about 4 s of CPU instead of 1.3 s).
    """
    kept = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    if pycache is not None and "PYTHONPYCACHEPREFIX" not in kept:
        kept.pop("PYTHONDONTWRITEBYTECODE", None)
        kept["PYTHONPYCACHEPREFIX"] = str(pycache)
    return kept | {
        "TALLY_DATABASE_URL": urls.database,
        "TALLY_REDIS_URL": urls.redis,
        "TALLY_CONSUMER_NAME": name,
        "TALLY_BATCH_SIZE": str(batch_size),
        "TALLY_CLAIM_IDLE_MS": str(CLAIM_IDLE_MS),
        "PYTHONUNBUFFERED": "1",
    }


def _key(entry: LoadEntry) -> tuple[str, str]:
    assert isinstance(entry.value, bytes)
    body = json.loads(entry.value)
    return body["source"], body["id"]


def record_sent(entries: list[LoadEntry], ids: list[str]) -> Sent:
    sent = Sent(entries=len(ids))
    for entry, stream_id in zip(entries, ids, strict=True):
        if entry.kind == "bad":
            sent.bad.add(stream_id)
            continue
        sent.deliveries.setdefault(_key(entry), set()).add(stream_id)
        sent.duplicates += entry.kind == "duplicate"
    return sent


@contextlib.contextmanager
def _workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="tally-chaos-"))
    os.chmod(path, 0o755)  # the cluster's owner (postgres, when root) must get in
    try:
        yield path
    finally:
        with _no_interrupts():
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """Clean-up runs to its end: a second Ctrl-C (a terminal sends one to the whole
    process group, ``uv run`` may forward another) must not leave servers behind."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class Committed:
    """How many stream entries PostgreSQL holds a record of (stored events, duplicate
    deliveries, dead letters): the drain's progress, whatever Redis's counters say (a
    restart from the AOF leaves the group's ``entries-read`` nil). Waits out a restart."""

    SQL = """SELECT (SELECT count(*) FROM usage_event) + (SELECT count(*) FROM duplicate_delivery)
                  + (SELECT count(*) FROM dead_letter)"""

    def __init__(self, url: str, checkpoint: Callable[[], None]) -> None:
        self.dsn = databases.dsn(url)
        self.checkpoint = checkpoint
        self.conn: asyncpg.Connection | None = None

    async def count(self) -> int:
        while True:
            self.checkpoint()
            try:
                if self.conn is None or self.conn.is_closed():
                    self.conn = await asyncpg.connect(self.dsn, timeout=5)
                return int(await self.conn.fetchval(self.SQL, timeout=10))
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
                await self.close()
                await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await self.conn.close(timeout=2)
            self.conn = None


class Chaos:
    """One run: private servers, the mix, the lives of the consumer, the check."""

    def __init__(
        self,
        kills: int,
        events: int,
        seed: int = 7,
        restart_servers: bool = False,
        batch_size: int = 200,
        orgs: int = 20,
        report: Report | None = None,
    ) -> None:
        self.kills = kills
        self.events = events
        self.seed = seed
        self.restart_servers = restart_servers
        self.batch_size = batch_size
        self.orgs = chaos_orgs(orgs)
        self.period = previous_period(datetime.now(UTC))
        self.report: Report = report or (lambda *_: None)
        self.rng = random.Random(seed)
        self.restarts: Counter[str] = Counter()
        self.kills_done = self.kills_mid_work = self.lives = 0
        self.process: asyncio.subprocess.Process | None = None
        self.log: Path | None = None
        self.pycache: Path | None = None
        self.threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-restart")
        self.restarting: Future[None] | None = None
        self.interrupted = False
        self.batch_seen = asyncio.Event()
        self.reader: asyncio.Task[None] | None = None

    async def run(self) -> ChaosResult:
        """The whole run; a Ctrl-C stops it, the servers and the consumer (KeyboardInterrupt)."""
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        assert task is not None

        def interrupt() -> None:
            self.interrupted = True
            task.cancel()

        # not in the main thread (an embedding program's): its own Ctrl-C handling stays
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            loop.add_signal_handler(signal.SIGINT, interrupt)
        try:
            return await self._run()
        except asyncio.CancelledError:
            if self.interrupted:
                raise KeyboardInterrupt from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    def _checkpoint(self) -> None:
        """A cancellation can be lost inside a library's wait; the flag is not."""
        if self.interrupted:
            raise asyncio.CancelledError

    async def _run(self) -> ChaosResult:
        started = time.monotonic()
        load = [round(os.getloadavg()[0], 2)]
        with _workdir() as workdir:
            self.log = workdir / "consumer.log"
            self.pycache = workdir / "pycache"
            (workdir / "redis").mkdir()
            (workdir / "pg").mkdir()
            os.chmod(workdir / "pg", 0o755)
            self.report("servers", 0, 2, "starting private Redis and PostgreSQL")
            # Started in this thread: a Ctrl-C lands at the next await, once each is known.
            redis_server = PrivateRedis(workdir / "redis")
            redis_server.start()
            postgres: PrivatePostgres | None = None
            try:
                postgres = PrivatePostgres(workdir / "pg")
                postgres.start()
                self.report("servers", 2, 2, "tally migrate, organizations")
                result = await self._run_on(redis_server, postgres)
            finally:
                with _no_interrupts():
                    await self._end_consumer()
                    if self.restarting is not None:  # a restart's thread outlives a cancel
                        with contextlib.suppress(Exception):
                            self.restarting.result(timeout=120)
                    self.threads.shutdown()
                    if postgres is not None:
                        postgres.kill()
                    redis_server.stop(signal.SIGKILL)
        load.append(round(os.getloadavg()[0], 2))
        result.wall_seconds = round(time.monotonic() - started, 2)
        result.load_average = load
        return result

    async def _run_on(self, redis_server: PrivateRedis, postgres: PrivatePostgres) -> ChaosResult:
        database = await databases.create_scratch(postgres.admin_url, "tally_chaos")
        urls = ServiceUrls(database, redis_server.url, embedded=False)
        settings = Settings(database_url=database, redis_url=redis_server.url)
        self._checkpoint()
        await bootstrap.migrate(settings, urls)
        self._checkpoint()
        engine = bootstrap.engine(database)
        try:
            for org in self.orgs:
                await organizations.add(bootstrap.database(engine), org, "USD")
        finally:
            await engine.dispose()

        self.report("servers", 2, 2, f"generating {self.events:,} entries")
        mix = LoadMix(self.orgs, self.period, self.events, seed=self.seed)
        entries = list(mix)
        total = len(entries)
        self.report("publishing", 0, total, "")
        async with bootstrap.producer(
            settings, redis_server.url, batch_size=PUBLISH_BATCH
        ) as producer:
            ids = await producer.publish_all(
                (entry.fields for entry in entries),
                lambda done: self.report("publishing", done, total, ""),
            )
        sent = record_sent(entries, ids)
        self._checkpoint()

        committed = Committed(database, self._checkpoint)
        try:
            await self._lives(committed, urls, redis_server, postgres, sent.entries)
        finally:
            await committed.close()
        self.report("draining", 0, None, "one consumer to idle")
        drained = time.monotonic()
        await self._final_drain(urls)
        final_drain_s = round(time.monotonic() - drained, 2)
        self.report("draining", 1, 1, f"{final_drain_s} s")
        self.report("checking", 0, None, "the ledger against what was sent; tally ledger verify")
        result = await self._check(urls, sent, mix.summary)
        result.final_drain_seconds = final_drain_s
        return result

    # -- the lives of the consumer

    async def _lives(
        self,
        committed: Committed,
        urls: ServiceUrls,
        redis_server: PrivateRedis,
        postgres: PrivatePostgres,
        total: int,
    ) -> None:
        restarting: set[int] = set()
        if self.restart_servers and self.kills:
            count = min(self.kills, max(2, self.kills // 3))
            restarting = set(self.rng.sample(range(self.kills), count))
        rate = 0.0  # entries committed per second of a life after its first batch
        busy_entries = busy_seconds = 0.0
        for life in range(self.kills):
            self._checkpoint()
            self.report("kills", life, self.kills, self._note())
            await self._spawn(urls, CONSUMER_NAMES[life % len(CONSUMER_NAMES)])
            await self._until_first_batch(committed, total)
            progressed_at, then = time.monotonic(), await committed.count()
            target = (total - then) / (self.kills - life)  # entries this life should take on
            window = FIRST_WINDOW_S if rate <= 0 else 2 * target / rate
            window = min(max(window, MIN_WINDOW_S), MAX_WINDOW_S)
            if life in restarting:
                await asyncio.sleep(self.rng.uniform(0, window))
                await self._restart(sum(self.restarts.values()), redis_server, postgres)
                self.report("kills", life, self.kills, self._note())
            await asyncio.sleep(self.rng.uniform(0, window))
            self.kills_mid_work += await committed.count() < total
            await self._kill()
            busy_entries += await committed.count() - then
            busy_seconds += time.monotonic() - progressed_at
            rate = busy_entries / busy_seconds if busy_seconds > 0 else 0.0
        self.report("kills", self.kills, self.kills, self._note())

    def _note(self) -> str:
        restarts = ", ".join(f"{kind} {n}" for kind, n in sorted(self.restarts.items()))
        return f"restarts: {restarts}" if restarts else ""

    async def _restart(
        self, nth: int, redis_server: PrivateRedis, postgres: PrivatePostgres
    ) -> None:
        """Alternately Redis and PostgreSQL; how (clean or a crash) by the seed."""
        if nth % 2 == 0:
            how = self.rng.choice((signal.SIGTERM, signal.SIGKILL))
            self.restarting = self.threads.submit(redis_server.restart, how)
            kind = f"redis {how.name}"
        else:
            mode = self.rng.choice(("fast", "immediate"))
            self.restarting = self.threads.submit(postgres.restart, mode)
            kind = f"postgres {mode}"
        await asyncio.wrap_future(self.restarting)
        self.restarts[kind] += 1

    async def _spawn(self, urls: ServiceUrls, name: str, *args: str) -> None:
        assert self.log is not None
        with self.log.open("ab") as log:
            log.write(f"--- {name} {' '.join(args)}\n".encode())
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "tally.entrypoints.cli",
                "consume",
                *args,
                env=consumer_env(urls, name, self.batch_size, self.pycache),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                start_new_session=True,  # a Ctrl-C is ours to handle: we kill it
            )
        self.lives += 1
        self.batch_seen.clear()
        if not args:  # a life: its batch lines say it committed (and keep the pipe drained)
            assert self.process.stdout is not None
            self.reader = asyncio.create_task(self._read_batches(self.process.stdout))

    async def _read_batches(self, stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            if line.startswith(b"batch of "):
                self.batch_seen.set()

    async def _kill(self) -> None:
        process = self.process
        assert process is not None
        if process.returncode is not None:
            raise ChaosError(self._died(process.returncode))
        process.send_signal(signal.SIGKILL)
        await process.wait()
        if self.reader is not None:
            await self.reader
        self.process = self.reader = None
        self.kills_done += 1

    async def _end_consumer(self) -> None:
        """Whatever happens (Ctrl-C too), no consumer outlives the run."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)
            await self.process.wait()
        if self.reader is not None:
            self.reader.cancel()
        self.process = self.reader = None

    def _died(self, code: int) -> str:
        tail = self.log.read_text(errors="replace")[-3000:] if self.log else ""
        return f"the consumer exited by itself with code {code}; its log ends:\n{tail}"

    async def _until_first_batch(self, committed: Committed, total: int) -> None:
        """Wait until this life committed a batch (or everything is already committed): a
        kill during start-up tests nothing."""
        deadline = time.monotonic() + PROGRESS_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.returncode is not None:
                raise ChaosError(self._died(self.process.returncode))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.batch_seen.wait(), timeout=0.5)
                return
            if await committed.count() >= total:
                return
        raise ChaosError(f"the consumer committed nothing in {PROGRESS_TIMEOUT_S:.0f} s")

    async def _final_drain(self, urls: ServiceUrls) -> None:
        await self._spawn(urls, "chaos-final", "--until-idle", "--format", "json")
        process = self.process
        assert process is not None
        timeout = max(300.0, self.events / 200)
        try:
            await asyncio.wait_for(process.communicate(), timeout=timeout)
        except TimeoutError as exc:
            raise ChaosError(f"the final drain did not finish in {timeout:.0f} s") from exc
        self.process = None
        if process.returncode != 0:
            raise ChaosError(self._died(process.returncode or 0))

    # -- the check

    async def _check(self, urls: ServiceUrls, sent: Sent, summary: LoadSummary) -> ChaosResult:
        engine = bootstrap.engine(urls.database, owner=True)
        try:
            async with raw_connection(engine) as conn:
                events = await conn.fetch("SELECT source, id, stream_id FROM usage_event")
                repeats = await conn.fetch("SELECT source, id, stream_id FROM duplicate_delivery")
                letters = [
                    row["stream_id"]
                    for row in await conn.fetch("SELECT stream_id FROM dead_letter")
                ]
                conflicts = int(await conn.fetchval("SELECT count(*) FROM event_conflict"))
            totals_wrong, totals_checked = await self._totals(engine, summary)
        finally:
            await engine.dispose()
        seen = compare(
            sent,
            [(row["source"], row["id"], row["stream_id"]) for row in events],
            [(row["source"], row["id"], row["stream_id"]) for row in repeats],
            letters,
        )
        findings = await self._verify(urls)
        result = ChaosResult(
            events=sent.entries,
            valid_events=len(sent.deliveries),
            metered=seen.metered,
            duplicates=sent.duplicates,
            duplicates_recorded=seen.duplicates_recorded,
            bad=len(sent.bad),
            dead_lettered=len(letters),
            lost=seen.lost,
            doubled=seen.doubled,
            totals_checked=totals_checked,
            totals_wrong=totals_wrong,
            conflicts=conflicts,
            verify_findings=findings,
            kills=self.kills_done,
            kills_mid_work=self.kills_mid_work,
            restarts=dict(self.restarts),
            consumer_lives=self.lives,
            batch_size=self.batch_size,
            seed=self.seed,
            orgs=len(self.orgs),
            final_drain_seconds=0.0,
            wall_seconds=0.0,
        )
        result.ok = (
            seen.lost == 0
            and seen.doubled == 0
            and not totals_wrong
            and not findings
            and conflicts == 0
            and seen.metered == len(sent.deliveries)
            and seen.duplicates_recorded == sent.duplicates
        )
        return result

    async def _totals(self, engine: Any, summary: LoadSummary) -> tuple[list[dict[str, str]], int]:
        """Each organization's API requests and AI tokens against the generator's figures."""
        wrong: list[dict[str, str]] = []
        checked = 0
        for org in self.orgs:
            async with raw_connection(engine) as conn:
                rows = await org_balances.balances(conn, org, self.period)
            balances = {row.account: row.balance for row in rows}
            requests = balances.get(f"org/{org}/{self.period}/api_request/usage", Decimal(0))
            tokens = sum(
                (v for k, v in balances.items() if "/ai_token/usage/" in k), start=Decimal(0)
            )
            expected = {
                "api_request": Decimal(summary.billable_requests.get(org, 0)),
                "ai_token": Decimal(summary.ai_tokens.get(org, 0)),
            }
            for meter, found in (("api_request", requests), ("ai_token", tokens)):
                checked += 1
                if found != expected[meter]:
                    wrong.append(
                        {
                            "org": org,
                            "meter": meter,
                            "expected": str(expected[meter]),
                            "ledger": str(found),
                        }
                    )
        return wrong, checked

    async def _verify(self, urls: ServiceUrls) -> list[dict[str, str]]:
        """``tally ledger verify`` as a user runs it: its findings (none when it exits 0)."""
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tally.entrypoints.cli",
            "ledger",
            "verify",
            "--format",
            "json",
            env=consumer_env(urls, "chaos-verify", self.batch_size, self.pycache),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        stdout, stderr = await process.communicate()
        try:
            findings: list[dict[str, str]] = json.loads(stdout)["findings"]
        except (ValueError, KeyError) as exc:
            raise ChaosError(
                f"tally ledger verify exited {process.returncode}: {stderr.decode()[-2000:]}"
            ) from exc
        if process.returncode != 0 and not findings:
            findings = [{"check": "verify", "detail": f"exit code {process.returncode}"}]
        return findings
