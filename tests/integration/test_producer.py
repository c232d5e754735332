"""The producer SDK against a real Redis: wire format, ids, batching, retries, ``tally emit``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from tally.config import get_settings
from tally.domain.events import (
    AiUsageEvent,
    ApiRequestEvent,
    InvalidEvent,
    LicenseUsageEvent,
    VoidEvent,
    parse_event,
)
from tally.sdk.producer import EVENT_FIELD, NotReplicated, UsageProducer

API: dict[str, Any] = {
    "oauth_client_id": "c-42",
    "method": "GET",
    "template_uri": "/api/v2/users/{userId}",
    "status": 200,
    "client_kind": "integration",
}


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    redis = aioredis.Redis.from_url(redis_url)
    yield redis
    await redis.aclose()


async def entries(client: aioredis.Redis, key: str) -> list[tuple[str, dict[bytes, bytes]]]:
    stored = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(key))
    return [(sid.decode(), fields) for sid, fields in stored]


# --- wire format ------------------------------------------------------------------------


async def test_each_method_writes_one_event_field_that_parses(
    client: aioredis.Redis, stream_key: str
) -> None:
    at = datetime(2026, 11, 21, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    async with UsageProducer(client, stream_key, source="crm-sync") as producer:
        api_id = await producer.api_request("acme", **API, count=3, time=at)
        ai_id = await producer.ai_usage(
            "acme", feature="voice_bot", quantity=Decimal("0.1"), unit="minute", user_id="u-1"
        )
        int_id = await producer.ai_usage("acme", feature="messaging", quantity=7, unit="message")
        str_id = await producer.ai_usage(
            "acme", feature="ai_translate", quantity="12.50", unit="minute", source="other"
        )
        named_id = await producer.license_usage("acme", license="gc2", model="named", users=20)
        hourly_id = await producer.license_usage(
            "acme", license="gc1", model="hourly", hours=Decimal("7.25")
        )
        assert producer.pending == 6
    assert producer.pending == 0

    stored = await entries(client, stream_key)
    assert len(stored) == 6
    events = []
    for _, fields in stored:
        assert list(fields) == [EVENT_FIELD.encode()]
        events.append(parse_event(fields[b"event"]))
    api, ai, ai_int, ai_str, named, hourly = events

    assert isinstance(api, ApiRequestEvent)
    assert (api.id, api.source, api.subject, api.specversion) == (api_id, "crm-sync", "acme", "1.0")
    assert api.data.count == 3 and api.data.client_kind == "integration"
    assert api.utc_time == datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    assert json.loads(stored[0][1][b"event"])["time"] == "2026-11-21T08:00:00Z"

    assert isinstance(ai, AiUsageEvent) and ai.id == ai_id
    assert ai.data.quantity == Decimal("0.1") and ai.data.user_id == "u-1"
    # decimals travel as exact strings, ints as JSON numbers
    assert json.loads(stored[1][1][b"event"])["data"]["quantity"] == "0.1"
    assert json.loads(stored[2][1][b"event"])["data"]["quantity"] == 7
    assert isinstance(ai_int, AiUsageEvent) and ai_int.id == int_id
    assert isinstance(ai_str, AiUsageEvent) and ai_str.id == str_id
    assert ai_str.source == "other" and ai_str.data.quantity == Decimal("12.50")

    assert isinstance(named, LicenseUsageEvent) and named.id == named_id
    assert named.data.users == 20 and named.data.hours is None
    assert isinstance(hourly, LicenseUsageEvent) and hourly.id == hourly_id
    assert hourly.data.hours == Decimal("7.25")

    # default time: now, UTC, with Z
    raw_time = json.loads(stored[1][1][b"event"])["time"]
    assert raw_time.endswith("Z")
    assert abs(ai.utc_time - datetime.now(UTC)) < timedelta(minutes=1)


async def test_void_writes_a_correction_of_the_producers_own_event(
    client: aioredis.Redis, stream_key: str
) -> None:
    async with UsageProducer(client, stream_key, source="crm-sync") as producer:
        void_id = await producer.void("acme", "01JD-wrong", reason="count was 10x")
        with pytest.raises(InvalidEvent, match="reason"):
            await producer.void("acme", "01JD-wrong", reason="")
    [(_, fields)] = await entries(client, stream_key)
    event = parse_event(fields[b"event"])
    assert isinstance(event, VoidEvent) and event.id == void_id
    assert (event.source, event.subject, event.data.source, event.data.id) == (
        "crm-sync",
        "acme",
        "crm-sync",
        "01JD-wrong",
    )
    assert event.data.reason == "count was 10x"


async def test_a_bad_call_fails_at_the_caller_and_queues_nothing(
    client: aioredis.Redis, stream_key: str
) -> None:
    producer = UsageProducer(client, stream_key)
    with pytest.raises(InvalidEvent, match="method"):
        await producer.api_request("acme", **{**API, "method": "FETCH"})
    with pytest.raises(InvalidEvent, match="count"):
        await producer.api_request("acme", **API, count=0)
    with pytest.raises(InvalidEvent, match="quantity"):
        await producer.ai_usage("acme", feature="voice_bot", quantity="-1", unit="minute")
    with pytest.raises(InvalidEvent, match="quantity"):
        await producer.ai_usage("acme", feature="voice_bot", quantity="NaN", unit="minute")
    with pytest.raises(TypeError, match="float"):
        await producer.ai_usage("acme", feature="voice_bot", quantity=0.1, unit="minute")  # type: ignore[arg-type]
    with pytest.raises(InvalidEvent, match="hours"):
        await producer.license_usage("acme", license="gc1", model="hourly", users=3)
    with pytest.raises(ValueError, match="timezone"):
        await producer.api_request("acme", **API, time=datetime(2026, 11, 1))
    assert producer.pending == 0
    assert await producer.flush() == []
    assert await client.exists(stream_key) == 0


async def test_explicit_id_and_source_are_kept(client: aioredis.Redis, stream_key: str) -> None:
    async with UsageProducer(client, stream_key) as producer:
        assert await producer.api_request("acme", **API, id="evt-1", source="billing") == "evt-1"
    ((_, fields),) = await entries(client, stream_key)
    event = parse_event(fields[b"event"])
    assert (event.source, event.id) == ("billing", "evt-1")


# --- ids --------------------------------------------------------------------------------


async def test_producer_ids_are_uuid7_and_increase(client: aioredis.Redis, stream_key: str) -> None:
    async with UsageProducer(client, stream_key, batch_size=100) as producer:
        ids = [await producer.api_request("acme", **API) for _ in range(500)]
    assert ids == sorted(ids) and len(set(ids)) == 500
    assert all(uuid.UUID(i).version == 7 for i in ids)
    stored = [parse_event(f[b"event"]).id for _, f in await entries(client, stream_key)]
    assert stored == ids


# --- batching ---------------------------------------------------------------------------


async def test_queue_is_sent_when_full_and_on_exit(client: aioredis.Redis, stream_key: str) -> None:
    async with UsageProducer(client, stream_key, batch_size=10) as producer:
        for _ in range(25):
            await producer.api_request("acme", **API)
        assert await client.xlen(stream_key) == 20
        assert producer.pending == 5
        assert producer.sent == 20
    assert await client.xlen(stream_key) == 25
    assert producer.last_stream_id == (await entries(client, stream_key))[-1][0]


async def test_flush_returns_stream_ids_in_order(client: aioredis.Redis, stream_key: str) -> None:
    producer = UsageProducer(client, stream_key, batch_size=1000)
    ids = [await producer.api_request("acme", **API) for _ in range(30)]
    stream_ids = await producer.flush()
    stored = await entries(client, stream_key)
    assert stream_ids == [sid for sid, _ in stored]
    assert [parse_event(f[b"event"]).id for _, f in stored] == ids


async def test_producer_from_url_owns_its_client(redis_url: str, stream_key: str) -> None:
    producer = UsageProducer(redis_url, stream_key)
    async with producer:
        await producer.license_usage("acme", license="communicate", model="named", users=4)
    check = aioredis.Redis.from_url(redis_url)
    try:
        assert await check.xlen(stream_key) == 1
    finally:
        await check.aclose()


async def test_stream_defaults_to_tally_usage_whatever_the_settings(
    client: aioredis.Redis, monkeypatch: pytest.MonkeyPatch, stream_key: str
) -> None:
    """The SDK reads none of the server's settings: the stream is an argument."""
    monkeypatch.setenv("TALLY_STREAM", stream_key)
    get_settings.cache_clear()
    try:
        assert UsageProducer(client).stream == "tally:usage"
        assert UsageProducer(client, stream_key).stream == stream_key
    finally:
        get_settings.cache_clear()


