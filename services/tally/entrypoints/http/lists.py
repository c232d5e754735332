"""Answering a list: one JSON page ``{"items": [...], "next": cursor|null}``, or, with
``Accept: text/csv`` or ``?format=csv``, CSV of every matching row (not one page), streamed
row by row from a server-side cursor so that memory stays flat whatever the size.

A list is a ``Listing`` of the read side (``tally.adapters.postgres.reads.listing``): its
page is the JSON, its rows the CSV."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

import asyncpg
from fastapi import Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import reads
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.listing import Paged
from tally.adapters.tabular import StreamFormat, text_stream
from tally.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, Cursors
from tally.entrypoints.http.errors import ApiError, ErrorBody
from tally.entrypoints.inputs import Text
from tally.entrypoints.plain import plain


class ListFormat(StrEnum):
    json = "json"
    csv = "csv"


FormatQuery = Annotated[
    ListFormat | None,
    Query(description="csv: every matching row as CSV (also `Accept: text/csv`)."),
]


class Formatting:
    """``?format=`` (or ``Accept: text/csv``) of every answer that can be CSV."""

    def __init__(
        self,
        request: Request,
        format: FormatQuery = None,
    ) -> None:
        self.engine: AsyncEngine = request.app.state.engine
        accept = request.headers.get("accept", "")
        self.csv = format is ListFormat.csv or (format is None and "text/csv" in accept)

    @property
    def stream_format(self) -> StreamFormat:
        return StreamFormat.csv if self.csv else StreamFormat.json


async def server_cursors(request: Request) -> Cursors:
    """The server's cursors: their key is read once, by the first request that needs it (a
    key replaced in the database takes a restart)."""
    state = request.app.state
    if getattr(state, "cursors", None) is None:
        async with raw_connection(state.engine) as conn:
            state.cursors = await reads.cursors(conn)
    cursors: Cursors = state.cursors
    return cursors


class Paging(Formatting):
    """``?limit=``, ``?cursor=`` and ``?format=`` of every list, and the server's cursors."""

    def __init__(
        self,
        request: Request,
        cursors: Annotated[Cursors, Depends(server_cursors)],
        limit: Annotated[
            int, Query(ge=1, le=MAX_LIMIT, description="Rows per page (JSON only).")
        ] = DEFAULT_LIMIT,
        cursor: Annotated[
            Text | None, Query(description="The `next` of the previous page.")
        ] = None,
        format: FormatQuery = None,
    ) -> None:
        super().__init__(request, format)
        self.cursors = cursors
        self.limit = limit
        self.cursor = cursor


FormattingDep = Annotated[Formatting, Depends()]
PagingDep = Annotated[Paging, Depends()]
CHUNK = 64 * 1024  # characters of a streamed answer sent at once
T = TypeVar("T")
# A list's 200: a JSON page, or the CSV of every matching row.


def json_or_csv(description: str | None = None) -> dict[int | str, dict[str, Any]]:
    """A 200 that is JSON, or CSV (``?format=csv`` / ``Accept: text/csv``), as the OpenAPI
    document declares it (clients and the lists' tests find CSV answers by it)."""
    csv = {"content": {"text/csv": {"schema": {"type": "string"}}}}
    return {200: csv if description is None else {"description": description, **csv}}


CURSOR_ERROR: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "`invalid_cursor`: not a `next` of this list"},
}
M = TypeVar("M", bound=BaseModel)


class ItemsPage(BaseModel, Generic[M]):
    """A list's JSON page, as the OpenAPI document declares it."""

    items: list[M]
    next: str | None  # the cursor of the next page; None: this is the last page


def list_of(row: type[BaseModel]) -> dict[int | str, dict[str, Any]]:
    """A list's answers in the OpenAPI document: a JSON page of ``row``s, or CSV of them
    all; a cursor it did not give out."""
    page = json_or_csv('`{"items": [...], "next": cursor or null}`, or CSV')[200]
    return {200: {**page, "model": ItemsPage[row]}, **CURSOR_ERROR}  # type: ignore[valid-type]


def invalid_cursor(exc: BadCursor) -> ApiError:
    return ApiError(400, str(exc), "invalid_cursor")


async def answer(paging: Paging, listing: Paged[Any]) -> Response:
    """The listing's page as JSON, or every row of it as CSV."""
    if paging.csv:
        rows = (cells(row) async for row in on_connection(paging.engine, listing.iter_rows))
        return stream_rows(StreamFormat.csv, listing.fields, rows)
    try:
        async with raw_connection(paging.engine) as conn:
            found = await listing.page(conn, paging.cursors, paging.cursor, paging.limit)
    except BadCursor as exc:
        raise invalid_cursor(exc) from exc
    return JSONResponse(
        {"items": [plain(row.model_dump()) for row in found.items], "next": found.next}
    )


def shown(found: BaseModel) -> JSONResponse:
    """One read's model as JSON (decimals as exact strings, instants in ISO 8601): the
    shape its route's ``response_model`` declares."""
    return JSONResponse(plain(found.model_dump()))


async def on_connection(
    engine: AsyncEngine, rows: Callable[[asyncpg.Connection], AsyncIterator[T]]
) -> AsyncIterator[T]:
    """``rows`` read on a connection of its own, taken when the first row is asked for."""
    async with raw_connection(engine) as conn:
        async for row in rows(conn):
            yield row


def stream_rows(
    fmt: StreamFormat, fields: Sequence[str] | None, rows: AsyncIterator[Sequence[Any]]
) -> StreamingResponse:
    """Every row as CSV or a JSON array, streamed; ``fields`` None: the first row is the
    header."""

    async def text() -> AsyncIterator[str]:
        header = list(fields) if fields is not None else list(await anext(rows))
        pending: list[str] = []
        size = 0
        async for piece in text_stream(header, rows, fmt):
            pending.append(piece)
            size += len(piece)
            if size >= CHUNK:  # a send per chunk, not per row: 10x the rows/s
                yield "".join(pending)
                pending.clear()
                size = 0
        yield "".join(pending)

    media = "text/csv" if fmt is StreamFormat.csv else "application/json"
    return StreamingResponse(text(), media_type=media)


def cells(row: BaseModel | Iterable[Any]) -> list[Any]:
    """A row's CSV cells: a model's fields, or the values in order; None is empty, a list
    or an object is its JSON."""
    values = row.model_dump().values() if isinstance(row, BaseModel) else row
    return [cell(plain(value)) for value in values]


def cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return value
