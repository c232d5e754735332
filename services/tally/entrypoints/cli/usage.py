"""``tally usage``: allocation tracking (the fair-use policy and the AI token pricing)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.usage_reports import (
    UsageTracking,
    allocation_tracking,
)
from tally.domain.period import period_of
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    print_rows,
)


def usage(
    org: Annotated[str, typer.Option(help="Organization.")],
    period: Annotated[
        str | None,
        typer.Option(help="Billing period YYYY-MM; default: this month.", callback=check_period),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Allocation tracking for both meters: allocation so far, used, remaining, by AI feature,
    weeks 1-5, the projection to the period's end and the health (GREEN, AMBER, RED)."""
    now = datetime.now(UTC)
    chosen = period or period_of(now)

    async def read(engine: AsyncEngine) -> UsageTracking:
        async with (
            raw_connection(engine) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await allocation_tracking(conn, org, chosen, now)

    tracking = with_engine(read)
    document = tracking.document().model_dump()
    if fmt is Format.json:
        print_rows(document, fmt)
        return
    console.print(f"{org}, period {chosen} (rate card {tracking.rate_card})")
    meters = document["meters"]
    print_rows(
        [
            {"meter": name, **{k: v for k, v in m.items() if k not in ("features", "weeks")}}
            for name, m in meters.items()
        ],
        fmt,
        "meters",
    )
    print_rows(meters["ai_tokens"]["features"], fmt, "AI tokens by feature")
    for name, m in meters.items():
        print_rows(m["weeks"], fmt, f"{name} by week (percent of the allocation)")


def register(app: typer.Typer) -> None:
    app.command("usage")(usage)
