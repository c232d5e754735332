"""What happened to the stream itself, recorded in PostgreSQL: trims and incidents.

An incident is a run of entries removed from the stream (trimmed by someone else) before
the consumer group read them: revenue that never reached the ledger. The consumer's read
script logs each one in Redis in the same step as the read that skips them (or finds
nothing left); this module copies that log into PostgreSQL once per incident, where verify
and the status report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection, raw_transaction

DELIVERY_TABLES = ("duplicate_delivery", "event_conflict", "dead_letter")


async def record_incidents(
    engine: AsyncEngine, stream: str, logged: Sequence[dict[str, str]]
) -> int:
    """Copy logged incidents (``redis_streams.incidents``); returns how many were new."""
    if not logged:
        return 0
    async with raw_transaction(engine) as conn:
        rows = await conn.fetch(
            """INSERT INTO stream_incident (stream, incident_id, group_name, lost, after_id,
                                            before_id, detected_at)
               SELECT $1, * FROM unnest($2::text[], $3::text[], $4::bigint[], $5::text[],
                                        $6::text[], $7::timestamptz[])
               ON CONFLICT (stream, incident_id) DO NOTHING
               RETURNING incident_id""",
            stream,
            [i["incident_id"] for i in logged],
            [i["group"] for i in logged],
            [int(i["lost"]) for i in logged],
            [i["after"] for i in logged],
            [i["before"] for i in logged],
            [datetime.fromtimestamp(int(i["detected_ms"]) / 1000, UTC) for i in logged],
        )
    return len(rows)


async def record_trim(engine: AsyncEngine, stream: str, min_id: str, removed: int) -> None:
    async with raw_transaction(engine) as conn:
        await conn.execute(
            "INSERT INTO stream_trim (stream, min_id, removed) VALUES ($1, $2, $3)",
            stream,
            min_id,
            removed,
        )


async def delivery_recorded(
    engine: AsyncEngine, stream: str, stream_id: str, key: tuple[str, str] | None
) -> bool:
    """Is this stream entry durable in PostgreSQL (an event, duplicate, conflict or letter)?"""
    async with raw_connection(engine) as conn:
        for table in DELIVERY_TABLES:
            found = await conn.fetchval(
                f"SELECT true FROM {table} WHERE stream = $1 AND stream_id = $2",
                stream,
                stream_id,
            )
            if found:
                return True
        if key is None:
            return False
        return bool(
            await conn.fetchval(
                """SELECT true FROM usage_event
                    WHERE source = $1 AND id = $2 AND stream = $3 AND stream_id = $4""",
                *key,
                stream,
                stream_id,
            )
        )


async def stream_summary(engine: AsyncEngine, stream: str) -> dict[str, Any]:
    """Incidents, trims and deleted-while-pending letters recorded for ``stream``."""
    async with raw_connection(engine) as conn:
        return await summary(conn, stream)


async def dead_letter_counts(engine: AsyncEngine) -> list[tuple[str, str, int]]:
    """The dead-letter store's size: (code, ``open`` or ``replayed``, count) rows."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT code, CASE WHEN replayed_at IS NULL THEN 'open' ELSE 'replayed' END AS state,
                      count(*) AS n
                 FROM dead_letter GROUP BY 1, 2"""
        )
    return [(row["code"], row["state"], row["n"]) for row in rows]


async def summary(conn: asyncpg.Connection, stream: str) -> dict[str, Any]:
    row = await conn.fetchrow(
        """SELECT (SELECT count(*) FROM stream_incident WHERE stream = $1) AS incidents,
                  (SELECT coalesce(sum(lost), 0)::bigint FROM stream_incident WHERE stream = $1)
                      AS lost_before_read,
                  (SELECT count(*) FROM dead_letter
                    WHERE stream = $1 AND code = 'deleted_from_stream') AS deleted_while_pending,
                  (SELECT count(*) FROM stream_trim WHERE stream = $1) AS trims,
                  (SELECT coalesce(sum(removed), 0)::bigint FROM stream_trim WHERE stream = $1)
                      AS trimmed_entries""",
        stream,
    )
    assert row is not None
    return dict(row)


async def incidents(conn: asyncpg.Connection) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT stream, incident_id, group_name, lost, after_id, before_id, detected_at
             FROM stream_incident ORDER BY stream, incident_id"""
    )
    return rows
