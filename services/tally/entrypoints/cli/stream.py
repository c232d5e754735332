"""``tally stream``: the usage stream's status (also as Prometheus metrics) and safe trimming,
shard by shard when ``TALLY_STREAM_SHARDS`` > 1."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import typer

from tally import bootstrap
from tally.config import parse_retention
from tally.entrypoints.cli.context import engine_for, run, settings_and_urls
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    fail,
    print_fields,
    print_rows,
)
from tally.service_layer import stream_health

stream_app = typer.Typer(help="The usage stream: status and safe trimming.", no_args_is_help=True)


def _metrics(reports: list[dict[str, Any]]) -> bytes:
    """The status in Prometheus's text exposition format: one series per shard."""
    from prometheus_client import CollectorRegistry, generate_latest  # start-up time

    from tally.adapters.telemetry.metrics import StreamGauges

    registry = CollectorRegistry()
    gauges = StreamGauges(registry)
    for report in reports:
        gauges.set(report)
    return generate_latest(registry)


@stream_app.command("status")
def status(
    fmt: FormatOption = Format.table,
    prometheus: Annotated[
        bool, typer.Option("--prometheus", help="Print Prometheus metrics instead.")
    ] = False,
) -> None:
    """Length, backlog, pending entries, incidents (entries lost before any read), trims."""
    settings, urls = settings_and_urls()

    async def work() -> list[dict[str, Any]]:
        client = bootstrap.STREAMS.connect(urls.redis)
        try:
            async with engine_for(urls) as engine:
                return [
                    await stream_health.stream_report(
                        bootstrap.database(engine), bootstrap.STREAMS, client, key, settings.group
                    )
                    for key in settings.stream_keys
                ]
        finally:
            await client.aclose()

    reports = run(work())
    if prometheus:
        typer.echo(_metrics(reports).decode(), nl=False)
        return
    if fmt is Format.json:  # one shard: its report, as before sharding; else one per shard
        print_rows(reports[0] if len(reports) == 1 else reports, fmt)
        return
    for report in reports:
        print_fields(
            {k: v for k, v in report.items() if k != "groups"}, f"stream {report['stream']}"
        )
        for group in report["groups"]:
            print_fields(group, f"consumer group {group['name']}")


@stream_app.command("trim")
def trim(
    retention: Annotated[
        str | None,
        typer.Option(
            help="Keep this much: '7d', '12h', '30m', or a count of entries "
            "(default TALLY_STREAM_RETENTION; unset: keep only what is not yet acknowledged)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say where, trim nothing.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Trim entries every consumer group acknowledged and PostgreSQL holds (XTRIM MINID)."""
    settings, urls = settings_and_urls()
    try:
        keep = parse_retention(retention) if retention is not None else settings.retention
    except ValueError as exc:
        raise fail(str(exc), 2) from exc

    async def work() -> list[stream_health.TrimResult]:
        client = bootstrap.STREAMS.connect(urls.redis)
        try:
            async with engine_for(urls) as engine:
                db = bootstrap.database(engine)
                return [
                    await stream_health.trim_stream(
                        db, bootstrap.STREAMS, client, key, keep, dry_run=dry_run
                    )
                    for key in settings.stream_keys
                ]
        finally:
            await client.aclose()

    trims = [asdict(result) for result in run(work())]
    print_rows(trims[0] if len(trims) == 1 else trims, fmt, "trim")  # one shard: as before


def register(app: typer.Typer) -> None:
    app.add_typer(stream_app, name="stream")
