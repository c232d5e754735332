"""``tally events show``: what became of an event; ``tally events void``: take one back."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from tally import bootstrap
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.reads.invoices import invoice_number
from tally.domain.events import MAX_REASON
from tally.domain.invoicing import quantity
from tally.domain.voids import VoidRefused, VoidRequest
from tally.entrypoints.cli.context import with_connection, with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    fail,
    print_rows,
)
from tally.service_layer import voids

MAX_ON_BEHALF = 200  # characters of --by (the record keeps at most 512 in all)
events_app = typer.Typer(help="What became of an event; void one.", no_args_is_help=True)


@events_app.command("show")
def events_show(
    source: Annotated[str, typer.Argument(help="The event's source.")],
    event_id: Annotated[str, typer.Argument(metavar="ID", help="The event's id.")],
    fmt: FormatOption = Format.table,
) -> None:
    """Status (metered, non_billable, recorded, duplicate, conflict, rejected), entry, the
    invoice that bills it (late: it arrived after its period was closed), and the event's
    optional CloudEvents attributes and extensions."""
    story = with_connection(lambda conn: event_reads.event_story(conn, source, event_id))
    if story is None:
        raise fail(f"no event ({source}, {event_id}) was ever received")
    if fmt is Format.json:
        print_rows(story.model_dump(), fmt)
        return
    console.print(f"[bold]({source}, {event_id})[/bold]: {story.status}")
    if story.billing:
        late = "[yellow]late[/yellow] · " if story.billing.late else ""
        console.print(f"billing: {late}{story.billing.detail}")
    if story.event:
        event = story.event.model_dump(exclude={"payload"})
        print_rows([{"field": k, "value": v} for k, v in event.items()], fmt, "event")
    if story.attributes:
        rows = [{"attribute": k, "value": v} for k, v in story.attributes.items()]
        print_rows(rows, fmt, "optional attributes and extensions")
    if entry := story.entry:
        console.print(
            f"entry {entry.id} ({entry.kind}, key {entry.idempotency_key}, "
            f"lane {entry.lane} seq {entry.seq}) carries {entry.events} event(s)"
        )
        print_rows([line.model_dump() for line in entry.lines], fmt, "entry lines")
    if void := story.void:
        by = void.asked_by
        asked = f" (tally.void ({by.source}, {by.id}))" if by else ""
        console.print(
            f"void of ({void.source}, {void.id}) by {void.requested_by}{asked} at "
            f"{void.voided_at:%Y-%m-%d %H:%M:%SZ}: {void.reason}"
        )
        console.print(
            f"usage reversal {void.reversal.id} ({void.reversal.idempotency_key}); "
            f"{void.billing.detail}"
        )
    if story.deliveries:
        deliveries = [delivery.model_dump() for delivery in story.deliveries]
        print_rows(deliveries, fmt, "other deliveries of this key")


@events_app.command("void")
def events_void(
    source: Annotated[str, typer.Argument(help="The event's source.")],
    event_id: Annotated[str, typer.Argument(metavar="ID", help="The event's id.")],
    reason: Annotated[
        str, typer.Option("--reason", help="Why (kept with the void, shown to auditors).")
    ],
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="On whose behalf (recorded after the operating-system user who runs it).",
        ),
    ] = None,
) -> None:
    """Take back a metered event: a usage reversal in its period (credited at the next close
    when that period is closed). Once per event, never undone; amend = void + a new event."""
    if not reason.strip() or len(reason) > MAX_REASON:
        raise fail(f"give --reason: some text, at most {MAX_REASON} characters", 2)
    if by is not None and (not by.strip() or len(by) > MAX_ON_BEHALF):
        raise fail(f"give --by: some text, at most {MAX_ON_BEHALF} characters", 2)
    requester = f"cli:{getpass.getuser()}" + (f" for {by}" if by else "")
    request = VoidRequest((source, event_id), reason, requester)
    try:
        done = with_engine(lambda engine: voids.void_event(bootstrap.database(engine), request))
    except VoidRefused as refused:
        raise fail(refused.reason) from refused
    unit = "requests" if done.meter == "api_request" else "AI tokens"
    console.print(
        f"voided ({source}, {event_id}): {quantity(-done.taken_back)} {unit} taken back from "
        f"{done.org}'s {done.period} by usage reversal {done.entry_id}"
    )
    if done.invoice is not None:
        console.print(
            f"{done.period} is invoiced ({invoice_number(done.invoice)}): the next close "
            "credits it as a prior-period adjustment"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
