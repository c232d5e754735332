"""Rows streamed as CSV (with a header) or a JSON array, as they come: memory does not
grow with the size of the answer. Shared by the CLI, the API and the benchmark. CSV cells
that a spreadsheet would run as formulas are made inert (``tally.domain.csv_cells``)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from typing import Protocol

from tally.domain.csv_cells import safe_row


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


class StreamFormat(StrEnum):
    csv = "csv"
    json = "json"


async def text_stream(
    fields: Sequence[str], rows: AsyncIterator[Sequence[str]], fmt: StreamFormat
) -> AsyncIterator[str]:
    """The answer's text piece by piece: the header (or the array's opening), one piece a
    row, then the closing. JSON is an array of objects, one per line."""
    if fmt is StreamFormat.csv:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(fields)
        async for row in rows:
            writer.writerow(safe_row(row))
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
        yield buffer.getvalue()  # the header alone, when there was no row
        return
    separator = "[\n"
    async for row in rows:
        yield separator + json.dumps(dict(zip(fields, row, strict=True)))
        separator = ",\n"
    yield ("[" if separator == "[\n" else "") + "\n]\n"


async def write_stream(
    out: TextSink,
    fields: Sequence[str],
    rows: AsyncIterator[Sequence[str]],
    fmt: StreamFormat,
) -> int:
    """Write each row as it arrives; returns how many rows were written."""
    written = 0

    async def counted() -> AsyncIterator[Sequence[str]]:
        nonlocal written
        async for row in rows:
            written += 1
            yield row

    async for text in text_stream(fields, counted(), fmt):
        out.write(text)
    return written
