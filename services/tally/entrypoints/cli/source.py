"""``tally source …``: which producer source may bill which organizations."""

from __future__ import annotations

from typing import Annotated

import typer

from tally.adapters.postgres import sources
from tally.adapters.postgres.reads import sources as source_reads
from tally.adapters.postgres.reads.sources import SourceVersion
from tally.entrypoints.cli.context import with_connection, with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    fail,
    print_rows,
)

source_app = typer.Typer(
    help="Producer sources: which event source may bill which organizations.",
    no_args_is_help=True,
)


@source_app.command("add")
def source_add(
    name: Annotated[str, typer.Argument(help="The events' CloudEvents source.")],
    orgs: Annotated[
        str | None, typer.Option(help="Comma-separated organizations it may bill (all of them).")
    ] = None,
    any_org: Annotated[bool, typer.Option("--any-org", help="It may bill any organization.")] = (
        False
    ),
) -> None:
    """Register a source, or change what it may bill (a new version; the newest counts)."""
    if (orgs is None) == (not any_org):
        raise fail("give --orgs a,b (the organizations it may bill) or --any-org", 2)
    listed = None if orgs is None else [org.strip() for org in orgs.split(",") if org.strip()]
    try:
        added = with_engine(lambda engine: sources.add(engine, name, listed))
    except sources.SourceError as exc:
        raise fail(str(exc), 2) from exc
    scope = "any organization" if listed is None else ", ".join(sorted(set(listed)))
    console.print(f"{'' if added else 'already there: '}{name} may bill {scope}")


@source_app.command("remove")
def source_remove(name: Annotated[str, typer.Argument(help="The source.")]) -> None:
    """Stop a source from billing (its events are dead-lettered as unknown_source)."""
    try:
        with_engine(lambda engine: sources.remove(engine, name))
    except sources.SourceError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"removed {name}")


@source_app.command("list")
def source_list(
    history: Annotated[
        bool, typer.Option("--all", help="Every version, oldest first, not only the newest.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """The registered sources and what each may bill (``*``: any organization)."""
    rows = with_connection(lambda conn: source_reads.sources(conn, history))
    print_rows(
        [
            {
                "source": row.name,
                "enabled": row.enabled,
                "any_org": row.any_org,
                "orgs": row.orgs if fmt is Format.json else _orgs_cell(row),
                "recorded_at": row.recorded_at,
            }
            for row in rows
        ],
        fmt,
        "sources",
    )


def _orgs_cell(row: SourceVersion) -> str:
    return "*" if row.any_org else ",".join(row.orgs) or "-"


def register(app: typer.Typer) -> None:
    app.add_typer(source_app, name="source")
