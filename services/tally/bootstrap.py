"""The one wiring place: from ``Settings`` to the services' URLs, the engine, the limits,
the metering service and the consumer. Entrypoints, tools and tests build them here, and
here the concrete adapters are handed to the service layer's ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters import redis_streams
from tally.adapters.ports.schema import Schema
from tally.adapters.ports.streams import Streams
from tally.adapters.ports.token_purchases import TokenPurchaseStore
from tally.adapters.postgres import schema
from tally.adapters.postgres.alert_outbox import PostgresAlertOutbox
from tally.adapters.postgres.api_keys import PostgresApiKeys
from tally.adapters.postgres.connection import make_engine
from tally.adapters.postgres.privileges import READER
from tally.adapters.postgres.token_purchases import PostgresTokenPurchases
from tally.adapters.postgres.unit_of_work import PostgresDatabase
from tally.adapters.redis_client import is_cluster
from tally.config import ServiceUrls, Settings, get_settings
from tally.domain.alert_delivery import RetryPolicy
from tally.domain.rating import Limits
from tally.sdk.producer import UsageProducer
from tally.service_layer import setup
from tally.service_layer.alert_delivery import AlertDelivery
from tally.service_layer.consumer import Consumer, consumer_name
from tally.service_layer.metering import BatchReport, MeteringService
from tally.service_layer.rating_process import RatingProcess

__all__ = [
    "STREAMS",
    "ServiceUrls",
    "alert_delivery",
    "api_engine",
    "api_key_store",
    "consumer",
    "database",
    "engine",
    "limits",
    "metering_service",
    "migrate",
    "producer",
    "service_urls",
    "token_purchases",
]

STREAMS: Streams = redis_streams  # the stream port's one implementation
SCHEMA: Schema = schema


def service_urls(settings: Settings) -> ServiceUrls:
    """The configured URLs; for any that is unset, the embedded server in ``data_dir``.

    The embedded servers are for trying Tally out, not for production: they run from a
    pip install and keep their data in ``TALLY_DATA_DIR``.
    """
    if settings.database_url and settings.redis_url:
        return ServiceUrls(settings.database_url, settings.redis_url, embedded=False)
    from tally.adapters.embedded import ensure_servers

    database, redis = ensure_servers(
        settings.data_dir, postgres=not settings.database_url, redis=not settings.redis_url
    )
    database = settings.database_url or database
    redis = settings.redis_url or redis
    assert database and redis
    return ServiceUrls(database, redis, embedded=True)


def engine(database: str, owner: bool = False, **kwargs: Any) -> AsyncEngine:
    """An engine on the ``database`` URL: as ``TALLY_DATABASE_ROLE``, or as the login role
    (``owner``); ``kwargs`` go to SQLAlchemy (e.g. ``poolclass``)."""
    return make_engine(database, None if owner else get_settings().database_role, **kwargs)


def database(engine: AsyncEngine) -> PostgresDatabase:
    """The service layer's ``Database`` port on ``engine``."""
    return PostgresDatabase(engine)


def api_engine(settings: Settings, urls: ServiceUrls) -> AsyncEngine:
    """The HTTP API's engine: always acting as ``tally_reader`` (SELECT only), logged in
    through ``TALLY_API_DATABASE_URL`` or switching role on the ledger's URL."""
    return reader_engine(settings.api_database_url or urls.database)


def reader_engine(database: str) -> AsyncEngine:
    """An engine on the ``database`` URL acting as ``tally_reader`` (the API's, and the
    benchmarks' on their scratch databases)."""
    return make_engine(database, role=READER)


def api_key_store(engine: AsyncEngine) -> PostgresApiKeys:
    return PostgresApiKeys(engine)


def token_purchases() -> TokenPurchaseStore:
    """Where ``organizations.buy_tokens`` records purchases: PostgreSQL."""
    return PostgresTokenPurchases()


def limits(settings: Settings) -> Limits:
    return Limits(settings.max_event_bytes, settings.max_future_skew)


def metering_service(
    engine: AsyncEngine,
    settings: Settings,
    clock: Callable[[], datetime] | None = None,
    require_known_sources: bool | None = None,
) -> MeteringService:
    """The metering service with the settings' limits and ``TALLY_REQUIRE_KNOWN_SOURCES``
    (``require_known_sources`` overrides it)."""
    known = (
        settings.require_known_sources if require_known_sources is None else (require_known_sources)
    )
    db = database(engine)
    if clock is None:
        return MeteringService(db, limits(settings), require_known_sources=known)
    return MeteringService(db, limits(settings), clock=clock, require_known_sources=known)


def consumer(
    settings: Settings,
    urls: ServiceUrls,
    until_idle: bool = False,
    on_batch: Callable[[BatchReport], None] | None = None,
    shards: Sequence[int] | None = None,
) -> Consumer:
    """The metering consumer, with its own engine and metering service (rating in a worker
    process when ``TALLY_RATING_PROCESS`` is true), reading ``shards`` (default: all)."""
    service = metering_service(engine(urls.database), settings)
    if settings.rating_process:
        service.rating = RatingProcess()
    return Consumer(
        settings,
        urls,
        service,
        STREAMS,
        until_idle=until_idle,
        on_batch=on_batch,
        shards=shards,
    )


def producer(settings: Settings, redis: str, **options: Any) -> UsageProducer:
    """The SDK's producer on the settings' stream and shards, waiting for replicas as
    ``TALLY_PRODUCER_WAIT_REPLICAS`` says; ``options`` go to ``UsageProducer``."""
    return UsageProducer(
        redis,
        settings.stream,
        shards=settings.stream_shards,
        wait_replicas=settings.producer_wait_replicas,
        wait_timeout_ms=settings.producer_wait_timeout_ms,
        **options,
    )


async def migrate(settings: Settings, urls: ServiceUrls) -> list[str]:
    """``tally migrate`` as the login role (the owner), never as ``TALLY_DATABASE_ROLE``."""
    owner = engine(urls.database, owner=True)
    try:
        return await setup.migrate(settings, urls, SCHEMA, STREAMS, owner)
    finally:
        await owner.dispose()


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        timedelta(seconds=settings.webhook_retry_first_s),
        timedelta(seconds=settings.webhook_retry_max_s),
        settings.webhook_max_attempts,
    )


@asynccontextmanager
async def alert_delivery(
    engine: AsyncEngine, settings: Settings, urls: ServiceUrls
) -> AsyncIterator[AlertDelivery]:
    """The outbox's deliverer: PostgreSQL, the outbound stream and its FastStream reader, an
    HTTP client (closed after)."""
    # httpx, the webhooks' signer and FastStream only here: the other commands start without
    import httpx
    from prometheus_client import REGISTRY

    from tally.adapters.alert_feed import FastStreamAlertFeed
    from tally.adapters.alert_outbound import HttpWebhookSender, RedisAlertStream

    client = redis_streams.connect(urls.redis)
    feed = FastStreamAlertFeed(
        urls.redis,
        settings.alerts_stream,
        consumer_name(settings),
        settings.claim_idle_ms,
        settings.alerts_poll_s,
        cluster=is_cluster(urls.redis),
        metrics=REGISTRY,
    )
    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s) as http:
        try:
            yield AlertDelivery(
                PostgresAlertOutbox(engine),
                RedisAlertStream(client, settings.alerts_stream),
                settings.alerts_stream,
                feed,
                HttpWebhookSender(http),
                retry_policy(settings),
            )
        finally:
            await client.aclose()
