"""Presentation for the CLI: rows as a Rich table or JSON (decimals as strings), errors,
progress bars, and an invoice as a table, CSV or a standalone HTML page."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from html import escape
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from tally.adapters.postgres.reads.invoices import Invoice, InvoiceSeal, InvoiceSealSignature
from tally.domain.csv_cells import safe_row
from tally.domain.invoicing import FEATURES_USED
from tally.domain.pagination import MAX_LIMIT, Page
from tally.domain.period import is_period
from tally.entrypoints.plain import plain

console = Console()
errors = Console(stderr=True, soft_wrap=True)  # an error stays on one line, for grep


def tally_command() -> str:
    """How the user started ``tally``, so that a command printed for them runs as printed:
    ``uv run tally`` under ``uv run`` (its venv is not on the user's own PATH)."""
    return "uv run tally" if os.environ.get("UV_RUN_RECURSION_DEPTH") else "tally"


class Format(StrEnum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    Format, typer.Option("--format", "-f", help="table (readable) or json (decimals as strings).")
]


def print_rows(
    rows: Sequence[dict[str, Any]] | dict[str, Any], fmt: Format, title: str = ""
) -> None:
    """Print ``rows`` (a list of flat dicts, or one dict) in the chosen format."""
    if fmt is Format.json:
        typer.echo(json.dumps(plain(rows), indent=2, ensure_ascii=False))
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
        table.add_row(*(str(plain(item[column])) for column in items[0]))
    console.print(table)


M = TypeVar("M", bound=BaseModel)


def print_page(
    page: Page[M], fmt: Format, title: str, columns: Sequence[str] | None = None
) -> None:
    """A page of a list as the API answers it in JSON (``items`` and ``next``), or as a
    table of ``columns`` (default: all) with the option that shows the next page."""
    items = [row.model_dump() for row in page.items]
    if fmt is Format.json:
        print_rows({"items": items, "next": page.next}, fmt)
        return
    if columns is not None:
        items = [{column: item[column] for column in columns} for item in items]
    print_rows(items, fmt, title)
    if page.next:
        console.print(f"[dim]more: add --after {page.next}[/dim]", highlight=False)


LimitOption = Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="Rows per page.")]
AfterOption = Annotated[
    str | None, typer.Option(help="Continue after this cursor (the previous page's next).")
]


def print_fields(fields: dict[str, Any], title: str = "") -> None:
    """One record as a two-column table (figure, value): readable in an 80-column terminal
    however many figures it has."""
    table = Table(title=title or None)
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for name, value in fields.items():
        table.add_row(name.replace("_", " "), str(plain(value)))
    console.print(table)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error and return the exit to raise."""
    errors.print(f"[bold red]error:[/bold red] {message}")
    return typer.Exit(code)


def check_period(value: str | None) -> str | None:
    """Typer callback: a billing period is ``YYYY-MM``."""
    if value is not None and not is_period(value):
        raise typer.BadParameter(f"{value!r} is not a period YYYY-MM")
    return value


def parse_instant(value: str | None) -> datetime | None:
    """An RFC 3339 option value (with its UTC offset), or None."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a timestamp (e.g. 2026-12-02T00:00:00Z)"
        ) from exc
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} has no UTC offset (add Z or +HH:MM)")
    if not 1970 <= parsed.year <= 9998:
        raise typer.BadParameter(f"{value!r} is out of range (years 1970 to 9998)")
    return parsed


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


# --- invoices ----------------------------------------------------------------------------

COLUMNS = ("meter", "description", "allocation", "used", "overage", "unit_price", "amount")


def _text(value: Any) -> str:
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def seal_text(seal: InvoiceSeal, signed: InvoiceSealSignature | None) -> str:
    """The month seal on an invoice, and its signature when it has one: what a customer
    keeps to check the ledger later."""
    text = (
        f"month seal {seal.sequence}: SHA-256 Merkle root {seal.root} over "
        f"{seal.entries} entries, sealed {plain(seal.sealed_at)}"
    )
    if signed is None:
        return text + "; not signed yet"
    return (
        f"{text}; {signed.algorithm} signature {signed.signature} by key {signed.key_id} "
        f"(public keys: {signed.keys})"
    )


