"""What an operator watches: a consumer's Prometheus metrics agree with the ledger, its lag
gauge falls to 0, JSON log lines, and traces that link a batch to its producers."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import threading
from collections import Counter
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import CLI, env_for, tally, xadd_like_an_integration
from support.ledger_support import ORGS, api, drain, urls_of
from tally.adapters import embedded
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.telemetry import logs, tracing
from tally.config import Settings
from tally.entrypoints.http.app import create_app
from tally.sdk.producer import UsageProducer
from tally_tools.loadgen import LoadMix

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(scraped: Samples, name: str, **labels: str) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


async def ledger_counts(engine: AsyncEngine) -> Counter[tuple[str, str]]:
    """What the ledger holds, as (outcome, code) like ``tally_events_total``."""
    counts: Counter[tuple[str, str]] = Counter()
    async with raw_connection(engine) as conn:
        for row in await conn.fetch("SELECT status, count(*) FROM usage_event GROUP BY 1"):
            counts[(row[0], "")] = row[1]
        for row in await conn.fetch("SELECT code, count(*) FROM dead_letter GROUP BY 1"):
            counts[("rejected", row[0])] = row[1]
        counts[("duplicate", "")] = await conn.fetchval("SELECT count(*) FROM duplicate_delivery")
        conflicts = await conn.fetchval("SELECT count(*) FROM event_conflict")
        if conflicts:
            counts[("conflict", "")] = conflicts
    return +counts


async def test_a_consumers_metrics_agree_with_the_ledger_and_its_lag_falls_to_zero(
    engine: AsyncEngine, settings: Settings
) -> None:
    mix = LoadMix(list(ORGS), "2026-10", 20_000, seed=5, duplicates=0.02, bad=0.02)
    async with UsageProducer(urls_of(settings).redis, settings.stream) as producer:
        await producer.publish_raw([entry.fields for entry in mix])
    port = embedded.free_port()
    env = env_for(settings) | {
        "TALLY_METRICS_PORT": str(port),
        "TALLY_METRICS_INTERVAL_S": "0.1",
        "TALLY_BATCH_SIZE": "1000",  # several batches: the lag is seen going down
    }
    consumer = await asyncio.create_subprocess_exec(
        *CLI, "consume", env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    lags: list[float] = []
    bad = sum(mix.summary.bad.values())
    where = {"stream": settings.stream, "group": settings.group}
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for _ in range(6000):  # a guard against a hang, not a timing (0.05 s a look)
                assert consumer.returncode is None, "the consumer exited"
                try:
                    answer = await client.get(f"http://127.0.0.1:{port}/metrics")
                except httpx.TransportError:
                    await asyncio.sleep(0.05)  # not listening yet
                    continue
                scraped = samples(answer.text)
                lag = value(scraped, "tally_stream_lag", **where)
                pending = value(scraped, "tally_stream_pending", **where)
                if lag is not None:
                    lags.append(lag)
                committed = sum(
                    v for (name, _), v in scraped.items() if name == "tally_events_total"
                )
                letters = sum(v for (name, _), v in scraped.items() if name == "tally_dead_letters")
                if (lag, pending, committed, letters) == (0, 0, mix.summary.entries, bad):
                    break  # the gauges read after the last commit (they lag it a little)
                await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"the metrics never matched the drain: {lags[-5:]}")
    finally:
        consumer.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(consumer.communicate(), timeout=60)
    assert consumer.returncode == 0, stderr.decode()[-2000:]

    exposed = Counter(
        {
            (dict(labels)["outcome"], dict(labels)["code"]): int(v)
            for (name, labels), v in scraped.items()
            if name == "tally_events_total" and v
        }
    )
    assert exposed == await ledger_counts(engine)
    rejected = {code for outcome, code in exposed if outcome == "rejected"}
    assert len(rejected) > 5 and "" not in rejected  # the mix's bad entries, by code
    # the backlog was seen, then drained: the gauge went down to 0 and stayed there
    assert max(lags) > 0 and lags[-1] == 0
    assert value(scraped, "tally_stream_drained", **where) == 1
    batches = value(scraped, "tally_batch_entries_count")
    assert batches and batches == value(scraped, "tally_batch_commit_duration_seconds_count")
    assert value(scraped, "tally_batch_entries_sum") == mix.summary.entries
    assert value(scraped, "tally_event_commit_latency_seconds_count") == mix.summary.entries
    open_letters = sum(
        v for (name, labels), v in scraped.items()
        if name == "tally_dead_letters" and ("state", "open") in labels
    )  # fmt: skip
    assert open_letters == bad  # the store's size: every bad entry kept, none replayed


async def test_json_logs_carry_the_batch_and_no_secret(
    engine: AsyncEngine, settings: Settings
) -> None:
    async with UsageProducer(urls_of(settings).redis, settings.stream) as producer:
        await producer.publish_raw([{b"event": api("e1")}, {b"event": api("e2")}])
    env = env_for(settings) | {"TALLY_LOG_FORMAT": "json"}
    run = await tally(settings, "consume", "--until-idle", env=env)
    assert run.code == 0, run
    lines = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    batch = next(line for line in lines if line["message"] == "batch committed")
    assert batch["level"] == "info" and batch["time"].endswith("+00:00")
    assert batch["counts"] == {"metered": 2} and batch["entries"] == 2
    assert not [line for line in run.stderr.splitlines() if not line.startswith("{")]


def test_secrets_never_reach_a_log_line() -> None:
    said = logs.redact(
        "cannot reach postgresql://tally_writer:hunter2@db:5432/tally with key "
        "tally_0123456789ab_SECRETsecretSECRETsecret and webhook whsec_c2VjcmV0IHNpZ25pbmc="
    )
    assert "hunter2" not in said and "SECRET" not in said and "c2Vj" not in said
    assert "postgresql://tally_writer:***@db:5432/tally" in said
    assert "tally_0123456789ab_***" in said
    redis = logs.redact("redis://:s3cret@cache:6379/0 and postgresql://db/x?password=s3cret&a=1")
    assert "s3cret" not in redis and "redis://:***@cache" in redis and "&a=1" in redis


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """Every span this process makes, kept in memory (the OpenTelemetry SDK's exporter)."""
    exporter = InMemorySpanExporter()
    assert tracing.configure("tally-test", exporter)
    return exporter


def flushed(spans: InMemorySpanExporter) -> list[Any]:
    provider: Any = trace.get_tracer_provider()
    provider.force_flush()
    return list(spans.get_finished_spans())


async def test_a_batch_span_links_to_the_traces_of_its_events(
    engine: AsyncEngine, settings: Settings, spans: InMemorySpanExporter
) -> None:
    producer_trace, producer_span = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    traced = json.loads(api("traced"))
    traced["traceparent"] = f"00-{producer_trace}-{producer_span}-01"
    async with UsageProducer(urls_of(settings).redis, settings.stream) as producer:
        await producer.publish_raw(
            [{b"event": json.dumps(traced).encode()}, {b"event": api("untraced")}]
        )
    spans.clear()
    await drain(settings)

    finished = flushed(spans)
    batch = next(s for s in finished if s.name == f"process {settings.stream}")
    assert batch.kind == trace.SpanKind.CONSUMER
    assert (
        dict(batch.attributes).items()
        >= {
            "messaging.system": "redis",
            "messaging.destination.name": settings.stream,
            "messaging.consumer.group.name": settings.group,
            "messaging.batch.message_count": 2,
            "tally.metered": 2,
        }.items()
    )
    assert [
        (format(link.context.trace_id, "032x"), format(link.context.span_id, "016x"))
        for link in batch.links
    ] == [(producer_trace, producer_span)]
    steps = [s for s in finished if s.parent and s.parent.span_id == batch.context.span_id]
    assert sorted(s.name for s in steps) == ["ack", "commit", "rate", "read"]


async def test_api_requests_are_timed_by_route_template_and_traced(
    engine: AsyncEngine, settings: Settings, spans: InMemorySpanExporter
) -> None:
    app = create_app(engine, settings)
    spans.clear()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://tally"
    ) as client:
        assert (await client.get("/v1/invoices/INV-2026-10-000001")).status_code == 401
        await client.get("/asyncapi.json")
        await client.get("/no/such/path/42")
        await client.request("BREW", "/v1/health")  # a method a client made up
        scraped = samples((await client.get("/metrics")).text)
    route = {"method": "GET", "route": "/v1/invoices/{number}", "status": "401"}
    assert (value(scraped, "tally_http_request_duration_seconds_count", **route) or 0) >= 1
    routes = {dict(labels).get("route") for (_, labels) in scraped}
    methods = {dict(labels).get("method") for (_, labels) in scraped}
    assert {"/asyncapi.json", "unmatched"} <= routes and "other" in methods
    assert not {"/no/such/path/42", "/v1/invoices/INV-2026-10-000001"} & routes
    assert "BREW" not in methods  # no label a client chooses
    assert any(s.name.startswith("GET /v1/invoices/{number}") for s in flushed(spans))


