"""What a registered producer source may bill now (its newest version), as HTTP ingest
checks each event's organization before it takes the event."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.domain.rating import SourceGrant


async def source_grant(engine: AsyncEngine, name: str) -> SourceGrant | None:
    """The source's grant; None when it was never registered or has been removed."""
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow(
            """SELECT enabled, any_org, orgs FROM producer_source
                WHERE name = $1 ORDER BY id DESC LIMIT 1""",
            name,
        )
    if row is None or not row["enabled"]:
        return None
    return SourceGrant(row["any_org"], frozenset(row["orgs"]))
