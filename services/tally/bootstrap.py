"""The one wiring place: from ``Settings`` to the services' URLs, the engine, the limits,
the metering service and the consumer. Entrypoints, tools and tests build them here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.token_purchases import TokenPurchaseStore
from tally.adapters.postgres.connection import make_engine
from tally.adapters.postgres.token_purchases import PostgresTokenPurchases
from tally.config import ServiceUrls, Settings
from tally.domain.rating import Limits
from tally.service_layer.consumer import Consumer
from tally.service_layer.metering import BatchReport, MeteringService

__all__ = [
    "ServiceUrls",
    "consumer",
    "engine",
    "limits",
    "metering_service",
    "service_urls",
    "token_purchases",
]


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


def engine(urls: ServiceUrls, owner: bool = False) -> AsyncEngine:
    """An engine on the ledger: as ``TALLY_DATABASE_ROLE``, or as the login role (``owner``)."""
    return make_engine(urls.database, owner=owner)


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
    if clock is None:
        return MeteringService(engine, limits(settings), require_known_sources=known)
    return MeteringService(engine, limits(settings), clock=clock, require_known_sources=known)


def consumer(
    settings: Settings,
    urls: ServiceUrls,
    until_idle: bool = False,
    on_batch: Callable[[BatchReport], None] | None = None,
) -> Consumer:
    """The metering consumer, with its own engine and metering service."""
    return Consumer(
        settings,
        urls,
        metering_service(engine(urls), settings),
        until_idle=until_idle,
        on_batch=on_batch,
    )
