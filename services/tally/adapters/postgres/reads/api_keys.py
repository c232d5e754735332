"""The HTTP API's keys as ``tally apikey list`` shows them: never a secret's hash. Nothing
here writes (``tally apikey create`` and ``revoke`` do)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel


class KeyRow(BaseModel):
    id: str
    name: str
    role: str
    scopes: str  # space-separated
    org: str | None  # the one organization an org_viewer key reads
    source: str | None  # the one registered source a producer key sends events for
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


async def api_keys(conn: asyncpg.Connection) -> list[KeyRow]:
    """Every key, oldest first."""
    rows = await conn.fetch(
        """SELECT id, name, role, array_to_string(scopes, ' ') AS scopes, org, source,
                  created_at, expires_at, revoked_at
             FROM api_key ORDER BY created_at, id"""
    )
    return [KeyRow.model_validate(dict(row)) for row in rows]
