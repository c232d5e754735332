"""``tally dlq …``: dead letters, listed and replayed."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress

from tally import bootstrap
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads
from tally.config import get_settings
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    errors,
    fail,
    print_rows,
)
from tally.service_layer.metering import replay_dead_letters

dlq_app = typer.Typer(
    help="Dead letters: rejected stream entries, kept whole.", no_args_is_help=True
)


@dlq_app.command("list")
def dlq_list(
    all_: Annotated[bool, typer.Option("--all", help="Include replayed dead letters.")] = False,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    fmt: FormatOption = Format.table,
) -> None:
    """Rejected entries with their reason (open ones unless --all)."""
    rows = with_engine(lambda engine: dead_letter_reads.dead_letters(engine, all_, limit))
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
    app.add_typer(dlq_app, name="dlq")
