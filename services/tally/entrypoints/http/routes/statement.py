"""A customer's statement of a sealed month (``tally statement export``), streamed as JSON
Lines: an organization's key that reads its invoices reads the evidence behind them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import StreamingResponse

from tally.adapters.postgres.reads import statement
from tally.domain.access import Scope
from tally.domain.statement import MEDIA_TYPE
from tally.entrypoints.http.auth import CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError, documented
from tally.entrypoints.http.lists import on_connection
from tally.entrypoints.http.params import RequiredPeriod
from tally.entrypoints.inputs import Text
from tally.entrypoints.plain import json_line

router = APIRouter(tags=["invoices"])
OrgPath = Annotated[Text, Path(description="Organization.")]
RESPONSES = {
    200: {
        "description": "JSON Lines: a header (the signed seals), the entries and events with "
        "their proofs, a trailer (the invoice's totals); see the docs' page Statements",
        "content": {MEDIA_TYPE: {"schema": {"type": "string"}}},
    },
    **documented(404),
}
CHUNK = 64 * 1024  # bytes sent at once


@router.get(
    "/v1/orgs/{org}/statement",
    **scoped(Scope.invoices_read, OrgBinding.path),
    responses=RESPONSES,
    response_class=StreamingResponse,
)
async def org_statement(
    caller: CallerDep, request: Request, org: OrgPath, period: RequiredPeriod
) -> StreamingResponse:
    """Every event of the organization in a sealed month with its Merkle inclusion proof,
    the month's signed seals and the invoice's totals, to check offline (`tally statement
    verify`, or the docs' script); 404 when the organization has no invoice for the period
    or the period no seal."""
    lines = on_connection(
        request.app.state.engine, lambda conn: statement.statement_lines(conn, org, period)
    )
    try:
        header = await anext(lines)
    except statement.NoStatement as exc:
        raise ApiError(404, str(exc)) from exc

    async def text() -> AsyncIterator[str]:
        pending = [json_line(header)]
        size = 0
        async for line in lines:
            pending.append(json_line(line))
            size += len(pending[-1])
            if size >= CHUNK:
                yield "".join(pending)
                pending.clear()
                size = 0
        yield "".join(pending)

    return StreamingResponse(text(), media_type=MEDIA_TYPE)