def rows(invoice: Invoice) -> list[dict[str, str]]:
    """One row per line, per AI feature, per adjustment, the total, and the month seal
    (when the period has one): what CSV, HTML and the table show."""
    doc = invoice.document
    out = []
    for line in doc.lines:
        out.append({"kind": "line", **{column: _text(getattr(line, column)) for column in COLUMNS}})
        if line.meter == "ai_tokens":
            out.extend(
                {"kind": "feature", "meter": "ai_tokens", "description": feature,
                 "used": _text(tokens)}
                for feature, tokens in sorted(invoice.features.items())
            )  # fmt: skip
    for adjustment in doc.adjustments:
        out.append(
            {
                "kind": "adjustment",
                "meter": adjustment.meter,
                "description": f"{adjustment.invoice}: {adjustment.description}",
                "amount": _text(adjustment.amount),
            }
        )
    out.append({"kind": "total", "description": doc.currency, "amount": _text(doc.total)})
    if doc.seal:
        out.append({"kind": "seal", "description": seal_text(doc.seal, doc.seal_signature)})
    return [{column: row.get(column, "") for column in ("kind", *COLUMNS)} for row in out]


def to_csv(invoice: Invoice) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("kind", *COLUMNS))
    writer.writerows(safe_row(row.values()) for row in rows(invoice))
    return buffer.getvalue()


def to_html(invoice: Invoice) -> str:
    doc = invoice.document
    title = f"Invoice {doc.number}: {doc.org}, {doc.period}"
    header = "".join(f"<th>{escape(column)}</th>" for column in ("kind", *COLUMNS))
    body = "\n".join(
        "<tr>" + "".join(f"<td>{escape(value)}</td>" for value in row.values()) + "</tr>"
        for row in rows(invoice)
    )
    entries = "\n".join(
        f"<li>{escape(where)}: entries "
        + ", ".join(escape(f"{e.id} ({e.kind})") for e in listed)
        + "</li>"
        for where, listed in sorted(invoice.entries.items())
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em}}td:nth-child(n+4){{text-align:right}}</style>
</head><body>
<h1>{escape(title)}</h1>
<p>Status: {escape(doc.status)} &middot; currency {escape(doc.currency)} &middot;
issued {escape(invoice.issued_at.isoformat())}</p>
<table><thead><tr>{header}</tr></thead><tbody>
{body}
</tbody></table>
<h2>Entries billed</h2><ul>
{entries}
</ul></body></html>
"""


def print_invoice(invoice: Invoice) -> None:
    """The invoice for people: one row per line, AI feature and adjustment, then the
    descriptions (the table stays narrow enough for a terminal)."""
    doc = invoice.document
    table = Table(
        title=" · ".join((doc.number, doc.org, doc.period, doc.currency, doc.status)),
        title_justify="left",
    )
    table.add_column("item")
    for column in ("allocation", "used", "overage", "unit price", "amount"):
        table.add_column(column, justify="right")
    notes = []
    for row in rows(invoice):
        if row["kind"] == "seal":
            notes.append(row["description"])
            continue
        if row["kind"] == "line":
            notes.append(f"{row['meter']}: {row['description'].split(FEATURES_USED)[0]}")
            item = row["meter"]
        elif row["kind"] == "feature":
            item = f"  {row['description']}"
        elif row["kind"] == "adjustment":
            notes.append(f"adjustment, {row['meter']}: {row['description']}")
            item = f"adjustment {row['meter']}"
        else:
            table.add_section()
            item = f"total {row['description']}"
        table.add_row(
            item, row["allocation"], row["used"], row["overage"], row["unit_price"], row["amount"]
        )
    console.print(table)
    for note in notes:
        console.print(f"  [dim]{note}[/dim]", highlight=False)
