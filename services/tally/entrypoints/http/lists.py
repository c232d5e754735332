"""Answering a list: one JSON page ``{"items": [...], "next": cursor|null}``, or, with
``Accept: text/csv`` or ``?format=csv``, CSV of every matching row (not one page), streamed
row by row from a server-side cursor so that memory stays flat whatever the size."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import listing as listings
from tally.adapters.postgres.listing import Listing
from tally.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, decode_cursor, page_of
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.plain import plain


class ListFormat(StrEnum):
    json = "json"
    csv = "csv"


class Paging:
    """``?limit=``, ``?cursor=`` and ``?format=`` of every list."""

    def __init__(
        self,
        request: Request,
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Rows per page (JSON only).")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[str | None, Query(description="The `next` of the previous page.")] = None,
        format: Annotated[
            ListFormat | None,
            Query(description="csv: every matching row as CSV (also `Accept: text/csv`)."),
        ] = None,
    ) -> None:
        self.engine: AsyncEngine = request.app.state.engine
        self.limit = limit
        self.cursor = cursor
        accept = request.headers.get("accept", "")
        self.csv = format is ListFormat.csv or (format is None and "text/csv" in accept)


PagingDep = Annotated[Paging, Depends()]
# A list's 200: a JSON page, or the CSV of every matching row.
LIST_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": '`{"items": [...], "next": cursor or null}`, or CSV',
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


async def answer(paging: Paging, listing: Listing) -> Response:
    if paging.csv:
        return StreamingResponse(_csv(paging.engine, listing), media_type="text/csv")
    try:
        after = None if paging.cursor is None else decode_cursor(paging.cursor, listing.shape)
    except BadCursor as exc:
        raise ApiError(400, str(exc), "invalid_cursor") from exc
    rows = await listings.fetch(paging.engine, listing, after, paging.limit + 1)
    page = page_of(rows, paging.limit)
    return JSONResponse({"items": [plain(row.values) for row in page.items], "next": page.next})


async def _csv(engine: AsyncEngine, listing: Listing) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    async for row in listings.stream(engine, listing):
        writer.writerow(_cell(value) for value in row.values())
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _cell(value: Any) -> Any:
    return "" if value is None else plain(value)
