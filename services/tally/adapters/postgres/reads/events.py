"""An event's story: every delivery of one (source, id), the entry that carries it and
what billed it. Nothing here writes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.carried import CARRIED_EVENTS
from tally.adapters.postgres.reads import Amount, snapshot
from tally.adapters.postgres.reads.invoices import invoice_number
from tally.domain.events import optional_attributes


class EventRecord(BaseModel):
    """The event as it was stored (its raw bytes as ``payload``)."""

    status: str
    type: str
    org: str
    period: str
    event_time: datetime
    meter: str | None
    feature: str | None
    quantity: Amount
    rate_card_version: str
    stream: str
    stream_id: str
    received_at: datetime
    entry_id: int | None
    payload: str


class CarryingLine(BaseModel):
    account: str
    unit: str
    amount: Amount


class CarryingEntry(BaseModel):
    """The entry that carries the event, with how many events it carries in all."""

    id: int
    idempotency_key: str
    kind: str
    posted_at: datetime
    rate_card_version: str | None
    lane: int
    seq: int
    events: int
    lines: list[CarryingLine]


class Billing(BaseModel):
    late: bool  # it arrived after its period was closed
    invoice: str | None  # the invoice that bills it, once one does
    detail: str


class EventKeyRef(BaseModel):
    """An event's key, as two fields (a source may hold any character, ``/`` included)."""

    source: str
    id: str


class VoidRecord(BaseModel):
    """A void: the event it took back, why and who asked, and its usage reversal."""

    source: str  # the voided event's key
    id: str
    reason: str
    requested_by: str
    asked_by: EventKeyRef | None  # the tally.void event that asked, if one did
    voided_at: datetime
    reversal: CarryingEntry
    billing: Billing  # which invoice counts (or credits) the reversal


class Delivery(BaseModel):
    """A delivery of the key that was not metered: a duplicate, a conflict, a rejection."""

    status: str
    stream_id: str
    received_at: datetime
    detail: str | None


class EventStory(BaseModel):
    source: str
    id: str
    status: str  # the event's, or (never stored) its last delivery's
    event: EventRecord | None
    attributes: dict[str, Any]  # its optional CloudEvents attributes and extensions
    entry: CarryingEntry | None
    billing: Billing | None
    void: VoidRecord | None  # the void of this event, or the one this tally.void asked for
    deliveries: list[Delivery]


async def event_story(conn: asyncpg.Connection, source: str, event_id: str) -> EventStory | None:
    """Every delivery of one (source, id), and the entry that carries it, in one snapshot."""
    async with snapshot(conn):
        event = await conn.fetchrow(
            """SELECT status, type, org, period, event_time, meter, feature, quantity,
                      rate_card_version, stream, stream_id, received_at, entry_id,
                      convert_from(raw, 'UTF8') AS payload
                 FROM usage_event WHERE source = $1 AND id = $2""",
            source,
            event_id,
        )
        deliveries = [
            Delivery.model_validate(dict(row))
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
            entry = await _carrying(conn, event["entry_id"])
        billing = await _billing(conn, event) if event is not None else None
        void = await _void(conn, source, event_id, event) if event is not None else None
    if event is None and not deliveries:
        return None
    status = event["status"] if event else deliveries[-1].status
    return EventStory(
        source=source,
        id=event_id,
        status="voided" if void is not None and status == "metered" else status,
        event=EventRecord.model_validate(dict(event)) if event else None,
        attributes=optional_attributes(event["payload"].encode()) if event else {},
        entry=entry,
        billing=billing,
        void=void,
        deliveries=deliveries,
    )


async def _carrying(conn: asyncpg.Connection, entry_id: int) -> CarryingEntry:
    header = await conn.fetchrow(
        """SELECT id, idempotency_key, kind, posted_at, rate_card_version, lane, seq
             FROM journal_entry WHERE id = $1""",
        entry_id,
    )
    lines = await conn.fetch(
        """SELECT a.code AS account, a.unit, l.amount FROM entry_line l
             JOIN account a ON a.id = l.account_id WHERE l.entry_id = $1 ORDER BY a.code""",
        entry_id,
    )
    carried = await conn.fetchval(
        f"SELECT count(*) FROM {CARRIED_EVENTS} c WHERE carrier = $1", entry_id
    )
    return CarryingEntry.model_validate(
        {**dict(header or {}), "events": carried, "lines": [dict(x) for x in lines]}
    )


async def _void(
    conn: asyncpg.Connection, source: str, event_id: str, event: asyncpg.Record
) -> VoidRecord | None:
    """The void of this event, or (for a tally.void) the void it asked for."""
    row = await conn.fetchrow(
        """SELECT x.source, x.id, x.reason, x.requested_by, x.voided_at, x.entry_id,
                  x.void_source, x.void_id, v.org, v.period,
                  v.received_at
             FROM event_void x JOIN usage_event v ON v.source = x.source AND v.id = x.id
            WHERE (x.source = $1 AND x.id = $2) OR (x.void_source = $1 AND x.void_id = $2)""",
        source,
        event_id,
    )
    if row is None:
        return None
    reversal = await _carrying(conn, row["entry_id"])
    carrier = {
        "org": row["org"],
        "period": row["period"],
        "entry_id": row["entry_id"],
        "received_at": row["voided_at"],
        "status": "metered",
    }
    billing = await _billing(conn, carrier)
    return VoidRecord(
        source=row["source"],
        id=row["id"],
        reason=row["reason"],
        requested_by=row["requested_by"],
        asked_by=(
            EventKeyRef(source=row["void_source"], id=row["void_id"])
            if row["void_id"] is not None
            else None
        ),
        voided_at=row["voided_at"],
        reversal=reversal,
        billing=billing,
    )


async def _billing(conn: asyncpg.Connection, event: Mapping[str, Any]) -> Billing:
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
            return Billing(late=True, invoice=None, detail=detail)
        return Billing(late=False, invoice=None, detail="period not closed yet")
    original = invoice_number(closed["number"])
    if billed is not None and billed["original"] is None:
        return Billing(late=False, invoice=original, detail=f"billed on {original}")
    if billed is not None:
        on = invoice_number(billed["invoice"])
        detail = f"late: billed on {on} as a prior-period adjustment of {original}"
        return Billing(late=True, invoice=on, detail=detail)
    if event["entry_id"] is not None:
        detail = (
            f"late: arrived after {original} was issued; "
            "the next close bills it as a prior-period adjustment"
        )
        return Billing(late=True, invoice=None, detail=detail)
    late = event["received_at"] > closed["recorded_at"]
    detail = f"not billed ({event['status']})" + (
        f"; late: recorded after {original} was issued, which stays as issued" if late else ""
    )
    return Billing(late=late, invoice=None, detail=detail)
