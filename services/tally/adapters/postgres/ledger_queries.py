"""The read side: balances, an event's story, dead letters. Nothing here writes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.invoices import invoice_number
from tally.adapters.postgres.listing import Listing
from tally.domain.events import optional_attributes


async def balances(engine: AsyncEngine, org: str, period: str | None) -> list[dict[str, Any]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT a.code AS account, a.unit, coalesce(sum(l.amount), 0) AS balance
                 FROM account a LEFT JOIN entry_line l ON l.account_id = a.id
                WHERE a.owner = $1 AND ($2::text IS NULL OR a.period = $2)
                GROUP BY a.code, a.unit ORDER BY a.code""",
            org,
            period,
        )
    return [dict(row) for row in rows]


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


async def dead_letters(
    engine: AsyncEngine, include_replayed: bool = False, limit: int = 100
) -> list[dict[str, Any]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT id, stream_id, code, reason, received_at, source, event_id,
                      CASE WHEN replayed_at IS NULL THEN 'open' ELSE 'replayed' END AS state,
                      replay_outcome
                 FROM dead_letter
                WHERE $1 OR replayed_at IS NULL
                ORDER BY id LIMIT $2""",
            include_replayed,
            limit,
        )
    return [dict(row) for row in rows]


async def open_dead_letters(
    engine: AsyncEngine, ids: list[int] | None, after: int, limit: int
) -> list[dict[str, Any]]:
    """Open dead letters to replay (all, or the given ids) after id ``after``, oldest first."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT id, stream, stream_id, raw, code, original_length, original_sha256
                 FROM dead_letter
                WHERE replayed_at IS NULL AND ($1::bigint[] IS NULL OR id = ANY($1)) AND id > $2
                ORDER BY id LIMIT $3""",
            ids,
            after,
            limit,
        )
    return [dict(row) for row in rows]


# The organization a dead letter's raw event names (its CloudEvents ``subject``), when its
# bytes hold one: a dead letter may be no JSON at all, so this reads the text, not a parse.
LETTER_ORG = r"""substring(encode(raw, 'escape') from '"subject"\s*:\s*"([^"\\]{1,200})"')"""


def dead_letter_listing(
    code: str | None,
    source: str | None,
    since: datetime | None,
    *,
    org: str | None = None,
    before: datetime | None = None,
    state: str | None = None,
) -> Listing:
    """Dead letters in id order, filtered by code, source, time received (``since``
    included, ``before`` not), the organization their event names, and state (``open`` or
    ``replayed``)."""
    return Listing(
        f"""SELECT id, stream, stream_id, code, reason, source, event_id, received_at,
                  CASE WHEN replayed_at IS NULL THEN 'open' ELSE 'replayed' END AS state,
                  replayed_at, replay_outcome, octet_length(raw) AS raw_bytes,
                  original_length, original_sha256, {LETTER_ORG} AS organization
             FROM dead_letter
            WHERE ($1::text IS NULL OR code = $1) AND ($2::text IS NULL OR source = $2)
              AND ($3::timestamptz IS NULL OR received_at >= $3)
              AND ($4::text IS NULL OR {LETTER_ORG} = $4)
              AND ($5::timestamptz IS NULL OR received_at < $5)
              AND ($6::text IS NULL OR (replayed_at IS NULL) = ($6 = 'open'))
              AND ($7::bigint IS NULL OR id > $7)
            ORDER BY id""",
        (code, source, since, org, before, state),
        (int,),
        lambda row: (row["id"],),
    )


async def dead_letter_codes(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Each code with its open and total count, the most frequent first."""
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT code, count(*) FILTER (WHERE replayed_at IS NULL) AS open,
                      count(*) AS total
                 FROM dead_letter GROUP BY code ORDER BY total DESC, code"""
        )
    return [dict(row) for row in rows]


async def dead_letter_history(engine: AsyncEngine, letter: dict[str, Any]) -> list[dict[str, Any]]:
    """What happened to a dead letter's event, oldest first: each dead letter of the same
    event (source and id; this one too) refused and replayed, and its metering if any."""
    async with raw_connection(engine) as conn:
        letters = await conn.fetch(
            """SELECT id, received_at, replayed_at, replay_outcome, code FROM dead_letter
                WHERE id = $3 OR (source = $1 AND event_id = $2)""",
            letter["source"],
            letter["event_id"],
            letter["id"],
        )
        metered = await conn.fetchrow(
            "SELECT status, received_at, entry_id FROM usage_event WHERE source = $1 AND id = $2",
            letter["source"],
            letter["event_id"],
        )
    steps = []
    for row in letters:
        steps.append(
            {"at": row["received_at"], "letter": row["id"], "what": f"refused: {row['code']}"}
        )
        if row["replayed_at"]:
            outcome = row["replay_outcome"] or "no outcome recorded"
            steps.append(
                {"at": row["replayed_at"], "letter": row["id"], "what": f"replayed: {outcome}"}
            )
    if metered:
        entry = f" (entry {metered['entry_id']})" if metered["entry_id"] else ""
        steps.append(
            {
                "at": metered["received_at"],
                "letter": None,
                "what": f"event {metered['status']}{entry}",
            }
        )
    return sorted(steps, key=lambda step: (step["at"], step["letter"] or 0))


async def dead_letter(engine: AsyncEngine, letter_id: int) -> dict[str, Any] | None:
    """One dead letter with its raw bytes: base64, and as text when they are UTF-8."""
    async with raw_connection(engine) as conn:
        row = await conn.fetchrow("SELECT * FROM dead_letter WHERE id = $1", letter_id)
    if row is None:
        return None
    letter = dict(row)
    raw: bytes = letter.pop("raw")
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return {**letter, "raw_base64": base64.b64encode(raw).decode(), "raw_text": text}
