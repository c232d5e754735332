"""Engines and raw asyncpg transactions for the batch paths (COPY, array inserts).

The services act as ``TALLY_DATABASE_ROLE`` (``tally_writer``), never as the tables'
owner: PostgreSQL then refuses them what only the owner may do (ALTER, DISABLE TRIGGER,
TRUNCATE, DELETE, UPDATE outside the grants of ``privileges``). When the URL logs in as
the owner (the embedded server, the tests), each connection switches role at start-up;
a deployment logs in as ``tally_writer`` itself (the switch is then a no-op). Only
``tally migrate`` keeps the owner (``owner=True``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tally.config import get_settings


def async_url(url: str) -> str:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def make_engine(
    url: str, *, owner: bool = False, role: str | None = None, **kwargs: Any
) -> AsyncEngine:
    """An engine acting as ``role`` (default: the configured role), or as the login role
    when ``owner``.

    The role is a start-up setting of each connection (``server_settings``), so it holds
    for every pooled connection, survives the pool's reset and ``RESET ROLE``.
    """
    role = None if owner else role or get_settings().database_role
    connect_args = {"server_settings": {"role": role}} if role else {}
    return create_async_engine(
        async_url(url), pool_pre_ping=True, connect_args=connect_args, **kwargs
    )


@asynccontextmanager
async def raw_connection(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """The pooled connection's asyncpg driver connection, for COPY and array parameters."""
    async with engine.connect() as connection:
        fairy = await connection.get_raw_connection()
        driver: asyncpg.Connection = fairy.driver_connection
        yield driver


@asynccontextmanager
async def raw_transaction(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    async with raw_connection(engine) as driver, driver.transaction():
        yield driver
