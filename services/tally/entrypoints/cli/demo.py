"""``tally demo``: migrate, add organizations, publish a month of usage, meter, close the
month, show the invoices, verify."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from tally.entrypoints.cli.context import engine_for, run, settings_and_urls
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    errors,
    print_invoice,
    print_rows,
    tally_command,
)

if TYPE_CHECKING:
    from tally_tools.demo import DemoResult


def demo(
    events: Annotated[int, typer.Option(min=1, help="Stream entries to publish.")] = 20_000,
    seed: Annotated[
        int, typer.Option(help="Same seed, same events: a rerun is all duplicates.")
    ] = 7,
    fmt: FormatOption = Format.table,
) -> None:
    """Run Tally end to end (on embedded servers unless TALLY_DATABASE_URL/REDIS_URL are set)."""
    from tally_tools.demo import run_demo  # only here: `tally` starts without the demo tools

    started = time.perf_counter()
    settings, urls = settings_and_urls()
    screen = console if fmt is Format.table else errors  # JSON alone on stdout
    where = f"embedded servers in {settings.data_dir}" if urls.embedded else "configured servers"
    screen.print(f"[bold]Tally demo[/bold] on {where}, stream {settings.stream!r}")
    tasks: dict[str, TaskID] = {}

    with Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), console=screen
    ) as bars:

        def progress(what: str, done: int, total: int) -> None:
            if what not in tasks:
                tasks[what] = bars.add_task(what, total=total)
            bars.update(tasks[what], completed=done, total=max(total, done))

        async def main() -> DemoResult:
            async with engine_for(urls) as engine:
                return await run_demo(
                    settings,
                    urls,
                    engine,
                    events,
                    seed,
                    lambda line: bars.console.print(f"[green]✓[/green] {line}"),
                    progress,
                )

        result = run(main())

    verification = result.verification
    assert verification is not None
    if fmt is Format.json:
        print_rows(_as_data(result), fmt)
    else:
        _show(result)
        tally = tally_command()
        console.print(
            f"\ndone in {time.perf_counter() - started:.1f}s. Try: {tally} ledger balances "
            f"--org acme --period {result.period} · {tally} invoice show --org acme --period "
            f"{result.period} --format html · {tally} invoice reproduce --all · "
            f"{tally} dlq list · {tally} events show SOURCE ID · {tally} stop",
            soft_wrap=True,
        )
        _show_api(result, settings.api_host, settings.api_port)
    if not verification.ok:
        raise typer.Exit(1)


def _as_data(result: DemoResult) -> dict[str, Any]:
    assert result.verification is not None
    return {
        "period": result.period,
        "published": result.summary.as_dict(),
        "consumed": dict(result.consumed),
        "balances": {
            org: [row.model_dump() for row in rows] for org, rows in result.balances.items()
        },
        "dead_letters": {c.code: c.open for c in result.dead_letters if c.open},
        "invoices": {
            org: invoice.document.model_dump() for org, invoice in result.invoices.items()
        },
        "verified": result.verification.ok,
        "findings": [vars(finding) for finding in result.verification.findings],
        "api_key": result.api_key.secret if result.api_key else None,
        "dashboard": f"/ui/orgs/{DASHBOARD_ORG}?period={result.period}",
    }


DASHBOARD_ORG = "globex"  # the demo's mix gives it API requests and AI usage alike


def _show_api(result: DemoResult, host: str, port: int) -> None:
    """How to open the HTTP API with the auditor's key the demo made (shown once)."""
    assert result.api_key is not None
    url = f"http://{host}:{port}"
    tally = tally_command()
    console.print(
        f"\n[bold]the HTTP API[/bold]: run `{tally} serve`, then open {url}/openapi.json or\n"
        f"  curl -H 'Authorization: Bearer {result.api_key.secret}' "
        f"'{url}/v1/invoices?period={result.period}'\n"
        f"[bold]the dashboard[/bold]: {url}/ui/orgs/{DASHBOARD_ORG}?period={result.period} "
        f"(sign in with the same key; the API usage report: {url}/ui/orgs/{DASHBOARD_ORG}/api-usage"
        "?preset=last-month)\n"
        f"[dim](an auditor's key, shown once; `{tally} apikey list` lists keys, "
        f"`{tally} apikey revoke {result.api_key.id}` disables it)[/dim]",
        soft_wrap=True,
    )


def _show(result: DemoResult) -> None:
    from tally_tools.demo import DEMO_ORGS  # loaded by then (demo imports it)

    summary = result.summary
    console.print(
        f"\npublished {summary.entries} entries for {result.period}: "
        + ", ".join(f"{count} {kind}" for kind, count in summary.by_type.items())
        + f", {summary.duplicates} duplicates, {summary.bad_total} bad"
    )
    consumed = result.consumed
    console.print("metered: " + ", ".join(f"{v} {k}" for k, v in sorted(consumed.items())))
    for org, accounts in result.balances.items():
        used = next((a.balance for a in accounts if a.account.endswith("api_request/usage")), 0)
        expected = result.billable_requests(org)
        mark = "[green]✓[/green]" if used == expected else "[red]✗[/red]"
        console.print(
            f"  {mark} {org} ({DEMO_ORGS[org]}): {used:f} billable API requests metered "
            f"({expected} sent)"
        )
    print_rows(
        [{"code": c.code, "dead letters": c.open} for c in result.dead_letters if c.open],
        Format.table,
        f"dead letters ({tally_command()} dlq list)",
    )
    console.print(f"\n[bold]invoices for {result.period}[/bold] ({tally_command()} invoice show)")
    for invoice in result.invoices.values():
        print_invoice(invoice)
    verification = result.verification
    assert verification is not None
    if verification.ok:
        console.print(
            f"[green]✓ ledger verified[/green]: {verification.entries} entries, "
            f"{verification.events} events, {verification.lanes} hash-chained lanes"
        )
    else:
        print_rows([vars(f) for f in verification.findings], Format.table, "verification findings")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
