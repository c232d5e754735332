"""One event by its idempotency key: status, every delivery, its entry, the invoice billing it."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import events as event_reads
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.inputs import Text
from tally.entrypoints.plain import plain

router = APIRouter(tags=["events"])


@router.get("/v1/events/{source}/{event_id}", **scoped(Scope.ledger_read))
async def show_event(
    caller: CallerDep, request: Request, source: Text, event_id: Text
) -> dict[str, Any]:
    """What `tally events show SOURCE ID --format json` prints."""
    async with raw_connection(request.app.state.engine) as conn:
        story = await event_reads.event_story(conn, source, event_id)
    if story is None:
        raise ApiError(404, f"no event ({source}, {event_id}) was ever received")
    shown: dict[str, Any] = plain(story.model_dump())
    return shown
