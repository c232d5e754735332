"""What every command needs: settings, where the services are, an engine, an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.bootstrap import ServiceUrls, service_urls
from tally.config import Settings, get_settings

T = TypeVar("T")


def settings_and_urls() -> tuple[Settings, ServiceUrls]:
    settings = get_settings()
    return settings, service_urls(settings)


@asynccontextmanager
async def engine_for(urls: ServiceUrls) -> AsyncIterator[AsyncEngine]:
    engine = bootstrap.engine(urls.database)
    try:
        yield engine
    finally:
        await engine.dispose()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def with_engine(work: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    """Run ``work`` with an engine on the configured (or embedded) database."""
    _, urls = settings_and_urls()

    async def main() -> T:
        async with engine_for(urls) as engine:
            return await work(engine)

    return run(main())
