"""Threshold alerts in PostgreSQL: detected in the metering transaction, read by the outbox.

Detection runs after a batch's postings, in the same transaction, so an alert exists
exactly when the usage that crossed it is committed: a replay, a duplicate, a second
consumer or a crash can never record one twice (the unique key) nor lose one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.allocations import allocations_so_far
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.domain.alerts import DEFAULT_THRESHOLDS, Crossing, crossed, reading
from tally.domain.ledger import AI_TOKEN, API_REQUEST, Meter
from tally.domain.period import period_bounds
from tally.domain.ratecard import RateCardBook

LOCK_SPACE = b"tally alerts/"  # advisory lock keys: a hash of this, the org and the period


def _lock_key(org: str, period: str) -> int:
    digest = hashlib.sha256(LOCK_SPACE + f"{org}/{period}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def record_crossings(
    conn: asyncpg.Connection, touched: Iterable[tuple[str, str]], book: RateCardBook, now: datetime
) -> int:
    """Record the alerts the committed usage of these (org, period) pairs has crossed;
    returns how many are new.

    Batches touching the same organization and period take turns here (a transaction
    advisory lock, in key order), so the later one reads the earlier one's usage and a
    threshold crossed by two batches at once is still seen.
    """
    pairs = sorted(set(touched))
    if not pairs:
        return 0
    await conn.execute(
        "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k",
        sorted({_lock_key(org, period) for org, period in pairs}),
    )
    rows = await conn.fetch(
        """SELECT t.org, t.period, a.unit, sum(l.amount) AS used,
                  (SELECT th.thresholds FROM alert_threshold th WHERE th.org = t.org
                    ORDER BY th.id DESC LIMIT 1) AS thresholds
             FROM unnest($1::text[], $2::text[]) AS t(org, period)
             JOIN account a ON a.owner = t.org AND a.period = t.period AND a.kind = 'usage'
             JOIN entry_line l ON l.account_id = a.id
            GROUP BY t.org, t.period, a.unit""",
        [org for org, _ in pairs],
        [period for _, period in pairs],
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
            amount = allocated.api_requests if row["unit"] == API_REQUEST else allocated.ai_tokens
            meter: Meter = API_REQUEST if row["unit"] == API_REQUEST else AI_TOKEN
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


async def list_alerts(
    engine: AsyncEngine, org: str | None, period: str | None
) -> list[dict[str, Any]]:
    """Recorded alerts, oldest first, with their delivery state: when published on the
    stream, and per webhook the attempts made and the last answer."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT a.id, a.org, a.period, a.meter, a.kind, a.threshold, a.used, a.allocation,
                      a.projected, a.crossed_at, p.published_at,
                      coalesce(jsonb_agg(jsonb_build_object(
                          'webhook', w.webhook, 'attempts', w.attempt,
                          'status_code', w.status_code, 'error', w.error,
                          'next_at', w.next_at) ORDER BY w.webhook)
                        FILTER (WHERE w.webhook IS NOT NULL), '[]') AS webhooks
                 FROM alert a
                 LEFT JOIN alert_published p ON p.alert_id = a.id
                 LEFT JOIN LATERAL (
                      SELECT DISTINCT ON (webhook) webhook, attempt, status_code, error, next_at
                        FROM webhook_attempt WHERE alert_id = a.id
                       ORDER BY webhook, attempt DESC) w ON true
                WHERE ($1::text IS NULL OR a.org = $1) AND ($2::text IS NULL OR a.period = $2)
                GROUP BY a.id, p.published_at
                ORDER BY a.id""",
            org,
            period,
        )
    return [dict(row) for row in rows]
