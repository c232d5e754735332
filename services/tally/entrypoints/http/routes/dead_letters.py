"""Dead letters: rejected stream entries, listed, and one with its raw bytes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.http.lists import PagingDep, answer, list_of, shown
from tally.entrypoints.http.params import SinceQuery
from tally.entrypoints.inputs import Id, Text

router = APIRouter(tags=["dead letters"])


@router.get(
    "/v1/dead-letters",
    **scoped(Scope.dlq_read),
    responses=list_of(dead_letter_reads.DeadLetterRow),
)
async def list_dead_letters(
    caller: CallerDep,
    paging: PagingDep,
    code: Annotated[Text | None, Query(description="e.g. invalid_json.")] = None,
    source: Annotated[Text | None, Query(description="The events' source.")] = None,
    since: SinceQuery = None,
) -> Response:
    """Dead letters in id order, open and replayed."""
    filters = dead_letter_reads.DeadLetterFilter(code=code, source=source, since=since)
    return await answer(paging, dead_letter_reads.dead_letter_listing(filters))


@router.get(
    "/v1/dead-letters/{letter_id}",
    **scoped(Scope.dlq_read),
    response_model=dead_letter_reads.DeadLetter,
)
async def show_dead_letter(caller: CallerDep, request: Request, letter_id: Id) -> JSONResponse:
    """One dead letter with its raw bytes: `raw_base64`, and `raw_text` when UTF-8."""
    async with raw_connection(request.app.state.engine) as conn:
        letter = await dead_letter_reads.dead_letter(conn, letter_id)
    if letter is None:
        raise ApiError(404, f"no dead letter {letter_id}")
    return shown(letter)
