"""Threshold alerts in PostgreSQL: detected in the metering transaction, read by the outbox.

Detection runs after a batch's postings, in the same transaction, so an alert exists
exactly when the usage that crossed it is committed: a replay, a duplicate, a second
consumer or a crash can never record one twice (the unique key) nor lose one.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.allocations import allocations_so_far
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.domain.alerts import DEFAULT_THRESHOLDS, Crossing, UsageKey, crossed, reading
from tally.domain.ledger import AI_TOKEN, API_REQUEST, Meter
from tally.domain.period import period_bounds
from tally.domain.ratecard import RateCardBook


async def record_crossings(
    conn: asyncpg.Connection,
    added: Mapping[UsageKey, Decimal],
    book: RateCardBook,
    now: datetime,
) -> int:
    """Add a batch's usage (``batch_usage``) to the running totals, then record the alerts
    the totals have crossed; returns how many alerts are new.

    The upsert locks each total's row until commit (in key order: no deadlock), so a
    second consumer's batch of the same organization waits, then adds to the committed
    total: a threshold crossed by two batches at once is still seen.
    """
    if not added:
        return 0
    keys = sorted(added)
    rows = await conn.fetch(
        """WITH totals AS (
               INSERT INTO usage_total AS t (org, period, meter, used)
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[])
               ON CONFLICT (org, period, meter) DO UPDATE SET used = t.used + excluded.used
               RETURNING t.org, t.period, t.meter, t.used)
           SELECT totals.*, (SELECT th.thresholds FROM alert_threshold th
                              WHERE th.org = totals.org ORDER BY th.id DESC LIMIT 1) AS thresholds
             FROM totals""",
        [k[0] for k in keys],
        [k[1] for k in keys],
        [k[2] for k in keys],
        [added[k] for k in keys],
    )
    by_period: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_period[row["period"]].append(row)
    crossings: list[Crossing] = []
    for period, found in sorted(by_period.items()):
        card = book.in_effect(period_bounds(period)[0])
        if card is None:
            continue
        allocations = await allocations_so_far(
            conn, sorted({row["org"] for row in found}), period, card
        )
        for row in found:
            allocated = allocations[row["org"]]
            amount = allocated.api_requests if row["meter"] == API_REQUEST else allocated.ai_tokens
            meter: Meter = API_REQUEST if row["meter"] == API_REQUEST else AI_TOKEN
            crossings += crossed(
                reading(row["org"], period, meter, row["used"], amount, now),
                row["thresholds"] or DEFAULT_THRESHOLDS,
            )
    return await _insert(conn, crossings, now)


async def _insert(conn: asyncpg.Connection, crossings: Sequence[Crossing], now: datetime) -> int:
    """Insert in key order (two transactions wait on each other, never deadlock)."""
    if not crossings:
        return 0
    ordered = sorted(
        crossings,
        key=lambda c: (c.reading.org, c.reading.period, c.reading.meter, c.kind, c.threshold),
    )
    inserted = await conn.fetch(
        """INSERT INTO alert (org, period, meter, kind, threshold, used, allocation, projected,
                              crossed_at)
           SELECT *, $9::timestamptz
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::numeric[],
                         $6::numeric[], $7::numeric[], $8::numeric[])
                  AS c(org, period, meter, kind, threshold, used, allocation, projected)
           ON CONFLICT (org, period, meter, kind, threshold) DO NOTHING
           RETURNING id""",
        [c.reading.org for c in ordered],
        [c.reading.period for c in ordered],
        [c.reading.meter for c in ordered],
        [str(c.kind) for c in ordered],
        [c.threshold for c in ordered],
        [c.reading.used for c in ordered],
        [c.reading.allocation for c in ordered],
        [c.reading.projected for c in ordered],
        now,
    )
    return len(inserted)


class AlertError(ValueError):
    pass


async def set_thresholds(engine: AsyncEngine, org: str, thresholds: Sequence[Decimal]) -> None:
    """A new version of ``org``'s thresholds (percent); the next batch applies it."""
    async with raw_transaction(engine) as conn:
        if not await conn.fetchval("SELECT 1 FROM organization WHERE name = $1", org):
            raise AlertError(f"no organization {org!r}: add it with `tally org add`")
        await conn.execute(
            "INSERT INTO alert_threshold (org, thresholds) VALUES ($1, $2)", org, list(thresholds)
        )


async def thresholds_of(engine: AsyncEngine, org: str) -> tuple[Decimal, ...]:
    async with raw_connection(engine) as conn:
        found = await conn.fetchval(
            "SELECT thresholds FROM alert_threshold WHERE org = $1 ORDER BY id DESC LIMIT 1", org
        )
    return tuple(found) if found else DEFAULT_THRESHOLDS
