"""Producer sources: which CloudEvents ``source`` may bill which organizations.

The registry is append-only: a change appends a version and the newest one counts, so
who was allowed what, and since when, stays on record.
"""

from __future__ import annotations

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_transaction

MAX_NAME = 256  # the wire contract's limit on ``source``


class SourceError(ValueError):
    pass


async def add(engine: AsyncEngine, name: str, orgs: list[str] | None) -> bool:
    """Allow ``name`` to bill ``orgs`` (None: any organization); the list replaces the
    previous one. False when the newest version says exactly that already."""
    if not 1 <= len(name) <= MAX_NAME or "\x00" in name:
        raise SourceError(f"a source name has 1 to {MAX_NAME} characters and no NUL")
    wanted = sorted(set(orgs)) if orgs is not None else []
    if orgs is not None and not wanted:
        raise SourceError("give the organizations the source may bill: --orgs a,b")
    async with raw_transaction(engine) as conn:
        known = {
            row["name"]
            for row in await conn.fetch(
                "SELECT name FROM organization WHERE name = ANY($1::text[])", wanted
            )
        }
        if missing := [org for org in wanted if org not in known]:
            raise SourceError(
                f"no organization {', '.join(map(repr, missing))}: add it with `tally org add`"
            )
        newest = await _newest(conn, name)
        if newest is not None and (newest["enabled"], newest["any_org"], newest["orgs"]) == (
            True,
            orgs is None,
            wanted,
        ):
            return False
        await conn.execute(
            "INSERT INTO producer_source (name, enabled, any_org, orgs) VALUES ($1, true, $2, $3)",
            name,
            orgs is None,
            wanted,
        )
        return True


async def remove(engine: AsyncEngine, name: str) -> None:
    """Stop ``name`` from billing: appends a disabled version (the history stays)."""
    async with raw_transaction(engine) as conn:
        newest = await _newest(conn, name)
        if newest is None or not newest["enabled"]:
            raise SourceError(f"no registered source {name!r}: see `tally source list`")
        await conn.execute(
            "INSERT INTO producer_source (name, enabled, any_org, orgs) "
            "VALUES ($1, false, false, '{}')",
            name,
        )


async def _newest(conn: asyncpg.Connection, name: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT enabled, any_org, orgs FROM producer_source
            WHERE name = $1 ORDER BY id DESC LIMIT 1""",
        name,
    )
    return row
