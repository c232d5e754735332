"""CSV cells a spreadsheet would run as formulas get a leading quote; numbers stay numbers."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest

from tally.adapters.tabular import StreamFormat, text_stream
from tally.domain.csv_cells import safe_row


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil.example","x")', '\'=HYPERLINK("http://evil.example","x")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-12.50", "-12.50"),  # a signed amount stays a number
        ("+3", "+3"),
        ("-1e-5", "-1e-5"),
        ("c-42", "c-42"),
        ("-\u0661\u0662", "'-\u0661\u0662"),  # Unicode digits are no number: quoted
        ("+\uff13", "'+\uff13"),  # a fullwidth 3
        ("-1e\u0665", "'-1e\u0665"),
        ("", ""),
        (Decimal("-80.00"), Decimal("-80.00")),
        (None, None),
    ],
)
def test_formula_cells_are_quoted_and_numbers_kept(cell: object, written: object) -> None:
    assert safe_row([cell]) == [written]


def test_streamed_csv_quotes_cells_and_json_is_unchanged() -> None:
    fields = ("client", "amount")

    async def rows() -> AsyncIterator[Sequence[str]]:
        yield ("=1+1", "-12.50")

    async def text(fmt: StreamFormat) -> str:
        return "".join([piece async for piece in text_stream(fields, rows(), fmt)])

    written = list(csv.reader(io.StringIO(asyncio.run(text(StreamFormat.csv)))))
    assert written == [["client", "amount"], ["'=1+1", "-12.50"]]
    assert '"client": "=1+1"' in asyncio.run(text(StreamFormat.json))
