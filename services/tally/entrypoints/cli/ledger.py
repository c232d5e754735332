"""Looking at the ledger: balances, verification, an event's story, dead letters."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress

from tally import bootstrap
from tally.adapters.postgres import ledger_queries, seals
from tally.adapters.postgres.verification import verify
from tally.config import get_settings
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    errors,
    fail,
    print_rows,
)
from tally.entrypoints.plain import verification_summary
from tally.service_layer.metering import replay_dead_letters

ledger_app = typer.Typer(help="Balances and tamper evidence.", no_args_is_help=True)
events_app = typer.Typer(help="What became of an event.", no_args_is_help=True)
dlq_app = typer.Typer(
    help="Dead letters: rejected stream entries, kept whole.", no_args_is_help=True
)


@ledger_app.command("balances")
def balances(
    org: Annotated[str, typer.Option(help="Organization (or 'platform').")],
    period: Annotated[
        str | None,
        typer.Option(help="Billing period YYYY-MM; all when omitted.", callback=check_period),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Each account's balance (debits positive) for an organization and period."""
    rows = with_engine(lambda engine: ledger_queries.balances(engine, org, period))
    print_rows(rows, fmt, f"balances of {org}" + (f" for {period}" if period else ""))


@ledger_app.command("verify")
def verify_command(
    period: Annotated[
        str | None,
        typer.Option(
            help="Recompute only this period's month seals (YYYY-MM); every other check "
            "covers the whole ledger.",
            callback=check_period,
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Balanced entries, linked events, intact hash chains, invoices and deliveries all
    there, every month seal recomputed; exit 1 on any finding."""
    result = with_engine(lambda engine: verify(engine, period))
    summary = verification_summary(result)
    findings = summary["findings"]
    if fmt is Format.json:
        print_rows(summary, fmt)
    else:
        console.print(
            f"checked {result.entries} entries, {result.lines} lines, {result.events} events, "
            f"{result.lanes} lanes, {result.tallies} delivery tallies, {result.seals} month seals"
        )
        if result.findings:
            print_rows(findings, fmt, "findings")
        else:
            console.print("[green]✓ ledger verified: no findings[/green]")
    if not result.ok:
        raise typer.Exit(1)


@ledger_app.command("prove")
def prove(
    entry_id: Annotated[int, typer.Argument(metavar="ENTRY_ID", help="A journal entry's id.")],
    json_: Annotated[bool, typer.Option("--json", help="The same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """The Merkle inclusion proof of one entry in its period's month seal: check it with
    the README's script, against the root printed on the period's invoices."""
    try:
        proof = with_engine(lambda engine: seals.prove_entry(engine, entry_id))
    except seals.NotSealed as exc:
        raise fail(str(exc)) from exc
    if proof is None:
        raise fail(f"there is no entry {entry_id}")
    if json_ or fmt is Format.json:
        print_rows(proof.model_dump(), Format.json)
        return
    console.print(
        f"entry {proof.entry_id} is leaf {proof.index} of {proof.entries} in seal "
        f"{proof.sequence} of {proof.period} (sealed {proof.sealed_at.isoformat()})"
    )
    console.print(f"leaf (the entry's hash): {proof.leaf}", highlight=False)
    print_rows([step.model_dump() for step in proof.siblings], fmt, "siblings, leaf to root")
    console.print(f"root: {proof.root}", highlight=False)


@events_app.command("show")
def events_show(
    source: Annotated[str, typer.Argument(help="The event's source.")],
    event_id: Annotated[str, typer.Argument(metavar="ID", help="The event's id.")],
    fmt: FormatOption = Format.table,
) -> None:
    """Status (metered, non_billable, recorded, duplicate, conflict, rejected), entry, the
    invoice that bills it (late: it arrived after its period was closed), and the event's
    optional CloudEvents attributes and extensions."""
    story = with_engine(lambda engine: ledger_queries.event_story(engine, source, event_id))
    if story is None:
        raise fail(f"no event ({source}, {event_id}) was ever received")
    if fmt is Format.json:
        print_rows(story, fmt)
        return
    console.print(f"[bold]({source}, {event_id})[/bold]: {story['status']}")
    if story["billing"]:
        late = "[yellow]late[/yellow] · " if story["billing"]["late"] else ""
        console.print(f"billing: {late}{story['billing']['detail']}")
    if story["event"]:
        event = {k: v for k, v in story["event"].items() if k != "payload"}
        print_rows([{"field": k, "value": v} for k, v in event.items()], fmt, "event")
    if story["attributes"]:
        rows = [{"attribute": k, "value": v} for k, v in story["attributes"].items()]
        print_rows(rows, fmt, "optional attributes and extensions")
    if story["entry"]:
        entry: dict[str, Any] = story["entry"]
        console.print(
            f"entry {entry['id']} ({entry['kind']}, key {entry['idempotency_key']}, "
            f"lane {entry['lane']} seq {entry['seq']}) carries {entry['events']} event(s)"
        )
        print_rows(entry["lines"], fmt, "entry lines")
    if story["deliveries"]:
        print_rows(story["deliveries"], fmt, "other deliveries of this key")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Include replayed dead letters.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    fmt: FormatOption = Format.table,
) -> None:
    """Rejected entries with their reason (open ones unless --all)."""
    rows = with_engine(lambda engine: ledger_queries.dead_letters(engine, all_, limit))
    print_rows(rows, fmt, "dead letters")


@dlq_app.command("replay")
def dlq_replay(
    dead_letter: Annotated[
        int | None, typer.Argument(metavar="[ID]", help="One dead letter's id.")
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every open dead letter.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Meter dead letters again after a fix (e.g. the organization now exists). Idempotent."""
    if (dead_letter is None) == (not all_):
        raise fail("give one dead letter ID, or --all", 2)
    settings = get_settings()

    async def work(engine: Any) -> dict[int, str]:
        service = bootstrap.metering_service(engine, settings)
        ids = None if all_ else [dead_letter] if dead_letter is not None else None
        with Progress(console=errors, transient=True) as progress:
            task = progress.add_task("replaying dead letters", total=None)
            return await replay_dead_letters(
                service, ids, settings.batch_size, lambda n: progress.advance(task, n)
            )

    outcomes = with_engine(work)
    if dead_letter is not None and not outcomes:
        raise fail(f"dead letter {dead_letter} does not exist or was already replayed")
    print_rows(
        [{"id": key, "outcome": value} for key, value in sorted(outcomes.items())],
        fmt,
        "replayed",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
    app.add_typer(events_app, name="events")
    app.add_typer(dlq_app, name="dlq")
