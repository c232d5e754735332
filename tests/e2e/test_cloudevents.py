"""Events made by the official CloudEvents SDK (structured mode), XADDed unchanged: every
valid one is metered, the ones Tally cannot take are dead-lettered with a reason."""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v03.event import CloudEvent as CloudEvent03
from cloudevents.core.v1.event import CloudEvent
from sqlalchemy.ext.asyncio import AsyncEngine

from support.cli import tally_all
from support.ledger_support import api, balance_map, dead_letters_of, drain, read
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.reads import org_balances
from tally.config import Settings
from tally.service_layer.metering import MeteringService

TIME = datetime(2026, 10, 15, 12, tzinfo=UTC)
DATA = {
    "oauth_client_id": "c-42",
    "method": "GET",
    "template_uri": "/api/v2/users/{userId}",
    "status": 200,
    "client_kind": "integration",
}
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def sdk_body(event_id: str, count: int, **attributes: Any) -> bytes:
    """The body the SDK sends in structured mode, as an integration would XADD it."""
    event = CloudEvent(
        {
            "type": "api.request",
            "source": "crm-sync",
            "id": event_id,
            "subject": "acme",
            "time": TIME,
            **attributes,
        },
        {**DATA, "count": count},
    )
    message = to_structured_event(event)
    assert message.headers["content-type"] == "application/cloudevents+json"
    return message.body


def renamed(body: bytes, old: str, new: str) -> bytes:
    """An SDK event with an attribute the SDK itself would refuse to name."""
    return body.replace(f'"{old}":'.encode(), f'"{new}":'.encode())


async def test_sdk_events_are_metered_and_what_cloudevents_or_tally_cannot_take_is_refused(
    engine: AsyncEngine, stream: aioredis.Redis, settings: Settings
) -> None:
    valid = [
        sdk_body("trace", 1, traceparent=TRACEPARENT),
        sdk_body("schema", 2, dataschema="https://schemas.example.com/api.request/v1.json"),
        sdk_body("charset", 4, datacontenttype="application/json; charset=utf-8"),
        sdk_body("typed", 8, sampled=True, sequence=7, expiry=datetime(2026, 12, 1, tzinfo=UTC)),
    ]
    binary = CloudEvent(
        {"type": "api.request", "source": "crm-sync", "subject": "acme", "time": TIME}, b"\x00"
    )
    old_spec = CloudEvent03(
        {"type": "api.request", "source": "crm-sync", "subject": "acme", "time": TIME},
        {**DATA, "count": 16},
    )
    refused = {
        "data_base64: binary data is not accepted": to_structured_event(binary).body,
        "specversion: Input should be '1.0'": to_structured_event(old_spec).body,
        "'Traceparent' is not a CloudEvents attribute name": renamed(
            sdk_body("upper", 32, traceparent=TRACEPARENT), "traceparent", "Traceparent"
        ),
        "'trace-parent' is not a CloudEvents attribute name": renamed(
            sdk_body("dash", 32, traceparent=TRACEPARENT), "traceparent", "trace-parent"
        ),
        "'text/plain' is not JSON": sdk_body("text", 32, datacontenttype="text/plain"),
    }
    for body in (*valid, *refused.values()):
        await stream.xadd(settings.stream, {b"event": body})

    consumer = await drain(settings)
    assert (consumer.totals["metered"], consumer.totals["rejected"]) == (4, 5)
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances["org/acme/2026-10/api_request/usage"] == 1 + 2 + 4 + 8
    letters = await dead_letters_of(engine)
    for reason, letter in zip(refused, letters, strict=True):
        assert reason in letter.reason, letter.reason

    story = await read(engine, event_reads.event_story, "crm-sync", "typed")
    assert story and story.attributes == {
        "sampled": True,
        "sequence": 7,
        "expiry": "2026-12-01T00:00:00Z",
    }
    assert json.loads(story.event.payload) == json.loads(valid[3])  # kept as sent


async def test_ids_are_compared_code_point_by_code_point_without_normalization(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """``café`` composed (NFC) and decomposed (NFD) look alike but are two keys."""
    composed, decomposed = "caf\u00e9", unicodedata.normalize("NFD", "caf\u00e9")
    assert composed != decomposed and unicodedata.normalize("NFC", decomposed) == composed
    report = await service.process(
        "s",
        [
            ("1-0", [(b"event", api(composed, count=3))]),
            ("2-0", [(b"event", api(decomposed, count=5))]),
            ("3-0", [(b"event", api(composed, count=3, source=unicodedata.normalize("NFD", "é")))]),
            ("4-0", [(b"event", api(composed, count=3, source="\u00e9"))]),
        ],
    )
    assert report.counts["metered"] == 4 and not report.counts["duplicate"]
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert balances["org/acme/2026-10/api_request/usage"] == 3 + 5 + 3 + 3


async def test_events_show_lists_the_optional_attributes_and_extensions(
    engine: AsyncEngine, service: MeteringService, settings: Settings
) -> None:
    body = sdk_body(
        "shown", 1, traceparent=TRACEPARENT, dataschema="urn:example:usage:v1", sampled=True
    )
    await service.process("s", [("1-0", [(b"event", body)])])
    as_json, as_table = await tally_all(
        settings,
        ["events", "show", "crm-sync", "shown", "--format", "json"],
        ["events", "show", "crm-sync", "shown"],
    )
    assert as_json.json()["attributes"] == {
        "traceparent": TRACEPARENT,
        "dataschema": "urn:example:usage:v1",
        "sampled": True,
    }
    assert as_table.code == 0, as_table
    for shown in ("optional attributes and extensions", "traceparent", TRACEPARENT, "sampled"):
        assert shown in as_table.stdout, as_table
