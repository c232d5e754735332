"""The pages' sessions (migration 0015), from the API's tally_reader connection: opened and
revoked only through the two SECURITY DEFINER functions it may call, found by a SELECT."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.api_keys import KEY_COLUMNS, stored_key
from tally.adapters.postgres.connection import raw_connection
from tally.domain.access import StoredKey
from tally.domain.sessions import session_hash


async def open_session(engine: AsyncEngine, session_id: str, secret: str) -> datetime | None:
    """A session of the key behind ``secret``: its expiry, or None when the key is not live.
    The database hashes the secret and checks it: its stored hash would open nothing."""
    async with raw_connection(engine) as conn:
        until: datetime | None = await conn.fetchval(
            "SELECT ui_session_open($1, $2)", session_hash(session_id), secret
        )
    return until


async def revoke_session(engine: AsyncEngine, session_id: str) -> None:
    async with raw_connection(engine) as conn:
        await conn.execute("SELECT ui_session_revoke($1)", session_hash(session_id))


async def session_key(engine: AsyncEngine, session_id: str) -> StoredKey | None:
    """The key of a live session (neither it nor its key revoked or expired), else None."""
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow(
            f"""SELECT {KEY_COLUMNS} FROM api_key
                 WHERE id = (SELECT key_id FROM ui_session
                              WHERE id_hash = $1 AND revoked_at IS NULL AND expires_at > now())
                   AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())""",
            session_hash(session_id),
        )
    return None if row is None else stored_key(row)
