"""The alert outbox in PostgreSQL, and the webhook registry it delivers to.

Webhooks are versions (like producer sources): ``add`` appends an enabled version with
its secret, ``remove`` a disabled one that forgets the secret; the newest version counts.
The secret is stored as given (``whsec_`` + base64) because signing needs the key; the
reader role cannot SELECT it (privileges.py).
"""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.alerts import Attempt, DueDelivery, WebhookTarget
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.domain.alert_delivery import AlertKey, AlertRecord

DELIVERY_LOCK = 7_461_234_010  # pg_try_advisory_lock key: one deliverer at a time
SECRET_BYTES = 32
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/]{16,}={0,2}$")
URL = re.compile(r"^https?://\S+$")
NEWEST_ENABLED = """SELECT * FROM (SELECT DISTINCT ON (id) id, url, secret, enabled, created_at
                                     FROM webhook ORDER BY id, version DESC) w
                    WHERE enabled"""
ALERT_COLUMNS = (
    "a.id, a.org, a.period, a.meter, a.kind, a.threshold, a.used, a.allocation, a.projected,"
    " a.crossed_at"
)


class WebhookError(ValueError):
    pass


def _alert(row: asyncpg.Record) -> AlertRecord:
    return AlertRecord(*(row[name] for name in AlertRecord.__dataclass_fields__))


class PostgresAlertOutbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[bool]:
        async with raw_connection(self.engine) as conn:
            mine = bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", DELIVERY_LOCK))
            try:
                yield mine
            finally:
                if mine:
                    await conn.execute("SELECT pg_advisory_unlock($1)", DELIVERY_LOCK)

    async def unpublished(self, limit: int) -> list[AlertRecord]:
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(
                f"""SELECT {ALERT_COLUMNS} FROM alert a
                     WHERE NOT EXISTS (SELECT 1 FROM alert_published p WHERE p.alert_id = a.id)
                     ORDER BY a.id LIMIT $1""",
                limit,
            )
        return [_alert(row) for row in rows]

    async def published(self, alert_id: int, stream: str, stream_id: str) -> None:
        async with raw_connection(self.engine) as conn:
            await conn.execute(
                """INSERT INTO alert_published (alert_id, stream, stream_id) VALUES ($1, $2, $3)
                   ON CONFLICT (alert_id) DO NOTHING""",
                alert_id,
                stream,
                stream_id,
            )

    async def due(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Each delivery whose last attempt failed and is due for its retry (first attempts
        are the alerts stream's subscriber's: ``unattempted``)."""
        return await self._deliveries(limit, "l.next_at <= $2", now)

    async def unattempted(self, alert: AlertKey) -> list[DueDelivery]:
        """The alert's deliveries to each enabled webhook added before it crossed, never
        attempted."""
        return await self._deliveries(
            None,
            """l.attempt IS NULL
               AND (a.org, a.period, a.meter, a.kind, a.threshold) = ($2, $3, $4, $5, $6)""",
            alert.org,
            alert.period,
            alert.meter,
            alert.kind,
            alert.threshold,
        )

    async def _deliveries(self, limit: int | None, where: str, *args: Any) -> list[DueDelivery]:
        """Each alert with each enabled webhook added before each crossed, with the attempts made
        so far, filtered by ``where`` (its parameters from $2), the first ``limit`` (None:
        all) by alert, then webhook."""
        async with raw_connection(self.engine) as conn:
            rows = await conn.fetch(
                f"""SELECT {ALERT_COLUMNS}, h.id AS webhook, h.url, h.secret,
                           coalesce(l.attempt, 0) AS attempts
                      FROM alert a
                      JOIN ({NEWEST_ENABLED}) h ON a.crossed_at >= h.created_at
                      LEFT JOIN LATERAL (
                           SELECT attempt, next_at FROM webhook_attempt
                            WHERE alert_id = a.id AND webhook = h.id
                            ORDER BY attempt DESC LIMIT 1) l ON true
                     WHERE {where}
                     ORDER BY a.id, h.id LIMIT $1""",
                limit,
                *args,
            )
        return [
            DueDelivery(
                _alert(row),
                WebhookTarget(row["webhook"], row["url"], row["secret"]),
                row["attempts"],
            )
            for row in rows
        ]

    async def retries_pending(self) -> bool:
        async with raw_connection(self.engine) as conn:
            pending: bool = await conn.fetchval(
                f"""SELECT EXISTS (
                      SELECT 1 FROM webhook_attempt t JOIN ({NEWEST_ENABLED}) h ON h.id = t.webhook
                       WHERE t.next_at IS NOT NULL AND NOT EXISTS (
                             SELECT 1 FROM webhook_attempt later
                              WHERE later.alert_id = t.alert_id AND later.webhook = t.webhook
                                AND later.attempt > t.attempt))"""
            )
        return pending

    async def attempted(self, attempt: Attempt) -> None:
        """Log an attempt; another deliverer's log of the same attempt wins (kept once)."""
        async with raw_connection(self.engine) as conn:
            await conn.execute(
                """INSERT INTO webhook_attempt (alert_id, webhook, attempt, status_code, error,
                                                attempted_at, next_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7)
                   ON CONFLICT (alert_id, webhook, attempt) DO NOTHING""",
                attempt.alert_id,
                attempt.webhook,
                attempt.attempt,
                attempt.status_code,
                attempt.error,
                attempt.attempted_at,
                attempt.next_at,
            )


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


async def add_webhook(engine: AsyncEngine, url: str, secret: str | None) -> tuple[str, str]:
    """Register ``url``; returns its id and its secret (generated when not given)."""
    if not URL.match(url):
        raise WebhookError(f"a webhook URL is http:// or https:// with no spaces, got {url!r}")
    secret = secret or new_secret()
    if not SECRET.match(secret):
        raise WebhookError("a webhook secret is whsec_ followed by base64 (at least 16 characters)")
    webhook = f"wh_{secrets.token_hex(8)}"
    async with raw_connection(engine) as conn:
        await conn.execute(
            "INSERT INTO webhook (id, url, secret, enabled) VALUES ($1, $2, $3, true)",
            webhook,
            url,
            secret,
        )
    return webhook, secret


async def remove_webhook(engine: AsyncEngine, webhook: str) -> None:
    """Stop delivering to ``webhook``: a disabled version, its secret forgotten."""
    async with raw_transaction(engine) as conn:
        newest = await conn.fetchrow(
            "SELECT url, enabled FROM webhook WHERE id = $1 ORDER BY version DESC LIMIT 1", webhook
        )
        if newest is None or not newest["enabled"]:
            raise WebhookError(f"no registered webhook {webhook!r}: see `tally webhook list`")
        await conn.execute(
            "INSERT INTO webhook (id, url, secret, enabled) VALUES ($1, $2, NULL, false)",
            webhook,
            newest["url"],
        )


async def list_webhooks(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Each webhook's newest version (never its secret), oldest first."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT * FROM (SELECT DISTINCT ON (id) id, url, enabled, created_at
                                FROM webhook ORDER BY id, version DESC) w
                ORDER BY created_at, id"""
        )
    return [dict(row) for row in rows]
