"""The API's database connection can only read: PostgreSQL refuses it every write, both
ways ``tally serve`` connects (SET ROLE on the ledger's URL, or a tally_reader login)."""

from __future__ import annotations

import secrets

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import Ledger
from support.ledger_support import urls_of
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings


async def refuses_every_write(api: AsyncEngine) -> None:
    async with raw_connection(api) as conn:
        assert await conn.fetchval("SELECT current_user") == "tally_reader"
        tables = await conn.fetch(
            """SELECT c.relname, min(a.attname) FROM pg_class c
                 JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0
                      AND NOT a.attisdropped AND a.attidentity = '' AND a.attgenerated = ''
                WHERE c.relnamespace = 'public'::regnamespace AND c.relkind = 'r'
                GROUP BY c.relname"""  # a plain column: an identity one fails before privileges
        )
        assert {"api_key", "journal_entry", "invoice", "dead_letter"} <= {t[0] for t in tables}
        for table, column in tables:
            for statement in (
                f"INSERT INTO {table} DEFAULT VALUES",
                f"UPDATE {table} SET {column} = {column}",
                f"DELETE FROM {table}",
                f"TRUNCATE {table}",
            ):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(statement)


async def test_the_api_connection_cannot_insert_update_or_delete_anything(
    reader: AsyncEngine, ledger: Ledger
) -> None:
    await refuses_every_write(reader)


async def test_logged_in_as_tally_reader_the_api_cannot_even_switch_role(
    settings: Settings, ledger: Ledger
) -> None:
    """What compose runs (TALLY_API_DATABASE_URL): no RESET ROLE or SET ROLE way out."""
    password = secrets.token_urlsafe(16)
    await bootstrap.migrate(
        settings.model_copy(update={"reader_password": SecretStr(password)}), urls_of(settings)
    )
    login = make_url(urls_of(settings).database).set(username="tally_reader", password=password)
    configured = settings.model_copy(
        update={"api_database_url": login.render_as_string(hide_password=False)}
    )
    api = bootstrap.api_engine(configured, urls_of(settings))
    try:
        await refuses_every_write(api)
        async with raw_connection(api) as conn:
            assert await conn.fetchval("SELECT session_user") == "tally_reader"
            for escape in ("RESET ROLE", "SET ROLE tally_writer", "SET ROLE postgres"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.execute(f"{escape}; DELETE FROM api_key")
    finally:
        await api.dispose()
