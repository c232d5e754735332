"""What every command needs: settings, where the services are, an engine, an event loop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import cursors
from tally.adapters.postgres.reads.listing import KeyedRow, Paged
from tally.bootstrap import ServiceUrls, service_urls
from tally.config import Settings, get_settings
from tally.domain.pagination import BadCursor, Page
from tally.entrypoints.cli.rendering import fail

T = TypeVar("T")
R = TypeVar("R", bound=KeyedRow)


def settings_and_urls() -> tuple[Settings, ServiceUrls]:
    settings = get_settings()
    return settings, service_urls(settings)


@asynccontextmanager
async def engine_for(urls: ServiceUrls, owner: bool = False) -> AsyncIterator[AsyncEngine]:
    engine = bootstrap.engine(urls.database, owner=owner)
    try:
        yield engine
    finally:
        await engine.dispose()


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def with_engine(work: Callable[[AsyncEngine], Awaitable[T]], owner: bool = False) -> T:
    """Run ``work`` with an engine on the configured (or embedded) database, acting as
    tally_writer (``owner``: as the login role, which must own the schema, as migrate)."""
    _, urls = settings_and_urls()

    async def main() -> T:
        async with engine_for(urls, owner) as engine:
            return await work(engine)

    return run(main())


def with_connection(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """Run a read (``tally.adapters.postgres.reads``) on one connection to the configured
    (or embedded) database."""

    async def on_connection(engine: AsyncEngine) -> T:
        async with raw_connection(engine) as conn:
            return await work(conn)

    return with_engine(on_connection)


def read_page(listing: Paged[R], after: str | None, limit: int) -> Page[R]:
    """A page of a list of the read side, as the API reads it; a cursor this list did not
    give out is a usage error (exit 2)."""

    async def read(conn: asyncpg.Connection) -> Page[R]:
        return await listing.page(conn, await cursors(conn), after, limit)

    try:
        return with_connection(read)
    except BadCursor as exc:
        raise fail(str(exc), 2) from exc


async def all_rows(conn: asyncpg.Connection, listing: Paged[R]) -> list[dict[str, Any]]:
    """Every row of a list (a few: the invoices of a period), as the table and JSON print
    them."""
    return [row.model_dump() async for row in listing.iter_rows(conn)]
