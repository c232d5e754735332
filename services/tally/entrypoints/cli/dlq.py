"""``tally dlq …``: dead letters, listed and replayed."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress

from tally import bootstrap
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads
from tally.config import get_settings
from tally.domain.pagination import DEFAULT_LIMIT
from tally.entrypoints.cli.context import read_page, with_engine
from tally.entrypoints.cli.rendering import (
    AfterOption,
    Format,
    FormatOption,
    LimitOption,
    errors,
    fail,
    print_page,
    print_rows,
)
from tally.service_layer.metering import replay_dead_letters

dlq_app = typer.Typer(
    help="Dead letters: rejected stream entries, kept whole.", no_args_is_help=True
)


TABLE_COLUMNS = ("id", "received_at", "code", "source", "event_id", "state", "reason")


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Include replayed dead letters.")] = False,
    code: Annotated[str | None, typer.Option(help="Only this code, e.g. invalid_json.")] = None,
    source: Annotated[str | None, typer.Option(help="Only the events of this source.")] = None,
    limit: LimitOption = DEFAULT_LIMIT,
    after: AfterOption = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Rejected entries with their reason (open ones unless --all), oldest first, a page at
    a time: the rows of `GET /v1/dead-letters`."""
    filters = dead_letter_reads.DeadLetterFilter(
        code=code, source=source, state=None if all_ else "open"
    )
    page = read_page(dead_letter_reads.dead_letter_listing(filters), after, limit)
    print_page(page, fmt, "dead letters", TABLE_COLUMNS)


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
    app.add_typer(dlq_app, name="dlq")
