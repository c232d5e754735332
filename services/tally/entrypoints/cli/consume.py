"""``tally consume``: run the metering consumer."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tally.entrypoints.cli.context import run, settings_and_urls
from tally.entrypoints.cli.output import Format, FormatOption, console, emit
from tally.entrypoints.consumer import Consumer
from tally.metering import BatchReport


def consume(
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Drain the stream, then exit.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Meter usage events from the stream into the ledger (Ctrl-C stops cleanly)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    settings, urls = settings_and_urls()
    seen = {"n": 0}

    def progress(report: BatchReport) -> None:
        seen["n"] += len(report.outcomes)
        if fmt is Format.table:
            console.print(
                f"[dim]batch: {len(report.outcomes)} entries "
                f"({', '.join(f'{k} {v}' for k, v in sorted(report.counts.items()) if v)}); "
                f"{seen['n']} so far[/dim]",
                highlight=False,
            )

    consumer = Consumer(settings, urls, until_idle=until_idle, on_batch=progress)
    console.print(
        f"consumer {consumer.name} on {settings.stream!r} group {settings.group!r}"
        + (" (until idle)" if until_idle else ""),
        highlight=False,
    )
    totals = run(consumer.run())
    emit(
        [{"outcome": key, "count": value} for key, value in sorted(totals.items())],
        fmt,
        "consumed",
    )


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)
