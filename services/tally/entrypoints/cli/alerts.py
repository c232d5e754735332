"""``tally alerts …``: threshold alerts recorded, their thresholds, and delivering them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tally import bootstrap
from tally.adapters.postgres import alerts
from tally.adapters.postgres.reads import alerts as alert_reads
from tally.adapters.telemetry import logs, metrics, tracing
from tally.domain.alerts import parse_thresholds
from tally.entrypoints.cli.context import (
    engine_for,
    run,
    settings_and_urls,
    with_connection,
    with_engine,
)
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    fail,
    print_rows,
)
from tally.service_layer.alert_delivery import DeliveryReport

alerts_app = typer.Typer(
    help="Threshold alerts: what crossed 80 %/100 % of an allocation, and its delivery.",
    no_args_is_help=True,
)


@alerts_app.command("list")
def alerts_list(
    org: Annotated[str | None, typer.Option(help="Only this organization.")] = None,
    period: Annotated[
        str | None, typer.Option(help="Only this period, YYYY-MM.", callback=check_period)
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Recorded alerts, oldest first, with when each was published and how its webhook
    deliveries stand (attempts, last answer, next retry)."""
    found = with_connection(lambda conn: alert_reads.alerts(conn, org, period))
    rows = [row.model_dump() for row in found]
    if fmt is Format.json:
        print_rows(rows, fmt)
        return
    print_rows(
        [{**row, "webhooks": _delivery_cell(row["webhooks"])} for row in rows], fmt, "alerts"
    )


def _delivery_cell(webhooks: list[dict[str, Any]]) -> str:
    def state(hook: dict[str, Any]) -> str:
        answer = hook["status_code"] or hook["error"] or "?"
        if hook["error"] is None:
            return f"delivered ({answer})"
        return (
            f"retry at {hook['next_at']} ({answer})" if hook["next_at"] else f"gave up ({answer})"
        )

    return "; ".join(f"{h['webhook']} #{h['attempts']} {state(h)}" for h in webhooks) or "-"


@alerts_app.command("thresholds")
def alerts_thresholds(
    org: Annotated[str, typer.Argument(help="The organization.")],
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="Percentages of the allocation, e.g. 75,90,100 (default 80,100)."
        ),
    ] = None,
) -> None:
    """Show an organization's thresholds, or set them with --at (the next batch applies them)."""
    if at is not None:
        try:
            wanted = parse_thresholds(at)
            with_engine(lambda engine: alerts.set_thresholds(engine, org, wanted))
        except ValueError as exc:
            raise fail(str(exc), 2) from exc
    current = with_engine(lambda engine: alerts.thresholds_of(engine, org))
    console.print(
        f"{org} is alerted at {', '.join(format(t, 'f') for t in current)} % of each allocation"
    )


@alerts_app.command("deliver")
def alerts_deliver(
    until_idle: Annotated[
        bool,
        typer.Option("--until-idle", help="Stop once nothing is left to publish, POST or retry."),
    ] = False,
) -> None:
    """Publish new alerts on the alerts stream, POST them to the webhooks as the stream's
    subscriber reads them, and retry failures (runs until stopped; running deliverers share
    the first POSTs, one at a time publishes and retries)."""
    settings, urls = settings_and_urls()
    logs.configure(settings.log_format)
    tracing.configure("tally-alerts")
    if settings.metrics_port is not None:
        metrics.serve(settings.metrics_host, settings.metrics_port)

    async def main() -> DeliveryReport:
        async with (
            engine_for(urls) as engine,
            bootstrap.alert_delivery(engine, settings, urls) as delivery,
        ):
            return await delivery.run(until_idle, settings.alerts_poll_s)

    report = run(main())
    console.print(
        f"published {report.published}, {report.attempts} webhook attempts, "
        f"{report.delivered} delivered"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app, name="alerts")
