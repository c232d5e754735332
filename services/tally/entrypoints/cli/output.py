"""Printing data: a Rich table for people, ``--format json`` (decimals as strings) for machines."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error stays on one line, for grep


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (readable) or json (decimals as strings).")
]


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def emit(rows: Sequence[dict[str, Any]] | dict[str, Any], fmt: Format, title: str = "") -> None:
    """Print ``rows`` (a list of flat dicts, or one dict) in the chosen format."""
    if fmt is Format.json:
        typer.echo(json.dumps(_plain(rows), indent=2, ensure_ascii=False))
        return
    items = [rows] if isinstance(rows, dict) else list(rows)
    if not items:
        console.print(f"[dim]{title + ': ' if title else ''}nothing to show[/dim]")
        return
    table = Table(title=title or None)
    for column in items[0]:
        numeric = isinstance(items[0][column], Decimal | int)
        table.add_column(column, justify="right" if numeric else "left")
    for item in items:
        table.add_row(*(str(_plain(item[column])) for column in items[0]))
    console.print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error and return the exit to raise."""
    errors.print(f"[bold red]error:[/bold red] {message}")
    return typer.Exit(code)


PERIOD = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def check_period(value: str | None) -> str | None:
    """Typer callback: a billing period is ``YYYY-MM``."""
    if value is not None and (not PERIOD.match(value) or not "0001" <= value[:4] <= "9998"):
        raise typer.BadParameter(f"{value!r} is not a period YYYY-MM")
    return value


def counting_bars() -> Progress:
    """Progress bars on stderr (stdout stays clean for JSON) that count done of total and
    vanish when the work is done."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=errors,
        transient=True,
    )
