"""CSV cells that a spreadsheet would run as a formula, made inert as OWASP recommends.

A text cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
single quote in front: a spreadsheet shows it as text (``'=HYPERLINK(...)``), never as a
live formula. A plain number is left alone (``-12.50``, ``+3``, ``1e-5``): a ledger's
signed amounts stay numbers, and a number is no formula. Every CSV that Tally writes goes
through ``safe_row``; JSON is never changed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypeVar

FORMULA_STARTS = frozenset("=+-@\t\r")
# ASCII digits only: \d would take "-١٢" (Arabic-Indic digits) for a number and leave it
NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)
T = TypeVar("T")


def safe_cell(cell: T) -> T | str:
    if isinstance(cell, str) and cell[:1] in FORMULA_STARTS and not NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


def safe_row(row: Iterable[T]) -> list[T | str]:
    return [safe_cell(cell) for cell in row]