class Pushgateway(http.server.BaseHTTPRequestHandler):
    """Keeps what a job pushes (PUT /metrics/job/<job>), as a Pushgateway would take it."""

    pushed: ClassVar[list[tuple[str, str]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"])).decode()
        self.pushed.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_the_close_pushes_its_duration_and_invoices_when_it_ends(settings: Settings) -> None:
    gateway = http.server.HTTPServer(("127.0.0.1", 0), Pushgateway)
    threading.Thread(target=gateway.serve_forever, daemon=True).start()
    try:
        assert (await tally(settings, "migrate")).code == 0
        assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
        env = env_for(settings) | {
            "TALLY_METRICS_PUSHGATEWAY": f"127.0.0.1:{gateway.server_address[1]}"
        }
        await xadd_like_an_integration(settings, api("r1", time="2026-09-15T12:00:00Z"))
        assert (await tally(settings, "consume", "--until-idle")).code == 0
        close = ["close", "--period", "2026-09", "--as-of", "2026-10-02T00:00:00Z"]
        issued = (await tally(settings, *close, "--format", "json", env=env)).json()["issued"]
    finally:
        gateway.shutdown()
    [(path, body)] = Pushgateway.pushed
    assert path == "/metrics/job/tally-close"
    scraped = samples(body)
    assert (value(scraped, "tally_close_last_duration_seconds") or 0) > 0
    assert value(scraped, "tally_close_last_invoices_issued") == issued == 1
    assert (value(scraped, "tally_close_last_success_timestamp_seconds") or 0) > 1.7e9
