"""Where the services are: the configured URLs, or embedded servers started on demand."""

from __future__ import annotations

from dataclasses import dataclass

from tally.config import Settings


@dataclass(frozen=True)
class ServiceUrls:
    database: str  # postgresql+asyncpg://…
    redis: str  # redis://… or unix://…
    embedded: bool


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
