"""``tally invoice …``: issued invoices, and the lineage of their lines."""

from __future__ import annotations

import dataclasses
from enum import StrEnum
from typing import Annotated, Any

import typer

from tally import bootstrap
from tally.adapters.postgres.reads import invoices, lineage
from tally.domain.pagination import DEFAULT_LIMIT
from tally.entrypoints.cli.context import all_rows, read_page, with_connection, with_engine
from tally.entrypoints.cli.rendering import (
    AfterOption,
    Format,
    FormatOption,
    LimitOption,
    check_period,
    console,
    counting_bars,
    fail,
    print_invoice,
    print_page,
    print_rows,
    to_csv,
    to_html,
)
from tally.service_layer.reproduce import (
    NoSuchInvoice,
    Reproduction,
    reproduce,
    reproduce_all,
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


@invoice_app.command("reproduce")
def invoice_reproduce(
    number: Annotated[
        int | None,
        typer.Argument(metavar="[NUMBER]", help="INV-000042 or 42.", parser=_invoice_number),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Every invoice, in number order.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per invoice.")] = False,
) -> None:
    """Recompute invoices from the stored raw events alone, through the close's own rules,
    and compare each with the stored one byte for byte, and its input digest with the one
    the close recorded. Exit 0 only when every invoice reproduces, 1 otherwise."""
    if (number is not None) == every:
        raise fail("name one invoice (NUMBER) or --all", 2)

    async def work(engine: Any) -> list[Reproduction]:
        db = bootstrap.database(engine)
        if number is not None:
            return [await reproduce(db, number)]
        with counting_bars() as bars:
            task = bars.add_task("reproducing invoices", total=None)
            return await reproduce_all(
                db, lambda done, total: bars.update(task, completed=done, total=total)
            )

    try:
        done = with_engine(work)
    except NoSuchInvoice as exc:
        raise fail(str(exc), 2) from exc
    if as_json:
        rows = [{**dataclasses.asdict(r), "reproduced": r.reproduced} for r in done]
        print_rows(rows[0] if number is not None else rows, Format.json)
    else:
        for result in done:
            _print_reproduction(result)
        if every:
            failed = [r.number for r in done if not r.reproduced]
            summary = f"{len(done) - len(failed)} of {len(done)} invoices reproduce"
            console.print(summary + (f"; not: {', '.join(failed)}" if failed else ""))
    if not all(r.reproduced for r in done):
        raise typer.Exit(1)


def _print_reproduction(result: Reproduction) -> None:
    """One invoice's verdict, then each difference on a line of its own."""
    what = f"{result.number} ({result.org} {result.period}, {result.currency} {result.total})"
    if result.digest is None:
        digest = "no input digest (issued before invoices carried one)"
    elif result.digest == result.digest_now:
        digest = f"input digest {result.digest[:16]}… matches"
    else:
        digest = f"input digest {result.digest[:16]}… recorded, {result.digest_now[:16]}… now"
    if result.reproduced:
        console.print(
            f"{what}: reproduced byte for byte from {result.events} events; {digest}",
            highlight=False,
            soft_wrap=True,  # one line per invoice, whatever the terminal's width
        )
        return
    console.print(
        f"[bold red]{what}: does not reproduce[/bold red]; {digest}",
        highlight=False,
        soft_wrap=True,
    )
    for line in (*result.differences, *result.digest_differences, *result.events_changed):
        console.print(f"  - {line}", highlight=False, markup=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.add_typer(invoice_app, name="invoice")
