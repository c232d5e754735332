"""The period's general ledger in the AICPA Audit Data Standard (``tally ledger export``),
streamed as CSV or a JSON array in flat memory."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse

from tally.adapters.postgres.reads import gl_export
from tally.adapters.postgres.reads.gl_export import Shape, Standard
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.lists import FormattingDep, json_or_csv, on_connection, stream_rows
from tally.entrypoints.http.params import RequiredPeriod

router = APIRouter(tags=["ledger"])
RESPONSES = json_or_csv("A JSON array of rows, or CSV, with the standard's field names")


@router.get("/v1/gl-export", **scoped(Scope.ledger_read), responses=RESPONSES)
async def export_general_ledger(
    caller: CallerDep,
    answer: FormattingDep,
    period: RequiredPeriod,
    standard: Annotated[
        Standard, Query(description="ads: the AICPA Audit Data Standard.")
    ] = Standard.ads,
    shape: Annotated[
        Shape, Query(description="gl-detail (a row per entry line) or trial-balance.")
    ] = Shape.gl_detail,
) -> Response:
    """Every row of the period, streamed. Units that are not money (api_request, ai_token)
    stand in the amountCurrency column."""
    if shape is Shape.gl_detail and answer.csv:  # PostgreSQL writes the CSV itself (COPY)
        copy = on_connection(answer.engine, lambda conn: gl_export.gl_detail_csv(conn, period))
        return StreamingResponse(copy, media_type="text/csv")
    fields, rows = gl_export.shaped(shape)
    read = on_connection(answer.engine, lambda conn: rows(conn, period))
    return stream_rows(answer.stream_format, fields, read)
