"""Dead letters: listed, filtered, counted per code, one by one with its history. Nothing
here writes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.listing import Listing


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
