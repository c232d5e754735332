"""The producer SDK against a real Redis: wire format, ids, batching, retries, ``tally emit``."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError

from tally.sdk.producer import UUID7Generator, format_uuid7, uuid7

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


# --- ids --------------------------------------------------------------------------------


def test_uuid7_layout() -> None:
    ms = 0x0197_1234_5678
    text = format_uuid7(ms, (1 << 74) - 1)
    value = uuid.UUID(text)
    assert value.version == 7
    assert value.variant == uuid.RFC_4122
    assert value.int >> 80 == ms
    assert text == str(value)


def test_uuid7_ids_are_time_ordered_and_increase() -> None:
    generate = UUID7Generator()
    before = time.time_ns() // 1_000_000
    ids = [generate() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    for text in ids[::1000]:
        value = uuid.UUID(text)
        assert value.version == 7 and value.variant == uuid.RFC_4122
        # many ids per ms push the timestamp ahead a little at most
        assert before <= value.int >> 80 <= after + 50
    assert uuid7() < uuid7()


# --- batching ---------------------------------------------------------------------------


# --- publish_raw ------------------------------------------------------------------------


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
