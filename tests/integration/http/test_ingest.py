"""Usage events over HTTP: what the official CloudEvents SDK sends in each mode is metered;
a retry is a duplicate counted once; what is not JSON or not a CloudEvent, or comes from
another source, is refused whole with nothing written; the size and rate limits hold."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from fastapi import FastAPI
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import make_key
from support.ledger_support import api, drain, urls_of
from tally import bootstrap
from tally.adapters.postgres import sources
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings
from tally.domain.access import Role
from tally.entrypoints.http.app import create_app
from tally.service_layer.api_keys import create_key

SOURCE = "crm-sync"
STRUCTURED = {"content-type": "application/cloudevents+json"}
BATCH = {"content-type": "application/cloudevents-batch+json"}
BINARY = {"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "b",
          "ce-source": SOURCE, "ce-type": "api.request"}  # fmt: skip


def sdk_event(event_id: str, count: int = 1, source: str = SOURCE) -> CloudEvent:
    return CloudEvent(
        attributes={
            "type": "api.request",
            "source": source,
            "id": event_id,
            "subject": "acme",
            "time": datetime(2026, 10, 15, 12, tzinfo=UTC),
            "datacontenttype": "application/json",
        },
        data=json.loads(api(event_id, count=count))["data"],
    )


class Gateway:
    def __init__(self, app: FastAPI, client: httpx.AsyncClient, key: str) -> None:
        self.app = app
        self.client = client
        self.auth = {"authorization": f"Bearer {key}"}

    async def send(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return await self.client.post("/v1/events", content=body, headers=headers | self.auth)


async def open_gateway(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Gateway]:
    await sources.add(engine, SOURCE, None)
    key, _ = await create_key(
        bootstrap.api_key_store(engine), Role.producer, None, None, None, SOURCE
    )
    app = create_app(engine, settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://tally") as client:
        yield Gateway(app, client, key.secret)
    if app.state.producer is not None:
        await app.state.producer.aclose()


@pytest.fixture
async def gateway(engine: AsyncEngine, settings: Settings) -> AsyncIterator[Gateway]:
    async for opened in open_gateway(engine, settings):
        yield opened


async def stored(engine: AsyncEngine) -> dict[str, Any]:
    async with raw_connection(engine) as conn:
        events = {
            row["id"]: (row["status"], row["quantity"])
            for row in await conn.fetch("SELECT id, status, quantity FROM usage_event")
        }
        duplicates = await conn.fetchval("SELECT count(*) FROM duplicate_delivery")
        letters = await conn.fetchval("SELECT count(*) FROM dead_letter")
    return {"events": events, "duplicates": duplicates, "dead_letters": letters}


async def stream_length(settings: Settings) -> int:
    client = aioredis.from_url(urls_of(settings).redis)
    try:
        return int(await client.xlen(settings.stream))
    finally:
        await client.aclose()


async def test_events_the_cloudevents_sdk_sends_in_each_mode_are_metered(
    gateway: Gateway, engine: AsyncEngine, settings: Settings
) -> None:
    structured = to_structured(sdk_event("s1", 3), JSONFormat())
    binary = to_binary(sdk_event("b1", 5), JSONFormat())
    batch = b"[" + b",".join(JSONFormat().write(sdk_event(f"m{n}", 7)) for n in range(3)) + b"]"
    answers = [
        await gateway.send(structured.body, structured.headers),
        await gateway.send(binary.body, binary.headers),
        await gateway.send(batch, BATCH),
    ]
    assert [a.status_code for a in answers] == [202, 202, 202], [a.text for a in answers]
    assert answers[2].json()["accepted"] == 3
    assert [(e["source"], e["id"]) for e in answers[2].json()["events"]] == [
        (SOURCE, "m0"), (SOURCE, "m1"), (SOURCE, "m2")
    ]  # fmt: skip
    assert answers[0].json()["events"][0]["stream"] == settings.stream

    await drain(settings)
    assert (await stored(engine))["events"] == {
        "s1": ("metered", 3), "b1": ("metered", 5), "m0": ("metered", 7),
        "m1": ("metered", 7), "m2": ("metered", 7),
    }  # fmt: skip


async def test_sending_the_same_request_again_is_a_duplicate_counted_once(
    gateway: Gateway, engine: AsyncEngine, settings: Settings
) -> None:
    binary = to_binary(sdk_event("again", 2), JSONFormat())
    first = await gateway.send(binary.body, binary.headers)
    second = await gateway.send(binary.body, binary.headers)  # the client retried
    assert first.status_code == second.status_code == 202
    await drain(settings)
    assert await stored(engine) == {
        "events": {"again": ("metered", 2)},
        "duplicates": 1,
        "dead_letters": 0,
    }


async def test_a_producer_voids_its_own_event_over_http_and_an_auditor_sees_it_voided(
    gateway: Gateway, engine: AsyncEngine, settings: Settings
) -> None:
    sent = to_structured(sdk_event("wrong", 40), JSONFormat())
    assert (await gateway.send(sent.body, sent.headers)).status_code == 202
    await drain(settings)
    correction = CloudEvent(
        attributes={"type": "tally.void", "source": SOURCE, "id": "void-1", "subject": "acme",
                    "time": datetime(2026, 10, 16, tzinfo=UTC)},
        data={"source": SOURCE, "id": "wrong", "reason": "count was 10x"},
    )  # fmt: skip
    voided = to_binary(correction, JSONFormat())
    assert (await gateway.send(voided.body, voided.headers)).status_code == 202
    await drain(settings)

    auditor = {"authorization": f"Bearer {await make_key(engine, Role.auditor)}"}
    story = (await gateway.client.get(f"/v1/events/{SOURCE}/wrong", headers=auditor)).json()
    assert story["status"] == "voided"
    assert story["void"]["reason"] == "count was 10x"
    assert story["void"]["asked_by"] == {"source": SOURCE, "id": "void-1"}
    assert story["void"]["reversal"]["kind"] == "usage_reversal"
    asked = (await gateway.client.get(f"/v1/events/{SOURCE}/void-1", headers=auditor)).json()
    assert asked["status"] == "correction" and asked["void"]["id"] == "wrong"


async def test_what_is_not_a_cloudevent_is_refused_whole_and_nothing_is_written(
    gateway: Gateway, engine: AsyncEngine, settings: Settings
) -> None:
    good = JSONFormat().write(sdk_event("fine"))
    no_id = json.dumps({k: v for k, v in json.loads(good).items() if k != "id"}).encode()
    cases: list[tuple[bytes, dict[str, str], int, str]] = [
        (b"not json", STRUCTURED, 400, "malformed_json"),
        (b"[1, 2]", STRUCTURED, 400, "malformed_json"),
        (no_id, STRUCTURED, 400, "not_a_cloudevent"),
        (good.replace(b'"1.0"', b'"0.3"'), STRUCTURED, 400, "not_a_cloudevent"),
        (good[:-1] + b', "subject": "globex"}', STRUCTURED, 400, "malformed_json"),  # twice
        (good, {"content-type": "text/plain"}, 400, "not_a_cloudevent"),
        (b"[" + good + b", " + no_id + b"]", BATCH, 400, "not_a_cloudevent"),
        (b"[" + good + b"] trailing", BATCH, 400, "malformed_json"),
        (b"[]", BATCH, 400, "empty_batch"),
        (b"[" + b",".join([good] * 1001) + b"]", BATCH, 400, "too_many_events"),
        (JSONFormat().write(sdk_event("x", source="other")), STRUCTURED, 403, "forbidden"),
        (b"count=1", {"ce-specversion": "1.0", "ce-id": "t", "ce-source": SOURCE,
                      "ce-type": "api.request", "content-type": "text/plain"}, 400, "not_json"),
        (b'{"a":1},"subject":"globex"', BINARY, 400, "malformed_json"),  # not one value
        (b'{"a":1}\x0b', BINARY, 400, "malformed_json"),
        (b"{}", BINARY | {"ce-id": "a%FF"}, 400, "not_a_cloudevent"),  # not UTF-8
        (b"{}", BINARY | {"ce-Bad_Name": "x"}, 400, "not_a_cloudevent"),
        (b"[" + good + b",]", BATCH, 400, "malformed_json"),  # a trailing comma
    ]  # fmt: skip
    for body, headers, status, code in cases:
        answer = await gateway.send(body, headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code), (body[:80], answer)
    batch = await gateway.send(b"[" + good + b", " + no_id + b"]", BATCH)
    assert batch.json()["errors"] == [
        {"index": 1, "code": "not_a_cloudevent", "message": batch.json()["errors"][0]["message"]}
    ]
    assert "event 1" in batch.json()["errors"][0]["message"]
    many = await gateway.send(b"[" + b",".join([no_id] * 400) + b"]", BATCH)
    assert len(many.json()["errors"]) == 100 and "400 of 400 events refused" in many.text
    twice = await gateway.client.post(  # the same attribute twice: which would count?
        "/v1/events",
        content=b"{}",
        headers=[*BINARY.items(), ("ce-subject", "acme"), ("ce-subject", "globex"),
                 *gateway.auth.items()],
    )  # fmt: skip
    assert (twice.status_code, twice.json()["code"]) == (400, "not_a_cloudevent"), twice.text
    assert "ce-subject is sent twice" in twice.json()["message"]
    assert await stream_length(settings) == 0  # nothing of any of them was written


async def test_the_body_size_and_the_keys_event_budget_are_limited(
    engine: AsyncEngine, settings: Settings
) -> None:
    tight = settings.model_copy(
        update={"ingest_max_body_bytes": 2048, "ingest_events_per_s": 1, "ingest_burst": 2}
    )
    async for gateway in open_gateway(engine, tight):
        big = JSONFormat().write(sdk_event("big"))[:-1] + b', "pad": "' + b"x" * 4000 + b'"}'
        too_big = await gateway.send(big, STRUCTURED)
        assert (too_big.status_code, too_big.json()["code"]) == (413, "too_large")

        async def chunks(part: bytes = big[:1000]) -> AsyncIterator[bytes]:  # no Content-Length
            for _ in range(10):
                yield part

        chunked = await gateway.client.post(
            "/v1/events", content=chunks(), headers=STRUCTURED | gateway.auth
        )
        assert (chunked.status_code, chunked.json()["code"]) == (413, "too_large")
        sent = [
            await gateway.send(JSONFormat().write(sdk_event(f"r{n}")), STRUCTURED) for n in range(3)
        ]
        assert [a.status_code for a in sent] == [202, 202, 429]
        assert int(sent[2].headers["retry-after"]) >= 1
        assert await stream_length(tight) == 2


async def test_a_key_bills_only_the_organizations_its_source_may_bill(
    gateway: Gateway, engine: AsyncEngine, settings: Settings
) -> None:
    await sources.add(engine, "narrow", ["acme"])
    key, _ = await create_key(
        bootstrap.api_key_store(engine), Role.producer, None, None, None, "narrow"
    )
    auth = {"authorization": f"Bearer {key.secret}"}
    event = json.loads(JSONFormat().write(sdk_event("n1", source="narrow")))
    sent = []
    for subject in ("globex", "acme"):
        body = json.dumps(event | {"subject": subject}).encode()
        sent.append(
            await gateway.client.post("/v1/events", content=body, headers=STRUCTURED | auth)
        )
    assert sent[0].status_code == 403 and "may not bill organization 'globex'" in sent[0].text
    assert sent[1].status_code == 202
    await sources.remove(engine, "narrow")  # a removed source's key sends nothing more
    again = await gateway.client.post("/v1/events", content=body, headers=STRUCTURED | auth)
    assert again.status_code == 403 and "unknown source" in again.text
    assert await stream_length(settings) == 1


async def test_only_a_producer_key_sends_and_it_reads_nothing(
    gateway: Gateway, engine: AsyncEngine
) -> None:
    auditor = {"authorization": f"Bearer {await make_key(engine, Role.auditor)}"}
    body = JSONFormat().write(sdk_event("a1"))
    refused = await gateway.client.post("/v1/events", content=body, headers=STRUCTURED | auditor)
    assert (refused.status_code, refused.json()["code"]) == (403, "forbidden")
    read = await gateway.client.get("/v1/invoices", headers=gateway.auth)
    assert read.status_code == 403


GOOD = JSONFormat().write(sdk_event("good"))
BODIES = st.one_of(
    st.binary(max_size=300),
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
    st.tuples(st.integers(0, len(GOOD)), st.binary(max_size=8)).map(
        lambda cut: GOOD[: cut[0]] + cut[1] + GOOD[cut[0] :]  # a good event, damaged
    ),
)
HEADERS = st.one_of(
    st.just(STRUCTURED),
    st.just(BATCH),
    st.just({"content-type": "application/json", "ce-specversion": "1.0", "ce-id": "h",
             "ce-source": SOURCE, "ce-type": "api.request"}),
    st.dictionaries(st.sampled_from(["content-type", "ce-specversion", "ce-id", "ce-data"]),
                    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30)),
)  # fmt: skip


@examples(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=BODIES, headers=HEADERS)
async def test_no_body_is_a_500_and_a_refused_one_writes_nothing(
    gateway: Gateway, settings: Settings, body: bytes, headers: dict[str, str]
) -> None:
    before = await stream_length(settings)
    answer = await gateway.send(body, headers)
    assert answer.status_code in (202, 400, 403), answer.text
    reply = answer.json()
    if answer.status_code == 202:
        assert await stream_length(settings) == before + reply["accepted"]
    else:
        assert set(reply) <= {"code", "message", "errors"} and reply["message"]
        assert await stream_length(settings) == before
