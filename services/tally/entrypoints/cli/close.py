"""``tally close``: the month close."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import invoices
from tally.adapters.telemetry import metrics, tracing
from tally.config import get_settings
from tally.domain.period import previous_period
from tally.entrypoints.cli.context import all_rows, with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    counting_bars,
    errors,
    fail,
    parse_instant,
    print_rows,
)
from tally.entrypoints.cli.seal import signing_key
from tally.service_layer.month_close import CloseRefused, CloseReport, close_period
from tally.service_layer.seal_signing import SealKeyError, sign_seals


def close(
    period: Annotated[
        str | None,
        typer.Option(
            help="Billing period YYYY-MM; default: the previous UTC month.", callback=check_period
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of", help="The close's clock (RFC 3339), for tests and replays; default: now."
        ),
    ] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """Close a period: allocation, overage and expiry posted, one invoice per organization."""
    settings = get_settings()
    tracing.configure("tally-close")
    clock = parse_instant(as_of) or datetime.now(UTC)
    chosen = period or previous_period(clock)
    try:
        key = signing_key(settings)  # a key configured but unusable stops the close early
    except SealKeyError as exc:
        raise fail(str(exc)) from exc

    async def work(engine: Any) -> tuple[CloseReport, list[dict[str, Any]]]:
        with counting_bars() as bars:
            task = bars.add_task(f"closing {chosen}", total=None)
            report = await close_period(
                bootstrap.database(engine),
                chosen,
                clock,
                settings.close_grace,
                lambda done, total: bars.update(task, completed=done, total=total),
                settings.close_chunk,
            )
        if key is not None:  # the seals this close took (and any older unsigned ones)
            try:
                await sign_seals(bootstrap.seal_signing_store(engine), key)
            except SealKeyError as exc:
                raise SealKeyError(f"{chosen} is closed, its seals are not signed: {exc}") from exc
        async with raw_connection(engine) as conn:
            return report, await all_rows(conn, invoices.invoice_listing(period=chosen))

    started = time.perf_counter()
    try:
        report, listed = with_engine(work)
    except (CloseRefused, SealKeyError) as exc:
        raise fail(str(exc)) from exc
    except Exception:
        _push(settings.metrics_pushgateway, time.perf_counter() - started, None)
        raise
    _push(settings.metrics_pushgateway, time.perf_counter() - started, report.issued)
    if fmt is Format.json:
        print_rows({"period": chosen, "issued": report.issued, "invoices": listed}, fmt)
        return
    if report.waited:
        console.print("another close was running; waited for it")
    print_rows(listed, fmt, f"invoices for {chosen}")
    console.print(
        f"period {chosen} closed: {report.issued} invoice(s) issued by this run, "
        f"{report.invoices} in all"
        + ("" if report.issued else " (already closed: nothing changed)")
    )


def _push(gateway: str | None, seconds: float, issued: int | None) -> None:
    """The run's figures to the Pushgateway, if one is configured; a missed push is said,
    never a reason to fail a close that is done."""
    if not gateway:
        return
    try:
        metrics.push_close(gateway, seconds, issued)
    except OSError as exc:
        errors.print(f"warning: metrics not pushed to {gateway}: {exc}")


def register(app: typer.Typer) -> None:
    app.command("close")(close)
