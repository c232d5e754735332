"""The bare exactly-once pipeline that ``tally bench`` reads the consumer against.

What any exactly-once drain of the usage stream into PostgreSQL must do, and nothing else:
XREADGROUP a batch of wire-format entries, parse each ``event`` as JSON, keep one row per
``(source, id)`` (an unparsable entry is keyed on its stream id), COPY the batch into a
staging table and insert it into a table keyed on ``(source, id)`` (a key stored by an
earlier batch is skipped: exactly once), commit, XACK. No rating, no ledger, no rollups.

It runs on the same servers as the consumer, in a process of its own, with its own stream
(filled with the same entries) and its own table in the benchmark's scratch database, so
the ratio of the two rates measures Tally's work, not the machine's mood.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from tally.adapters import redis_streams
from tally.adapters.postgres.databases import dsn
from tally_tools.resources import ProcessCpu, peak_rss_mb

TABLE = "bench_pipeline_event"
GROUP = "bench-pipeline"
CONSUMER = "pipeline"
_CREATE = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    source text NOT NULL, id text NOT NULL, raw bytea, stream_id text NOT NULL,
    PRIMARY KEY (source, id))"""
_STAGE = """CREATE TEMPORARY TABLE stage (source text, id text, raw bytea, stream_id text)
            ON COMMIT DELETE ROWS"""
_MOVE = f"INSERT INTO {TABLE} SELECT * FROM stage ON CONFLICT (source, id) DO NOTHING"


@dataclass
class PipelineRun:
    """What one run of the pipeline did: entries read and acknowledged, rows it inserted
    (distinct keys), and its own CPU seconds and peak RSS."""

    entries: int
    acknowledged: int
    inserted: int
    last_commit: float
    cpu_seconds: float
    peak_rss_mb: float


def key_of(stream_id: str, raw: bytes | None) -> tuple[str, str]:
    """``(source, id)`` of a wire-format event; an entry that has none keys on its stream id."""
    try:
        event = json.loads(raw) if raw is not None else None
        if isinstance(event, dict):
            return str(event["source"]), str(event["id"])
    except (ValueError, KeyError):
        pass
    return "", stream_id


def rows_of(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[tuple[Any, ...]]:
    """One row per key: a key repeated within the batch is stored once."""
    rows: dict[tuple[str, str], tuple[Any, ...]] = {}
    for entry_id, fields in entries:
        stream_id = entry_id.decode()
        raw = fields.get(b"event")
        source, event_id = key_of(stream_id, raw)
        rows.setdefault((source, event_id), (source, event_id, raw, stream_id))
    return list(rows.values())


async def prepare(database_url: str, redis_url: str, stream: str) -> None:
    """The pipeline's table and consumer group (from the stream's start)."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        await conn.execute(_CREATE)
    finally:
        await conn.close()
    client = redis_streams.connect(redis_url)
    try:
        await client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    finally:
        await client.aclose()


async def drain(database_url: str, redis_url: str, stream: str, batch: int) -> PipelineRun:
    """Read, parse, COPY, commit and acknowledge until the stream has nothing new."""
    cpu = ProcessCpu()
    conn = await asyncpg.connect(dsn(database_url))
    client = redis_streams.connect(redis_url)
    entries = acknowledged = inserted = 0
    last_commit = 0.0
    try:
        await conn.execute(_STAGE)
        while True:
            read: Any = await client.xreadgroup(GROUP, CONSUMER, {stream: ">"}, count=batch)
            if not read:
                break
            batch_entries: list[tuple[bytes, dict[bytes, bytes]]] = read[0][1]
            rows = rows_of(batch_entries)
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "stage", records=rows, columns=("source", "id", "raw", "stream_id")
                )
                inserted += int((await conn.execute(_MOVE)).rsplit(" ", 1)[1])
            last_commit = time.time()
            acknowledged += await client.xack(stream, GROUP, *[sid for sid, _ in batch_entries])
            entries += len(batch_entries)
    finally:
        await client.aclose()
        await conn.close()
    return PipelineRun(entries, acknowledged, inserted, last_commit, cpu.seconds(), peak_rss_mb())


async def stored(database_url: str) -> int:
    """Rows the pipeline's table holds: what it committed."""
    conn = await asyncpg.connect(dsn(database_url))
    try:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {TABLE}")
        return count
    finally:
        await conn.close()