# --- shards ----------------------------------------------------------------------------


@pytest.fixture
async def shard_keys(client: aioredis.Redis, stream_key: str) -> AsyncIterator[list[str]]:
    keys = [f"{stream_key}:{{{n}}}" for n in range(4)]
    yield keys
    await client.delete(*keys)  # one server: no slots to respect


async def test_with_shards_each_event_goes_to_its_subjects_shard(
    client: aioredis.Redis, stream_key: str, shard_keys: list[str]
) -> None:
    """acme is on shard 0 of 4, globex on 3 (the README's vectors); a raw entry goes by
    its event's subject, and one without a readable subject to shard 0."""
    async with UsageProducer(client, stream_key, shards=4) as producer:
        acme = await producer.api_request("acme", **API)
        globex = await producer.api_request("globex", **API)
        raw = json.dumps(
            {
                "specversion": "1.0",
                "id": "raw-1",
                "source": "crm-sync",
                "type": "api.request",
                "time": "2026-11-21T10:00:00Z",
                "subject": "globex",
                "data": API,
            }
        ).encode()
        ids = await producer.publish_raw([raw, b"{not json"])
    assert producer.key_of(raw) == shard_keys[3] and producer.key_of(b"{not json") == shard_keys[0]
    on = {
        key: [parse_or_raw(f[b"event"]) for _, f in await entries(client, key)]
        for key in shard_keys
    }
    assert on[shard_keys[0]] == [acme, b"{not json"]
    assert on[shard_keys[3]] == [globex, "raw-1"]
    assert on[shard_keys[1]] == on[shard_keys[2]] == []
    assert len(ids) == 2 and await client.exists(stream_key) == 0


