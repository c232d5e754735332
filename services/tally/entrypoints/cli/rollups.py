"""``tally rollups …``: compacting and rebuilding the daily rollups the reports read."""

from __future__ import annotations

from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres import rollups
from tally.adapters.postgres.connection import raw_connection
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    counting_bars,
    print_rows,
)

rollups_app = typer.Typer(help="The daily rollups the reports read.", no_args_is_help=True)


@rollups_app.command("compact")
def compact() -> None:
    """Fold the metering's appended rollup deltas into the daily rows (as tally_writer);
    run it periodically (cron) so reports stay fast; safe while consumers run."""

    async def work(engine: AsyncEngine) -> int:
        async with raw_connection(engine) as conn, conn.transaction():
            return await rollups.compact(conn)

    print_rows([{"deltas moved": with_engine(work)}], Format.table, "rollups compacted")


@rollups_app.command("rebuild")
def rebuild(
    org: Annotated[str | None, typer.Option(help="One organization; default: all.")] = None,
) -> None:
    """Recompute the daily rollups from the stored events (as tally_writer), adding back any
    difference; safe while consumers run."""

    async def work(engine: AsyncEngine) -> dict[str, int]:
        async with raw_connection(engine) as conn:
            orgs = [org] if org else await rollups.organizations(conn)
        changed: dict[str, int] = {}
        with counting_bars() as bars:
            task = bars.add_task("rebuilding rollups", total=len(orgs))
            for name in orgs:
                async with raw_connection(engine) as conn, conn.transaction():
                    changed[name] = await rollups.rebuild(conn, name)
                bars.advance(task)
        return changed

    changed = with_engine(work)
    rows = [{"org": name, "rows changed": n} for name, n in changed.items()]
    print_rows(rows, Format.table, "rollups rebuilt")


def register(app: typer.Typer) -> None:
    app.add_typer(rollups_app, name="rollups")
