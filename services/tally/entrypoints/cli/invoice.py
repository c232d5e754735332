"""``tally invoice …``: issued invoices, and the lineage of their lines."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from tally.adapters.postgres.reads import invoices, lineage
from tally.domain.pagination import DEFAULT_LIMIT
from tally.entrypoints.cli.context import all_rows, read_page, with_connection
from tally.entrypoints.cli.rendering import (
    AfterOption,
    Format,
    FormatOption,
    LimitOption,
    check_period,
    console,
    fail,
    print_invoice,
    print_page,
    print_rows,
    to_csv,
    to_html,
)

invoice_app = typer.Typer(help="Issued invoices: finalized, immutable.", no_args_is_help=True)


class DocumentFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


@invoice_app.command("list")
def invoice_list(
    period: Annotated[
        str | None,
        typer.Option(help="Billing period YYYY-MM; all when omitted.", callback=check_period),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Invoices, in number order."""
    listed = with_connection(lambda conn: all_rows(conn, invoices.invoice_listing(period=period)))
    print_rows(listed, fmt, "invoices" + (f" for {period}" if period else ""))


@invoice_app.command("show")
def invoice_show(
    org: Annotated[str, typer.Option(help="Organization.")],
    period: Annotated[str, typer.Option(help="Billing period YYYY-MM.", callback=check_period)],
    fmt: Annotated[
        DocumentFormat, typer.Option("--format", "-f", help="table, json, csv or html.")
    ] = DocumentFormat.table,
) -> None:
    """One invoice: lines per meter, AI tokens per feature, adjustments, total, entries."""
    found = with_connection(lambda conn: invoices.invoice(conn, org, period))
    if found is None:
        raise fail(f"no invoice for {org} in {period}: is the period closed (`tally close`)?")
    if fmt is DocumentFormat.json:
        print_rows(found.document.model_dump(), Format.json)
    elif fmt is DocumentFormat.csv:
        typer.echo(to_csv(found), nl=False)
    elif fmt is DocumentFormat.html:
        typer.echo(to_html(found), nl=False)
    else:
        print_invoice(found)
        for where, entries in sorted(found.entries.items()):
            ids = ", ".join(f"{entry.id} ({entry.kind})" for entry in entries)
            console.print(f"[dim]{where} bills entries {ids}[/dim]")


def _invoice_number(value: str) -> int:
    """``INV-000042`` or ``42``."""
    digits = value.upper().removeprefix("INV-")
    if not digits.isdigit() or int(digits) < 1:
        raise typer.BadParameter(f"{value!r} is not an invoice number (INV-000042 or 42)")
    return int(digits)


@invoice_app.command("lineage")
def invoice_lineage(
    number: Annotated[
        int, typer.Argument(metavar="NUMBER", help="INV-000042 or 42.", parser=_invoice_number)
    ],
    limit: LimitOption = DEFAULT_LIMIT,
    after: AfterOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Each invoice line -> the entries it bills -> the events they carry, a page at a time."""
    if not with_connection(lambda conn: lineage.invoice_exists(conn, number)):
        raise fail(f"no invoice {invoices.invoice_number(number)}")
    page = read_page(lineage.lineage_listing(number), after, limit)
    print_page(page, fmt, f"lineage of {invoices.invoice_number(number)}")


def register(app: typer.Typer) -> None:
    app.add_typer(invoice_app, name="invoice")
