"""Throwaway databases on the configured server: for the benchmark and the tests."""

from __future__ import annotations

import secrets

import asyncpg
from sqlalchemy.engine import make_url

from tally.adapters.postgres.connection import async_url


def dsn(url: str, database: str | None = None) -> str:
    """The URL as a DSN for ``asyncpg.connect`` (optionally naming another database)."""
    parsed = make_url(async_url(url)).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


async def create_scratch(url: str, prefix: str, template: str | None = None) -> str:
    """A new database beside the one ``url`` names, empty or a copy of the database
    ``template`` (which nobody may be connected to); returns its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    conn = await asyncpg.connect(dsn(url))
    try:
        copy = f' TEMPLATE "{template}"' if template else ""
        await conn.execute(f'CREATE DATABASE "{name}"{copy}')
    finally:
        await conn.close()
    return async_url(dsn(url, name))


async def drop(url: str) -> None:
    name = make_url(url).database
    conn = await asyncpg.connect(dsn(url, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
