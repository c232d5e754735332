"""Dead letters: listed and filtered, counted per code, one by one with its raw bytes and
history, and the open ones ``tally dlq replay`` meters again. Nothing here writes."""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Literal

import asyncpg
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.metering import LetterToReplay
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.listing import KeyedRow, Listing, in_order
from tally.domain.pagination import Key

State = Literal["open", "replayed"]


class DeadLetterFilter(BaseModel):
    code: str | None = None
    source: str | None = None
    org: str | None = None  # the organization the letter's event names (its ``subject``)
    since: datetime | None = None  # received at or after
    before: datetime | None = None  # received before
    state: State | None = None  # None: both


class DeadLetterRow(KeyedRow):
    id: int
    stream: str
    stream_id: str
    code: str
    reason: str
    source: str | None
    event_id: str | None
    received_at: datetime
    state: State
    replayed_at: datetime | None
    replay_outcome: str | None
    raw_bytes: int  # bytes kept (an oversized entry: only its start)
    original_length: int | None  # an oversized entry's whole length
    original_sha256: str | None
    organization: str | None

    def cursor_key(self) -> Key:
        return (self.id,)


# The organization a dead letter's raw event names (its CloudEvents ``subject``), when its
# bytes hold one: a dead letter may be no JSON at all, so this reads the text, not a parse.
LETTER_ORG = r"""substring(encode(raw, 'escape') from '"subject"\s*:\s*"([^"\\]{1,200})"')"""

LIST = f"""
SELECT id, stream, stream_id, code, reason, source, event_id, received_at,
       CASE WHEN replayed_at IS NULL THEN 'open' ELSE 'replayed' END AS state,
       replayed_at, replay_outcome, octet_length(raw) AS raw_bytes,
       original_length, original_sha256, {LETTER_ORG} AS organization
  FROM dead_letter
 WHERE ($1::text IS NULL OR code = $1) AND ($2::text IS NULL OR source = $2)
   AND ($3::text IS NULL OR {LETTER_ORG} = $3)
   AND ($4::timestamptz IS NULL OR received_at >= $4)
   AND ($5::timestamptz IS NULL OR received_at < $5)
   AND ($6::text IS NULL OR (replayed_at IS NULL) = ($6 = 'open'))
   AND ($7::bigint IS NULL OR id > $7)
 ORDER BY id"""


def dead_letter_listing(filters: DeadLetterFilter) -> Listing[DeadLetterRow]:
    """Dead letters in id order (the order they were refused in)."""
    return Listing(
        "dead letters",
        LIST,
        in_order(filters),
        DeadLetterRow,
        (int,),
    )


class CodeCount(BaseModel):
    code: str
    open: int
    total: int


async def dead_letter_codes(conn: asyncpg.Connection) -> list[CodeCount]:
    """Each code with its open and total count, the most frequent first."""
    rows = await conn.fetch(
        """SELECT code, count(*) FILTER (WHERE replayed_at IS NULL) AS open, count(*) AS total
             FROM dead_letter GROUP BY code ORDER BY total DESC, code"""
    )
    return [CodeCount.model_validate(dict(row)) for row in rows]


class DeadLetter(BaseModel):
    """One dead letter whole: its raw bytes as base64, and as text when they are UTF-8."""

    id: int
    stream: str
    stream_id: str
    reason: str
    code: str
    source: str | None
    event_id: str | None
    received_at: datetime
    replayed_at: datetime | None
    replay_outcome: str | None
    original_length: int | None
    original_sha256: str | None
    raw_base64: str
    raw_text: str | None
    raw: bytes = Field(exclude=True)  # for the pages' hex view; JSON has it as base64


async def dead_letter(conn: asyncpg.Connection, letter_id: int) -> DeadLetter | None:
    row = await conn.fetchrow(
        """SELECT id, stream, stream_id, reason, code, source, event_id, received_at,
                  replayed_at, replay_outcome, original_length, original_sha256, raw
             FROM dead_letter WHERE id = $1""",
        letter_id,
    )
    if row is None:
        return None
    raw: bytes = row["raw"]
    try:
        text: str | None = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    return DeadLetter.model_validate(
        {**dict(row), "raw_base64": base64.b64encode(raw).decode(), "raw_text": text}
    )


class HistoryStep(BaseModel):
    at: datetime
    letter: int | None  # the dead letter it happened to; None: the event itself
    what: str


async def dead_letter_history(conn: asyncpg.Connection, letter: DeadLetter) -> list[HistoryStep]:
    """What happened to a dead letter's event, oldest first: each dead letter of the same
    event (source and id; this one too) refused and replayed, and its metering if any."""
    letters = await conn.fetch(
        """SELECT id, received_at, replayed_at, replay_outcome, code FROM dead_letter
            WHERE id = $3 OR (source = $1 AND event_id = $2)""",
        letter.source,
        letter.event_id,
        letter.id,
    )
    metered = await conn.fetchrow(
        "SELECT status, received_at, entry_id FROM usage_event WHERE source = $1 AND id = $2",
        letter.source,
        letter.event_id,
    )
    steps = []
    for row in letters:
        steps.append(
            HistoryStep(at=row["received_at"], letter=row["id"], what=f"refused: {row['code']}")
        )
        if row["replayed_at"]:
            outcome = row["replay_outcome"] or "no outcome recorded"
            steps.append(
                HistoryStep(at=row["replayed_at"], letter=row["id"], what=f"replayed: {outcome}")
            )
    if metered:
        entry = f" (entry {metered['entry_id']})" if metered["entry_id"] else ""
        steps.append(
            HistoryStep(
                at=metered["received_at"], letter=None, what=f"event {metered['status']}{entry}"
            )
        )
    voided = await conn.fetchrow(
        "SELECT voided_at, entry_id, reason FROM event_void WHERE source = $1 AND id = $2",
        letter.source,
        letter.event_id,
    )
    if voided:
        what = f"event voided (usage reversal {voided['entry_id']}): {voided['reason']}"
        steps.append(HistoryStep(at=voided["voided_at"], letter=None, what=what))
    return sorted(steps, key=lambda step: (step.at, step.letter or 0))


async def open_dead_letters(
    engine: AsyncEngine, ids: list[int] | None, after: int, limit: int
) -> list[LetterToReplay]:
    """Open dead letters to replay (all, or the given ids) after id ``after``, oldest first:
    the metering service's port (``DeadLetters``), so it takes the engine as the stores do."""
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
    return [LetterToReplay(**dict(row)) for row in rows]
