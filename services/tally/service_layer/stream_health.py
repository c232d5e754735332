"""The stream's health: trimming that loses nothing, incidents recorded, a status to watch.

Trimming removes only what can never be needed again: entries below what every consumer
group has both delivered and acknowledged (the metering group acknowledges only after its
PostgreSQL commit), and only when PostgreSQL holds the newest entry to be removed.
Entries removed by someone else before the group read them are found by the read script
(the adapter's read script) and recorded here as incidents, never silently.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tally.adapters.ports.streams import Streams
from tally.adapters.ports.unit_of_work import Database
from tally.adapters.redis_client import RedisClient
from tally.domain.rating import EVENT_FIELD_BYTES, claimed_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrimResult:
    stream: str
    min_id: str | None  # entries below it are gone; None: nothing was trimmed
    removed: int
    reason: str  # why it stopped where it did


async def _retention_ceiling(
    streams: Streams,
    client: RedisClient,
    stream: str,
    retention: timedelta | int | None,
    now: datetime,
) -> str | None:
    """The id below which the retention allows trimming (None: keep everything)."""
    if retention is None or retention == 0:
        return streams.NO_CEILING
    if isinstance(retention, timedelta):
        return f"{int((now - retention).timestamp() * 1000)}-0"
    return await streams.nth_newest_id(client, stream, retention)


async def trim_stream(
    db: Database,
    streams: Streams,
    client: RedisClient,
    stream: str,
    retention: timedelta | int | None,
    now: datetime | None = None,
    dry_run: bool = False,
) -> TrimResult:
    """Trim ``stream`` (``XTRIM MINID``, exact) as far as retention and safety allow."""
    now = now or datetime.now(UTC)
    ceiling = await _retention_ceiling(streams, client, stream, retention, now)
    if ceiling is None:
        return TrimResult(stream, None, 0, "the retention keeps every entry")
    bound = await streams.trim_bound(client, stream, ceiling)
    why = "retention" if bound == ceiling else "what a consumer group still needs"
    last = await streams.newest_before(client, stream, bound)
    if last is None:
        return TrimResult(stream, None, 0, f"nothing below the bound ({why})")
    sid, fields = last
    raw = dict(fields).get(EVENT_FIELD_BYTES) if isinstance(fields, list) else None
    source, event_id = claimed_key(raw) if raw is not None else (None, None)
    key = (source, event_id) if source is not None and event_id is not None else None
    if not await db.stream_records.delivery_recorded(db.engine, stream, sid, key):
        log.error(
            "not trimming %s: entry %s is acknowledged but PostgreSQL has no record of it",
            stream,
            sid,
        )
        return TrimResult(
            stream, None, 0, f"entry {sid} is acknowledged but not recorded in PostgreSQL"
        )
    if dry_run:
        return TrimResult(stream, bound, 0, f"dry run: would trim below {bound} ({why})")
    min_id, removed = await streams.trim(client, stream, bound)
    if removed:
        await db.stream_records.record_trim(db.engine, stream, min_id, removed)
        log.info("trimmed %d entries below %s from %s (%s)", removed, min_id, stream, why)
    return TrimResult(stream, min_id, removed, why)


async def record_incidents(db: Database, streams: Streams, client: RedisClient, stream: str) -> int:
    """Copy the stream's logged incidents into PostgreSQL (once each); returns the new ones."""
    logged = await streams.incidents(client, stream)
    new = await db.stream_records.record_incidents(db.engine, stream, logged)
    if new:
        log.error(
            "%d incident(s) on %s: entries were removed from the stream before they were "
            "read; see `tally stream status` and `tally ledger verify`",
            new,
            stream,
        )
    return new


async def stream_report(
    db: Database, streams: Streams, client: RedisClient, stream: str, group: str
) -> dict[str, Any]:
    """Everything an operator (or a metrics scraper) watches about the stream."""
    await record_incidents(db, streams, client, stream)
    status = await streams.stream_status(client, stream)
    recorded = await db.stream_records.stream_summary(db.engine, stream)
    info = status.group(group)
    return {
        "stream": stream,
        "group": group,
        "length": status.length,
        "first_entry_id": status.first_entry_id,
        "last_generated_id": status.last_generated_id,
        "entries_added": status.entries_added,
        "drained": streams.drained(status, group),
        "pending": info.pending,
        "lag": info.lag,
        "last_delivered_id": info.last_delivered_id,
        "oldest_pending_id": info.oldest_pending_id,
        "safe_trim_below": await streams.trim_bound(client, stream),
        "groups": [asdict(g) for g in status.groups],
        **recorded,
    }
