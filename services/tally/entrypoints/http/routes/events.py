"""One event by its idempotency key: status, every delivery, its entry, the invoice billing it."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import events as event_reads
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.http.lists import shown
from tally.entrypoints.inputs import Text

router = APIRouter(tags=["events"])


@router.get(
    "/v1/events/{source}/{event_id}",
    **scoped(Scope.ledger_read),
    response_model=event_reads.EventStory,
)
async def show_event(
    caller: CallerDep, request: Request, source: Text, event_id: Text
) -> JSONResponse:
    """What `tally events show SOURCE ID --format json` prints."""
    async with raw_connection(request.app.state.engine) as conn:
        story = await event_reads.event_story(conn, source, event_id)
    if story is None:
        raise ApiError(404, f"no event ({source}, {event_id}) was ever received")
    return shown(story)
