"""Alerts leave through the outbox: a CloudEvent on the alerts stream, and signed POSTs to
the webhooks (a real HTTP server here), retried with backoff, every attempt logged."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis.asyncio as aioredis
from cloudevents.core.bindings.http import HTTPMessage, from_http_event
from cloudevents.core.formats.json import JSONFormat
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from support.ledger_support import api, drain, event, read, urls_of
from tally import bootstrap
from tally.adapters.alert_feed import GROUP
from tally.adapters.postgres import alert_outbox
from tally.adapters.postgres.reads import alerts as alert_reads
from tally.config import Settings
from tally.domain.alert_delivery import EVENT_TYPE
from tally.service_layer.alert_delivery import DeliveryReport

SECRET = "whsec_" + base64.b64encode(b"a shared secret of 32 bytes ....").decode()
USAGE = [
    event("license.usage", "lic", {"license": "gc2", "model": "named", "users": 1}),
    *(api(f"r{n}", count=10_000) for n in range(9)),  # 90,000 of 110,000: 81 %
]


class Receiver:
    """A webhook endpoint on a free port: answers each POST with the next planned status
    (then 200) and keeps what it got."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver([500]) as receiver:
        yield receiver


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spec_signature(secret: str, headers: dict[str, str], body: bytes) -> str:
    """The Standard Webhooks signature, computed as the spec writes it (no library)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


@pytest.fixture
def quick(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "webhook_retry_first_s": 0.05,
            "webhook_retry_max_s": 0.2,
            "webhook_max_attempts": 3,
            "alerts_poll_s": 0.02,
            "webhook_timeout_s": 2,
            "claim_idle_ms": 200,
        }
    )


async def record_an_alert(settings: Settings, stream: aioredis.Redis) -> None:
    """Usage that takes acme past 80 % of its API allocation."""
    await stream.xadd(settings.stream, {b"event": USAGE[0]})
    await drain(settings)
    for body in USAGE[1:]:
        await stream.xadd(settings.stream, {b"event": body})
    await drain(settings)


async def test_alerts_are_published_and_posted_signed_and_retried_after_a_500(
    engine: AsyncEngine, quick: Settings, stream: aioredis.Redis, receiver: Receiver
) -> None:
    settings = quick
    hook, _ = await alert_outbox.add_webhook(engine, receiver.url, SECRET)
    dead, _ = await alert_outbox.add_webhook(engine, f"http://127.0.0.1:{closed_port()}/", None)
    await record_an_alert(settings, stream)
    (recorded,) = await read(engine, alert_reads.alerts, "acme", "2026-10")
    assert (recorded.meter, recorded.kind, recorded.threshold) == (
        "api_request",
        "used",
        Decimal(80),
    )
    assert recorded.used == 90_000 and recorded.allocation == 110_000

    def counted(result: str) -> float:
        value = REGISTRY.get_sample_value("tally_webhook_deliveries_total", {"result": result})
        return value or 0.0

    before = {result: counted(result) for result in ("delivered", "failed")}
    async with bootstrap.alert_delivery(engine, settings, urls_of(settings)) as delivery:
        report = await delivery.run(until_idle=True, poll_s=settings.alerts_poll_s)
    assert (report.published, report.delivered) == (1, 1)
    assert report.attempts == 2 + 3  # the receiver: 500 then 200; the dead one: 3, given up
    assert counted("delivered") - before["delivered"] == 1  # what an operator's graph shows
    assert counted("failed") - before["failed"] == 4

    # the outbound stream: one CloudEvent 1.0 the SDK reads
    (entry,) = await stream.xrange(settings.alerts_stream)
    published = JSONFormat().read(None, entry[1][b"event"])
    assert published.get_type() == EVENT_TYPE and published.get_source() == "tally"
    assert published.get_subject() == "acme"
    assert published.get_data() == {
        "org": "acme",
        "period": "2026-10",
        "meter": "api_request",
        "kind": "used",
        "threshold_percent": "80",
        "used": "90000",
        "allocation": "110000",
        "projected": "90000",
    }

    # the webhook: the same event twice (the 500, then the retry), each signed per the spec
    assert len(receiver.requests) == 2
    for headers, body in receiver.requests:
        assert headers["webhook-signature"] == spec_signature(SECRET, headers, body)
        Webhook(SECRET).verify(body, headers)  # and as a receiver's library checks it
        posted = from_http_event(HTTPMessage(headers, body))
        assert posted.get_id() == headers["webhook-id"] == published.get_id()
        assert json.loads(body)["data"] == published.get_data()

    (listed,) = await read(engine, alert_reads.alerts, "acme", None)
    assert listed.published_at is not None
    states = {w.webhook: w for w in listed.webhooks}
    assert (states[hook].attempts, states[hook].status_code, states[hook].error) == (
        2,
        200,
        None,
    )
    assert states[hook].next_at is None
    assert states[dead].attempts == 3 and states[dead].next_at is None  # gave up
    assert "ConnectError" in states[dead].error

    # nothing is published or POSTed twice
    async with bootstrap.alert_delivery(engine, settings, urls_of(settings)) as delivery:
        again = await delivery.run(until_idle=True, poll_s=settings.alerts_poll_s)
    assert (again.published, again.attempts) == (0, 0)
    assert len(await stream.xrange(settings.alerts_stream)) == 1


async def test_a_dead_deliverers_entry_is_claimed_and_an_entry_that_is_no_alert_skipped(
    engine: AsyncEngine, quick: Settings, stream: aioredis.Redis
) -> None:
    settings = quick
    with Receiver([]) as receiver:
        await alert_outbox.add_webhook(engine, receiver.url, SECRET)
        await record_an_alert(settings, stream)
        async with bootstrap.alert_delivery(engine, settings, urls_of(settings)) as delivery:
            assert await delivery.step(DeliveryReport())  # published, not POSTed (no reader)
            await stream.xgroup_create(settings.alerts_stream, GROUP, id="0")
            taken = await stream.xreadgroup(GROUP, "dead", {settings.alerts_stream: ">"})
            assert len(taken[0][1]) == 1  # the alert: pending on a deliverer that dies
            for fields in ({b"other": b"x"}, {b"event": b"{not json"}, {b"event": b"{}"}):
                await stream.xadd(settings.alerts_stream, fields)
            report = await delivery.run(until_idle=True, poll_s=settings.alerts_poll_s)
        assert (report.published, report.attempts, report.delivered) == (0, 1, 1)
        assert len(receiver.requests) == 1  # claimed from the dead one: POSTed once
    group = await stream.xinfo_groups(settings.alerts_stream)
    assert [(g["name"], g["pending"]) for g in group] == [(GROUP.encode(), 0)]
    # FastStream's Prometheus middleware counted them in the default registry
    labels = {"app_name": "tally", "broker": "redis", "handler": settings.alerts_stream}
    for name, more, value in (
        ("faststream_received_processed_messages_total", {"status": "acked"}, 1),
        (
            "faststream_received_processed_messages_exceptions_total",
            {"exception_type": "NotAnAlert"},
            3,
        ),
    ):
        assert REGISTRY.get_sample_value(name, {**labels, **more}) == value, name
