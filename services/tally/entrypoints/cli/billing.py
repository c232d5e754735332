"""Billing: ``tally close`` and ``tally invoice list|show``."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally import bootstrap
from tally.adapters.postgres import invoices
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import cursors, lineage
from tally.config import get_settings
from tally.domain.pagination import DEFAULT_LIMIT, MAX_LIMIT, BadCursor, Page
from tally.domain.period import previous_period
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    counting_bars,
    fail,
    parse_instant,
    print_invoice,
    print_rows,
    to_csv,
    to_html,
)
from tally.service_layer.month_close import CloseRefused, CloseReport, close_period

invoice_app = typer.Typer(help="Issued invoices: finalized, immutable.", no_args_is_help=True)


class DocumentFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"
    html = "html"


def close(
    period: Annotated[
        str | None,
        typer.Option(
            help="Billing period YYYY-MM; default: the previous UTC month.", callback=check_period
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The close's clock (RFC 3339), for tests and replays; default: now."
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Close a period: allocation, overage and expiry posted, one invoice per organization."""
    settings = get_settings()
    clock = parse_instant(as_of) or datetime.now(UTC)
    chosen = period or previous_period(clock)

    async def work(engine: Any) -> tuple[CloseReport, list[dict[str, Any]]]:
        with counting_bars() as bars:
            task = bars.add_task(f"closing {chosen}", total=None)
            report = await close_period(
                bootstrap.database(engine),
                chosen,
                clock,
                settings.close_grace,
                lambda done, total: bars.update(task, completed=done, total=total),
                settings.close_chunk,
            )
        return report, await invoices.list_invoices(engine, chosen)

    try:
        report, listed = with_engine(work)
    except CloseRefused as exc:
        raise fail(str(exc)) from exc
    if fmt is Format.json:
        print_rows({"period": chosen, "issued": report.issued, "invoices": listed}, fmt)
        return
    if report.waited:
        console.print("another close was running; waited for it")
    print_rows(listed, fmt, f"invoices for {chosen}")
    console.print(
        f"period {chosen} closed: {report.issued} invoice(s) issued by this run, "
        f"{report.invoices} in all"
        + ("" if report.issued else " (already closed: nothing changed)")
    )


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
    app.command("close")(close)
    app.add_typer(invoice_app, name="invoice")
