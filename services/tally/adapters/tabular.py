"""Rows streamed to a text sink as CSV (with a header) or a JSON array, as they come:
memory does not grow with the size of the answer. Shared by the CLI, the API and the
benchmark."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Sequence
from enum import StrEnum
from typing import Protocol


class TextSink(Protocol):
    def write(self, text: str, /) -> int: ...


class StreamFormat(StrEnum):
    csv = "csv"
    json = "json"


async def write_stream(
    out: TextSink,
    fields: Sequence[str],
    rows: AsyncIterator[tuple[str, ...]],
    fmt: StreamFormat,
) -> int:
    """Write each row as it arrives; returns how many rows were written. JSON is an array
    of objects, one per line."""
    written = 0
    if fmt is StreamFormat.csv:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(fields)
        async for row in rows:
            writer.writerow(row)
            written += 1
        return written
    out.write("[")
    async for row in rows:
        out.write(("," if written else "") + "\n" + json.dumps(dict(zip(fields, row, strict=True))))
        written += 1
    out.write("\n]\n")
    return written
