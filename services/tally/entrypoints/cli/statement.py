"""``tally statement …``: a customer's statement of a sealed month, exported and checked."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.statement import NoStatement, statement_lines
from tally.domain.statement import BadStatement, check, published_keys
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import check_period, console, fail
from tally.entrypoints.plain import json_line

statement_app = typer.Typer(
    help="Statements a customer checks offline: every event of a sealed month with its "
    "proof, the signed seal and the invoice's totals (docs: Integrate, Statements).",
    no_args_is_help=True,
)


@statement_app.command("export")
def export(
    org: Annotated[str, typer.Option(help="The organization.")],
    period: Annotated[str, typer.Option(help="A sealed period, YYYY-MM.", callback=check_period)],
    out: Annotated[
        Path | None, typer.Option("--out", help="Write here; default: standard output.")
    ] = None,
) -> None:
    """Write the organization's statement of a sealed month as JSON Lines, streamed."""

    async def work(engine: AsyncEngine) -> int:
        lines = 0
        with out.open("w", encoding="utf-8") if out else sys.stdout as target:
            async with raw_connection(engine) as conn:
                async for line in statement_lines(conn, org, period):
                    target.write(json_line(line))
                    lines += 1
        return lines

    try:
        written = with_engine(work)
    except NoStatement as exc:
        if out is not None:
            out.unlink(missing_ok=True)
        raise fail(str(exc)) from exc
    if out is not None:
        console.print(f"statement of {org} for {period}: {written} lines in {out}")


@statement_app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="A statement (JSON Lines).")],
    keys: Annotated[
        Path,
        typer.Option(
            help="Tally's /.well-known/tally-seal-keys.json, saved: the seals' keys must be in "
            "it (a key the statement carries proves nothing by itself)."
        ),
    ],
) -> None:
    """Check a statement offline: every proof, every seal's signature by a published key,
    every entry's hash from its events, and that the events add up to each invoice line
    (exit 1 if not)."""
    try:
        published = published_keys(keys.read_bytes())
    except OSError as exc:
        raise fail(f"cannot read {keys}: {exc.strerror}", 2) from exc
    except BadStatement as exc:
        raise fail(f"{keys}: {exc}", 2) from exc
    try:
        with file.open("rb") as lines:
            findings = check(lines, published)
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror}", 2) from exc
    except BadStatement as exc:
        raise fail(f"{file} is not a statement: {exc}", 2) from exc
    for finding in findings:
        console.print(f"[red]✗[/red] {finding}")
    if findings:
        raise fail(f"{len(findings)} finding(s): the statement does not check")
    console.print(f"{file}: every proof, signature and invoice line checks")


def register(app: typer.Typer) -> None:
    app.add_typer(statement_app, name="statement")
