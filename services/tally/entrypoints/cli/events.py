"""``tally events show``: what became of an event."""

from __future__ import annotations

from typing import Annotated

import typer

from tally.adapters.postgres.reads import events as event_reads
from tally.entrypoints.cli.context import with_connection
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    fail,
    print_rows,
)

events_app = typer.Typer(help="What became of an event.", no_args_is_help=True)


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
    if story.deliveries:
        deliveries = [delivery.model_dump() for delivery in story.deliveries]
        print_rows(deliveries, fmt, "other deliveries of this key")


def register(app: typer.Typer) -> None:
    app.add_typer(events_app, name="events")
