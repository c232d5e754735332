"""An event's story: every delivery of one (source, id), the entry that carries it and
what billed it. Nothing here writes."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.invoices import invoice_number
from tally.domain.events import optional_attributes


async def event_story(engine: AsyncEngine, source: str, event_id: str) -> dict[str, Any] | None:
    """Every delivery of one (source, id), and the entry that carries it."""
    async with raw_connection(engine) as conn:
        event = await conn.fetchrow(
            """SELECT status, type, org, period, event_time, meter, feature, quantity,
                      rate_card_version, stream, stream_id, received_at, entry_id,
                      convert_from(raw, 'UTF8') AS payload
                 FROM usage_event WHERE source = $1 AND id = $2""",
            source,
            event_id,
        )
        deliveries = [
            dict(row)
            for row in await conn.fetch(
                """SELECT 'duplicate' AS status, stream_id, received_at, NULL AS detail
                     FROM duplicate_delivery WHERE source = $1 AND id = $2
                   UNION ALL
                   SELECT 'conflict', stream_id, received_at,
                          'same key, different payload: not metered'
                     FROM event_conflict WHERE source = $1 AND id = $2
                   UNION ALL
                   SELECT CASE WHEN replayed_at IS NULL THEN 'rejected' ELSE 'rejected, replayed'
                          END, stream_id, received_at,
                          reason || coalesce(' (replay: ' || replay_outcome || ')', '')
                     FROM dead_letter WHERE source = $1 AND event_id = $2
                   ORDER BY received_at, stream_id""",
                source,
                event_id,
            )
        ]
        entry = None
        if event is not None and event["entry_id"] is not None:
            header = await conn.fetchrow(
                """SELECT id, idempotency_key, kind, posted_at, rate_card_version, lane, seq
                     FROM journal_entry WHERE id = $1""",
                event["entry_id"],
            )
            lines = await conn.fetch(
                """SELECT a.code AS account, a.unit, l.amount FROM entry_line l
                     JOIN account a ON a.id = l.account_id WHERE l.entry_id = $1 ORDER BY a.code""",
                event["entry_id"],
            )
            carried = await conn.fetchval(
                "SELECT count(*) FROM usage_event WHERE entry_id = $1", event["entry_id"]
            )
            entry = {**dict(header or {}), "events": carried, "lines": [dict(x) for x in lines]}
        billing = await _billing(conn, event) if event is not None else None
    if event is None and not deliveries:
        return None
    return {
        "source": source,
        "id": event_id,
        "status": event["status"] if event else deliveries[-1]["status"],
        "event": dict(event) if event else None,
        "attributes": optional_attributes(event["payload"].encode()) if event else {},
        "entry": entry,
        "billing": billing,
        "deliveries": deliveries,
    }


async def _billing(conn: asyncpg.Connection, event: asyncpg.Record) -> dict[str, Any]:
    """Which invoice bills the event, and whether it was late (after its period's close)."""
    closed = await conn.fetchrow(
        "SELECT number, recorded_at FROM invoice WHERE org = $1 AND period = $2",
        event["org"],
        event["period"],
    )
    billed = None
    if event["entry_id"] is not None:
        billed = await conn.fetchrow(
            "SELECT invoice, original FROM billed_entry WHERE entry_id = $1", event["entry_id"]
        )
    if closed is None:
        if await conn.fetchval("SELECT 1 FROM period_close WHERE period = $1", event["period"]):
            detail = (
                f"late: {event['period']} was closed before {event['org']} had an invoice for "
                "it; the next close issues it"
            )
            return {"late": True, "invoice": None, "detail": detail}
        return {"late": False, "invoice": None, "detail": "period not closed yet"}
    original = invoice_number(closed["number"])
    if billed is not None and billed["original"] is None:
        return {"late": False, "invoice": original, "detail": f"billed on {original}"}
    if billed is not None:
        on = invoice_number(billed["invoice"])
        detail = f"late: billed on {on} as a prior-period adjustment of {original}"
        return {"late": True, "invoice": on, "detail": detail}
    if event["entry_id"] is not None:
        detail = (
            f"late: arrived after {original} was issued; "
            "the next close bills it as a prior-period adjustment"
        )
        return {"late": True, "invoice": None, "detail": detail}
    late = event["received_at"] > closed["recorded_at"]
    detail = f"not billed ({event['status']})" + (
        f"; late: recorded after {original} was issued, which stays as issued" if late else ""
    )
    return {"late": late, "invoice": None, "detail": detail}