async def test_waiting_for_a_replica_that_does_not_exist_fails_clearly(
    client: aioredis.Redis, stream_key: str
) -> None:
    """WAIT after the batch: a server without replicas never confirms it; the batch stays
    queued (sent again on the next flush), and the error says what was missing."""
    producer = UsageProducer(client, stream_key, wait_replicas=1, wait_timeout_ms=10, max_retries=1)
    await producer.api_request("acme", **API)
    with pytest.raises(NotReplicated, match=r"0 of 1 replica\(s\) took the batch"):
        await producer.flush()
    assert producer.pending == 1 and producer.retries == 1


def parse_or_raw(value: bytes) -> str | bytes:
    try:
        return parse_event(value).id
    except InvalidEvent:
        return value


# --- publish_raw ------------------------------------------------------------------------


async def test_publish_raw_sends_anything_after_the_queue(
    client: aioredis.Redis, stream_key: str
) -> None:
    async with UsageProducer(client, stream_key, batch_size=2) as producer:
        await producer.api_request("acme", **API)
        ids = await producer.publish_raw(
            [b"{not json", "a str", {"payload": b"x"}, {b"event": b"{}", b"extra": b"1"}]
        )
    stored = await entries(client, stream_key)
    assert len(stored) == 5
    assert [sid for sid, _ in stored[1:]] == ids
    parse_event(stored[0][1][b"event"])  # the queued event went first
    assert [fields for _, fields in stored[1:]] == [
        {b"event": b"{not json"},
        {b"event": b"a str"},
        {b"payload": b"x"},
        {b"event": b"{}", b"extra": b"1"},
    ]


# --- retries ----------------------------------------------------------------------------


class FlakyPipeline(Pipeline):
    owner: FlakyRedis

    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        owner = self.owner
        owner.executes += 1
        # XADD key * field value …: what this attempt sends
        owner.attempts.append(
            [dict(zip(args[3::2], args[4::2], strict=True)) for args, _ in self.command_stack]
        )
        if owner.fail_before:
            owner.fail_before -= 1
            await self.reset()  # type: ignore[no-untyped-call]
            raise RedisConnectionError("simulated: connection lost before sending")
        replies = await super().execute(raise_on_error)
        if owner.fail_after:
            owner.fail_after -= 1
            raise RedisConnectionError("simulated: connection lost before the replies")
        return replies


class FlakyRedis(aioredis.Redis):
    """A real client whose pipelines fail on their first executions."""

    fail_before = 0
    fail_after = 0
    executes = 0

    def __init__(self, url: str) -> None:
        pool = aioredis.ConnectionPool.from_url(url)
        super().__init__(connection_pool=pool)
        self.attempts: list[list[dict[Any, Any]]] = []

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        pipe = FlakyPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.owner = self
        return pipe


@pytest.fixture
async def flaky(redis_url: str) -> AsyncIterator[FlakyRedis]:
    redis = FlakyRedis(redis_url)
    yield redis
    await redis.aclose(close_connection_pool=True)


