"""The API keys' rows: added, revoked once, and found by id for each request (listing them
is ``reads.api_keys``)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.domain.access import KeyRefused, NewKey, Scope, StoredKey
from tally.domain.rating import SourceGrant


class PostgresApiKeys:
    """The ``ApiKeyStore`` port on PostgreSQL (as tally_writer; the API reads as tally_reader)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(self, key: NewKey, name: str, expires_at: datetime | None) -> datetime:
        """Store the key; ``KeyRefused`` for an organization that does not exist (the
        database checks it: ``api_key_org_exists``)."""
        async with raw_connection(self.engine) as conn:
            try:
                created: datetime = await conn.fetchval(
                    """INSERT INTO api_key
                              (id, name, role, scopes, org, source, secret_hash, expires_at)
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING created_at""",
                    key.id,
                    name,
                    key.role.value,
                    sorted(key.scopes),
                    key.org,
                    key.source,
                    key.secret_hash,
                    expires_at,
                )
            except asyncpg.ForeignKeyViolationError as exc:
                if key.source is not None:
                    raise KeyRefused(
                        f"no source {key.source!r}: register it first (tally source add)"
                    ) from exc
                raise KeyRefused(
                    f"no organization {key.org!r}: add it first (tally org add)"
                ) from exc
        return created

    async def revoke(self, key_id: str) -> str | None:
        """Revoke the key; None when it is unknown, else 'revoked' or 'already revoked'."""
        async with raw_connection(self.engine) as conn:
            row = await conn.fetchrow(
                """WITH hit AS (UPDATE api_key SET revoked_at = now()
                                 WHERE id = $1 AND revoked_at IS NULL RETURNING id)
                   SELECT (SELECT count(*) FROM hit) AS revoked,
                          EXISTS (SELECT 1 FROM api_key WHERE id = $1) AS known""",
                key_id,
            )
        assert row is not None
        if not row["known"]:
            return None
        return "revoked" if row["revoked"] else "already revoked"


async def find_key(engine: AsyncEngine, key_id: str) -> StoredKey | None:
    """The key, with its source's newest registration (a producer key's grant) read in the
    same round trip."""
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow(
            f"""SELECT {KEY_COLUMNS}, g.enabled AS grant_enabled, g.any_org AS grant_any_org,
                       g.orgs AS grant_orgs
                  FROM api_key
                  LEFT JOIN LATERAL (SELECT enabled, any_org, orgs FROM producer_source
                                      WHERE name = api_key.source
                                      ORDER BY id DESC LIMIT 1) g ON true
                 WHERE id = $1""",
            key_id,
        )
    return None if row is None else stored_key(row)


# what ``stored_key`` reads
KEY_COLUMNS = "id, secret_hash, scopes, org, expires_at, revoked_at, source"


def stored_key(row: asyncpg.Record) -> StoredKey:
    granted = row.get("grant_enabled")  # absent where only the key was read (the pages)
    return StoredKey(
        row["id"],
        row["secret_hash"],
        frozenset(Scope(scope) for scope in row["scopes"]),
        row["org"],
        row["expires_at"],
        row["revoked_at"],
        row["source"],
        SourceGrant(row["grant_any_org"], frozenset(row["grant_orgs"])) if granted else None,
    )
