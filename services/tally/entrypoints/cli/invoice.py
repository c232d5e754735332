"""``tally invoice …``: issued invoices, and the lineage of their lines."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import cursors, invoices, lineage
from tally.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, Page
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    fail,
    print_invoice,
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
    listed = with_engine(lambda engine: invoices.list_invoices(engine, period))
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
    found = with_engine(lambda engine: invoices.invoice(engine, org, period))
    if found is None:
        raise fail(f"no invoice for {org} in {period}: is the period closed (`tally close`)?")
    if fmt is DocumentFormat.json:
        print_rows(found.document, Format.json)
    elif fmt is DocumentFormat.csv:
        typer.echo(to_csv(found), nl=False)
    elif fmt is DocumentFormat.html:
        typer.echo(to_html(found), nl=False)
    else:
        print_invoice(found)
        for where, entries in sorted(found.entries.items()):
            ids = ", ".join(f"{entry['id']} ({entry['kind']})" for entry in entries)
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
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT, help="Rows per page.")] = (
        DEFAULT_LIMIT
    ),
    after: Annotated[
        str | None, typer.Option(help="Continue after this cursor (the previous page's next).")
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Each invoice line -> the entries it bills -> the events they carry, a page at a time."""

    async def work(engine: AsyncEngine) -> Page[lineage.LineageRow] | None:
        async with raw_connection(engine) as conn:
            return await lineage.lineage(conn, number, await cursors(conn), after, limit)

    try:
        page = with_engine(work)
    except BadCursor as exc:
        raise fail(str(exc), 2) from exc
    if page is None:
        raise fail(f"no invoice {invoices.invoice_number(number)}")
    items = [row.model_dump() for row in page.items]
    if fmt is Format.json:
        print_rows({"items": items, "next": page.next}, fmt)
        return
    print_rows(items, fmt, f"lineage of {invoices.invoice_number(number)}")
    if page.next:
        console.print(f"[dim]more: add --after {page.next}[/dim]", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(invoice_app, name="invoice")