def _sent_events(attempt: list[dict[Any, Any]]) -> list[bytes]:
    return [next(iter(fields.values())) for fields in attempt]


async def test_retry_after_a_failed_send_resends_the_same_bytes(
    flaky: FlakyRedis, client: aioredis.Redis, stream_key: str
) -> None:
    flaky.fail_before = 1
    async with UsageProducer(flaky, stream_key, backoff=0.001) as producer:
        ids = [await producer.api_request("acme", **API) for _ in range(50)]
    assert flaky.executes == 2 and producer.retries == 1
    first, second = flaky.attempts
    assert _sent_events(first) == _sent_events(second)
    stored = await entries(client, stream_key)
    assert [f[b"event"] for _, f in stored] == _sent_events(first)
    assert [parse_event(f[b"event"]).id for _, f in stored] == ids


async def test_retry_after_lost_replies_duplicates_with_the_same_ids(
    flaky: FlakyRedis, client: aioredis.Redis, stream_key: str
) -> None:
    flaky.fail_after = 1
    async with UsageProducer(flaky, stream_key, backoff=0.001) as producer:
        ids = [
            await producer.ai_usage("acme", feature="social", quantity=3, unit="post")
            for _ in range(20)
        ]
    stored = [f[b"event"] for _, f in await entries(client, stream_key)]
    assert len(stored) == 40  # sent twice: the consumer dedupes on (source, id)
    assert stored[:20] == stored[20:]
    keys = [(e.source, e.id) for e in map(parse_event, stored)]
    assert sorted(set(keys)) == sorted((producer.source, i) for i in ids)


async def test_exhausted_retries_raise_and_keep_the_entries_queued(
    flaky: FlakyRedis, client: aioredis.Redis, stream_key: str
) -> None:
    flaky.fail_before = 2
    producer = UsageProducer(flaky, stream_key, max_retries=1, backoff=0.001)
    ids = [await producer.api_request("acme", **API) for _ in range(5)]
    with pytest.raises(RedisConnectionError):
        await producer.flush()
    assert producer.pending == 5
    assert await client.exists(stream_key) == 0
    await producer.flush()  # a later flush sends the very same events
    assert producer.pending == 0
    stored = [parse_event(f[b"event"]).id for _, f in await entries(client, stream_key)]
    assert stored == ids
    assert len({tuple(_sent_events(a)) for a in flaky.attempts}) == 1


# --- tally emit -------------------------------------------------------------------------


def _cli() -> Any:
    from tally.entrypoints.cli import app

    return app


def _xrange(redis_url: str, key: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    import redis

    with redis.Redis.from_url(redis_url) as sync:
        return list(sync.xrange(key))


EVENT = {
    "specversion": "1.0",
    "id": "emit-1",
    "source": "cli-test",
    "type": "api.request",
    "time": "2026-11-21T10:00:00Z",
    "subject": "acme",
    "data": API,
}


def test_emit_publishes_one_valid_event(cli_env: Any, redis_url: str, stream_key: str) -> None:
    runner = CliRunner()
    result = runner.invoke(_cli(), ["emit", json.dumps(EVENT)])
    assert result.exit_code == 0, result.output
    ((sid, fields),) = _xrange(redis_url, stream_key)
    assert result.stdout.strip() == sid.decode()
    assert parse_event(fields[b"event"]).id == "emit-1"

    result = runner.invoke(_cli(), ["emit", "--format", "json"], input=json.dumps(EVENT) + "\n")
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["valid"] is True and answer["id"] == "emit-1"
    assert len(_xrange(redis_url, stream_key)) == 2


def test_emit_refuses_an_invalid_event_unless_forced(
    cli_env: Any, redis_url: str, stream_key: str
) -> None:
    runner = CliRunner()
    bad = json.dumps({**EVENT, "data": {**API, "status": "200"}})
    result = runner.invoke(_cli(), ["emit", bad])
    assert result.exit_code == 2
    assert "invalid event" in result.stderr and "status" in result.stderr
    assert _xrange(redis_url, stream_key) == []

    result = runner.invoke(_cli(), ["emit", "{oops"])
    assert result.exit_code == 2 and "malformed JSON" in result.stderr

    result = runner.invoke(_cli(), ["emit", "--force", bad])
    assert result.exit_code == 0, result.output
    ((sid, fields),) = _xrange(redis_url, stream_key)
    assert result.stdout.strip() == sid.decode()
    assert fields == {b"event": bad.encode()}
