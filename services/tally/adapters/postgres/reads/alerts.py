"""Recorded alerts (80 % and 100 % of an allocation, used or projected) with how their
delivery stands: what the dashboard lists and ``tally alerts list`` prints. Nothing here
writes (the consumer records alerts, the deliverer their attempts)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount


class WebhookState(BaseModel):
    """A webhook's latest attempt at delivering the alert."""

    webhook: str
    attempts: int
    status_code: int | None
    error: str | None
    next_at: str | None  # the next retry, as PostgreSQL's JSON writes an instant


class AlertRow(BaseModel):
    id: int
    org: str
    period: str
    meter: str
    kind: str  # used, or projected
    threshold: Amount  # percent of the allocation
    used: Amount
    allocation: Amount
    projected: Amount
    crossed_at: datetime
    published_at: datetime | None  # on the alerts' stream; None: not yet
    webhooks: list[WebhookState]


async def alerts(conn: asyncpg.Connection, org: str | None, period: str | None) -> list[AlertRow]:
    """Recorded alerts, oldest first, with their delivery state: when published on the
    stream, and per webhook the attempts made and the last answer."""
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
    return [AlertRow.model_validate(dict(row)) for row in rows]
