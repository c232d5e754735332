"""Fixtures and helpers for tests that need a migrated ledger (registered from conftest)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from decimal import Decimal
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.dead_letters import (
    DeadLetterFilter,
    DeadLetterRow,
    dead_letter_listing,
)
from tally.adapters.postgres.reads.listing import KeyedRow, Listing
from tally.adapters.postgres.reads.org_balances import OrgBalance
from tally.bootstrap import ServiceUrls
from tally.config import Settings, get_settings
from tally.service_layer import organizations
from tally.service_layer.consumer import Consumer
from tally.service_layer.metering import MeteringService

T = TypeVar("T")
R = TypeVar("R", bound=KeyedRow)

ORGS = {"acme": "USD", "globex": "EUR", "initech": "JPY"}


def urls_of(settings: Settings) -> ServiceUrls:
    assert settings.database_url and settings.redis_url
    return ServiceUrls(settings.database_url, settings.redis_url, embedded=False)


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """A migrated ledger with the organizations in ``ORGS``: the test's database is a copy
    of the migrated template (``database_url``); what ``tally migrate`` does in Redis, the
    consumer group, is done here on the test's own stream."""
    client = bootstrap.STREAMS.connect(urls_of(settings).redis)
    try:
        await bootstrap.STREAMS.ensure_group(client, settings.stream, settings.group)
    finally:
        await client.aclose()
    engine = bootstrap.engine(urls_of(settings).database)
    for org, currency in ORGS.items():
        await organizations.add(bootstrap.database(engine), org, currency)
    yield engine
    await engine.dispose()


@pytest.fixture
async def owner(engine: AsyncEngine, settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The migrated ledger as its owner (a superuser here), not as ``tally_writer``: what
    only ``tally migrate`` acts as, and what a tamper test needs."""
    owner = bootstrap.engine(urls_of(settings).database, owner=True)
    yield owner
    await owner.dispose()


@pytest.fixture
def service(engine: AsyncEngine, settings: Settings) -> MeteringService:
    return bootstrap.metering_service(engine, settings, require_known_sources=False)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, stream_key: str) -> Iterator[None]:
    """In-process CLI runs against this test's Redis stream (no database needed)."""
    monkeypatch.setenv("TALLY_DATABASE_URL", "postgresql+asyncpg://unused@127.0.0.1:1/unused")
    monkeypatch.setenv("TALLY_REDIS_URL", redis_url)
    monkeypatch.setenv("TALLY_STREAM", stream_key)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
async def stream(settings: Settings) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(urls_of(settings).redis)
    yield client
    await client.aclose()


def event(
    kind: str,
    event_id: str,
    data: dict[str, Any],
    *,
    org: str = "acme",
    source: str = "test",
    time: str = "2026-10-15T12:00:00Z",
) -> bytes:
    """A wire-contract event, as an integration would XADD it."""
    return json.dumps(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": source,
            "type": kind,
            "time": time,
            "subject": org,
            "data": data,
        }
    ).encode()


def api(
    event_id: str, count: int = 1, kind: str = "integration", status: int = 200, **extra: Any
) -> bytes:
    data = {
        "oauth_client_id": "c-42",
        "method": "GET",
        "template_uri": "/api/v2/users/{userId}",
        "status": status,
        "client_kind": kind,
        "count": count,
    }
    return event("api.request", event_id, data, **extra)


def ai(event_id: str, feature: str, quantity: Any, unit: str, **extra: Any) -> bytes:
    return event(
        "ai.usage", event_id, {"feature": feature, "quantity": quantity, "unit": unit}, **extra
    )


async def drain(settings: Settings, **overrides: Any) -> Consumer:
    """Run a consumer until the group has nothing left; returns it (``totals``)."""
    consumer = bootstrap.consumer(
        settings.model_copy(update=overrides), urls_of(settings), until_idle=True
    )
    await consumer.run()
    return consumer


def balance_map(rows: list[OrgBalance]) -> dict[str, Decimal]:
    return {row.account: row.balance for row in rows}


async def read(engine: AsyncEngine, query: Callable[..., Awaitable[T]], *args: Any) -> T:
    """A query of the read side (it takes a connection first) on one of ``engine``'s."""
    async with raw_connection(engine) as conn:
        return await query(conn, *args)


async def every_row(engine: AsyncEngine, listing: Listing[R]) -> list[R]:
    async with raw_connection(engine) as conn:
        return [row async for row in listing.iter_rows(conn)]


async def dead_letters_of(
    engine: AsyncEngine, include_replayed: bool = False
) -> list[DeadLetterRow]:
    """The dead letters, oldest first (the open ones only, unless ``include_replayed``)."""
    state = None if include_replayed else "open"
    return await every_row(engine, dead_letter_listing(DeadLetterFilter(state=state)))
