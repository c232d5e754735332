"""``tally consume``: run the metering consumer."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from tally import bootstrap
from tally.adapters.telemetry import logs, metrics, tracing
from tally.domain.shards import parse_shards
from tally.entrypoints.cli.context import run, settings_and_urls
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    errors,
    fail,
    print_rows,
)
from tally.service_layer.metering import BatchReport

log = logging.getLogger("tally.consume")


def consume(
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Drain the stream, then exit.")
    ] = False,
    shards: Annotated[
        str | None,
        typer.Option(
            "--shards",
            help="Read only these shards, e.g. '0,2' (so several processes split them); "
            "default: every shard of TALLY_STREAM_SHARDS.",
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Meter usage events from the stream into the ledger (Ctrl-C stops cleanly)."""
    settings, urls = settings_and_urls()
    logs.configure(settings.log_format)
    tracing.configure("tally-consumer")
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_host, settings.metrics_port)
    try:
        chosen = None if shards is None else parse_shards(shards, settings.stream_shards)
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    seen = {"n": 0}
    screen = console if fmt is Format.table else errors  # JSON alone on stdout

    def progress(report: BatchReport) -> None:
        seen["n"] += len(report.outcomes)
        if settings.log_format == "json":  # the batch as a log line, not a screen line
            log.info(
                "batch committed",
                extra={
                    "context": {
                        "batch": next(iter(report.outcomes), None),
                        "entries": len(report.outcomes),
                        "counts": dict(report.counts),
                        "postings": report.postings,
                        "consumed": seen["n"],
                    }
                },
            )
            return
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(report.counts.items()))
        screen.print(
            f"[dim]batch of {len(report.outcomes)} stream entries ({outcomes}), "
            f"{report.postings} ledger entries posted; {seen['n']} so far[/dim]",
            highlight=False,
        )

    consumer = bootstrap.consumer(
        settings, urls, until_idle=until_idle, on_batch=progress, shards=chosen
    )
    screen.print(
        f"consumer {consumer.name} on {', '.join(map(repr, consumer.readers))} "
        f"group {settings.group!r}" + (" (until idle)" if until_idle else ""),
        highlight=False,
    )
    totals = run(consumer.run())
    print_rows(
        [{"outcome": key, "count": value} for key, value in sorted(totals.items())],
        fmt,
        "consumed",
    )


def register(app: typer.Typer) -> None:
    app.command("consume")(consume)
