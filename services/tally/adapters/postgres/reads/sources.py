"""The producer sources' registry as ``tally source list`` shows it. Nothing here writes
(``tally source`` registers a new version; versions are never changed)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel


class SourceVersion(BaseModel):
    name: str
    enabled: bool
    any_org: bool  # it may bill any organization
    orgs: list[str]  # else only these
    recorded_at: datetime


async def sources(conn: asyncpg.Connection, history: bool = False) -> list[SourceVersion]:
    """The newest version of each source (``history``: every version), by name."""
    query = (
        "SELECT name, enabled, any_org, orgs, recorded_at FROM producer_source ORDER BY name, id"
        if history
        else """SELECT DISTINCT ON (name) name, enabled, any_org, orgs, recorded_at
                  FROM producer_source ORDER BY name, id DESC"""
    )
    return [SourceVersion.model_validate(dict(row)) for row in await conn.fetch(query)]
