"""``tally bench``: the project's own performance figures.

``tally bench [--events N | --rate R …]`` measures the consumer; ``tally bench close
--orgs N`` the month close. ``bench`` is a group whose callback runs when no subcommand
is named, so the drain and steady options keep working as before.

Each command imports its bench tool (and the HTTP app) in its body: every other ``tally``
command starts without them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import Progress

from tally.entrypoints.cli.context import run, settings_and_urls
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    counting_bars,
    errors,
    fail,
    print_rows,
)

bench_app = typer.Typer(
    help="Measure drain throughput (default) or steady-rate latency; `close`: the month close."
)


@bench_app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    events: Annotated[int, typer.Option(help="Drain: events pre-filled, then drained.")] = 200_000,
    rate: Annotated[
        int | None, typer.Option(help="Steady mode: events per second to hold (instead of drain).")
    ] = None,
    seconds: Annotated[float, typer.Option(help="Steady mode: how long to hold the rate.")] = 30,
    orgs: Annotated[int, typer.Option(help="Organizations in the mix.")] = 20,
    consumers: Annotated[
        int,
        typer.Option(min=1, help="Drain: consumer processes in the group (splitting the shards)."),
    ] = 1,
    shards: Annotated[
        int | None,
        typer.Option(min=1, help="Shards of the usage stream (default TALLY_STREAM_SHARDS)."),
    ] = None,
    batch_size: Annotated[int | None, typer.Option(help="Consumer batch size.")] = None,
    seed: Annotated[int, typer.Option()] = 7,
    template: Annotated[
        str | None,
        typer.Option(
            help="Drain into a copy of this database (e.g. one `bench api --keep` filled)."
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--verify/--no-verify", help="Run ledger verify after the drain.")
    ] = True,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure drain throughput (default) or steady-rate latency, in a scratch database.

    `tally bench close --orgs N` measures the month close instead.
    """
    if ctx.invoked_subcommand is not None:
        return
    from tally_tools.bench import Bench, as_dict

    settings, urls = settings_and_urls()
    if batch_size:
        settings = settings.model_copy(update={"batch_size": batch_size})
    if shards:
        settings = settings.model_copy(update={"stream_shards": shards})

    async def main() -> dict[str, object]:
        async with Bench(settings, urls, orgs, template, check) as scratch:
            if rate is not None:
                errors.print(f"holding {rate} events/s for {seconds}s …")
                return as_dict(await scratch.steady(rate, seconds, seed))
            with Progress(console=errors, transient=True) as progress:
                task = progress.add_task("pre-filling the stream", total=events)
                result = await scratch.drain(
                    events, seed, consumers, lambda done, _: progress.update(task, completed=done)
                )
            return as_dict(result)

    figures = run(main())
    if json_ or fmt is not Format.table:
        print_rows(figures, Format.json if json_ else fmt, "bench")
        return
    print_rows([{"figure": key, "value": value} for key, value in _flat(figures)], fmt, "bench")


def _flat(figures: dict[str, Any], prefix: str = "") -> list[tuple[str, object]]:
    """``pipeline.entries``-style rows of nested figures, for the table."""
    rows: list[tuple[str, object]] = []
    for key, value in figures.items():
        if isinstance(value, dict):
            rows += _flat(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            rows.append((f"{prefix}{key}", "; ".join(map(str, value)) or "none"))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


@bench_app.command("close")
def bench_close(
    orgs: Annotated[
        int, typer.Option(min=1, help="Organizations to close, each with usage and licenses.")
    ] = 10_000,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
    check: Annotated[
        bool, typer.Option("--verify", help="Run ledger verify after the close (untimed).")
    ] = False,
) -> None:
    """Time the month close of N organizations, in a scratch database.

    First, untimed: each organization's licenses, API requests and AI usage, metered.
    """
    from tally_tools.bench import as_dict
    from tally_tools.bench_close import CLOSE_PERIOD, CloseBench

    settings, urls = settings_and_urls()

    async def main() -> dict[str, Any]:
        async with CloseBench(settings, urls, orgs) as scratch:
            with counting_bars() as bars:
                filling = bars.add_task(f"metering {CLOSE_PERIOD}", total=None)
                closing = bars.add_task(f"closing {CLOSE_PERIOD}", total=None, visible=False)

                def filled(done: int, total: int) -> None:
                    bars.update(filling, completed=done, total=total)

                def closed(done: int, total: int) -> None:
                    bars.update(filling, visible=False)
                    bars.update(closing, completed=done, total=total, visible=True)

                result = await scratch.close(CLOSE_PERIOD, filled, closed, check)
            return as_dict(result)

    figures = run(main())
    if json_ or fmt is Format.json:
        print_rows(figures, Format.json)
        return
    totals = figures.pop("totals")
    print_rows(
        [{"figure": key, "value": value} for key, value in figures.items()], fmt, "bench close"
    )
    print_rows(
        [{"currency": currency, "total": total} for currency, total in totals.items()],
        Format.table,
        f"invoice totals for {figures['period']}",
    )


@bench_app.command("large")
def bench_large(
    oversized: Annotated[int, typer.Option(help="Entries over the size limit.")] = 30,
    oversized_mb: Annotated[int, typer.Option(help="Size of each, in MB.")] = 10,
    large: Annotated[int, typer.Option(help="Valid entries just under the limit.")] = 20_000,
    large_kb: Annotated[int, typer.Option(help="Size of each, in KB.")] = 60,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Drain a backlog of large entries; report the consumer's peak memory (RSS)."""
    from tally_tools.bench import Bench, as_dict

    settings, urls = settings_and_urls()

    async def main() -> dict[str, Any]:
        async with Bench(settings, urls, 20) as scratch:
            errors.print(
                f"filling {oversized} x {oversized_mb} MB and {large} x {large_kb} KB entries …"
            )
            result = await scratch.large(
                oversized, oversized_mb * 1_000_000, large, large_kb * 1_000
            )
        return as_dict(result)

    print_rows(run(main()), Format.json if json_ else fmt, "bench large")


@bench_app.command("api")
def bench_api(
    lines: Annotated[
        int, typer.Option(min=20, help="Entry lines to fill (two per entry).")
    ] = 10_000_000,
    orgs: Annotated[int, typer.Option(min=1, help="Organizations.")] = 1000,
    periods: Annotated[int, typer.Option(min=1, max=120, help="Months, from 2026-01.")] = 10,
    samples: Annotated[int, typer.Option(min=10, help="Balances timed.")] = 1000,
    verify: Annotated[
        bool, typer.Option(help="After the fill, check the rollups as `tally ledger verify` does.")
    ] = False,
    http: Annotated[
        bool, typer.Option(help="Also stream the GL export through a real `tally serve`.")
    ] = False,
    keep: Annotated[
        bool, typer.Option(help="Keep the filled database (its URL is printed) for --filled.")
    ] = False,
    filled: Annotated[
        str | None,
        typer.Option(help="Measure a database kept by --keep again, without a fill."),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """The read side at ledger scale: fill a scratch database with LINES entry lines
    (untimed), then time balances as of an instant, a trial balance, the first page of
    an organization's entries and the ADS GL export of one period."""
    from tally.entrypoints.http.app import create_app
    from tally_tools.bench import as_dict
    from tally_tools.bench_api import ApiBench

    settings, urls = settings_and_urls()

    async def main() -> dict[str, Any]:
        async with ApiBench(settings, urls, lines, orgs, periods, keep, filled) as scratch:
            fill_seconds = 0.0
            if filled is None:
                fill_seconds = await scratch.fill(lambda what: errors.print(f"filling: {what} …"))
            if keep:
                errors.print(f"kept: --filled {scratch.database}")
            if verify and (findings := await scratch.rollup_findings()):
                raise fail(f"the fill's rollups disagree with its lines: {findings}")

            def step(what: str) -> None:
                errors.print(f"timing: {what} …")

            result = await scratch.measure(fill_seconds, step, samples)
            last = result.trial_balance_period
            figures = await scratch.trial_balance_over_http(create_app, last, step)
            result.http_trial_balance_p50_ms, result.http_trial_balance_max_ms = figures
            if http:
                rate, growth = await scratch.export_over_http(result.export_period, step)
                result.http_export_lines_per_second = rate
                result.http_export_server_rss_growth_mb = growth
        return as_dict(result)

    try:
        figures = run(main())
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    if json_ or fmt is Format.json:
        print_rows(figures, Format.json)
        return
    print_rows(
        [{"figure": key, "value": value} for key, value in figures.items()], fmt, "bench api"
    )


@bench_app.command("pages")
def bench_pages(
    events: Annotated[
        int, typer.Option(min=1000, help="One organization's events (what they leave is filled).")
    ] = 10_000_000,
    samples: Annotated[int, typer.Option(min=1, help="Requests timed per page.")] = 50,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """The pages under /ui for one organization with EVENTS events: fill a scratch database
    with the rollups, ledger, licence reports and invoices they leave (untimed), then time
    each page through the HTTP app in process (p50/p99, ms; the target: <= 200 ms)."""
    from tally.entrypoints.http.app import create_app
    from tally.entrypoints.pages.web import COOKIE
    from tally_tools.bench import as_dict
    from tally_tools.bench_pages import PagesBench

    settings, urls = settings_and_urls()

    async def main() -> dict[str, Any]:
        async with PagesBench(settings, urls, events) as scratch:
            fill_seconds = await scratch.fill(lambda what: errors.print(f"filling: {what} …"))
            result = await scratch.measure(
                create_app, COOKIE, fill_seconds,
                lambda what: errors.print(f"timing: {what} …"), samples,
            )  # fmt: skip
        return as_dict(result)

    figures = run(main())
    if json_ or fmt is Format.json:
        print_rows(figures, Format.json)
        return
    pages = figures.pop("pages")
    print_rows(
        [{"figure": key, "value": value} for key, value in figures.items()], fmt, "bench pages"
    )
    print_rows(
        [{k: v for k, v in row.items() if k != "status"} for row in pages],
        fmt,
        "server time per page (ms)",
    )


@bench_app.command("ingest")
def bench_ingest(
    events: Annotated[int, typer.Option(min=1, help="Events sent over HTTP.")] = 200_000,
    batch: Annotated[int, typer.Option(min=1, help="Events per request (batch mode).")] = 100,
    concurrency: Annotated[int, typer.Option(min=1, help="Requests in flight.")] = 8,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """HTTP ingest: batches of events POSTed to a real `tally serve` into a scratch stream,
    then the same events XADDed by a plain pipeline; both rates and their ratio."""
    from tally_tools.bench import as_dict
    from tally_tools.bench_ingest import IngestBench

    settings, urls = settings_and_urls()

    async def main() -> dict[str, Any]:
        async with IngestBench(settings, urls) as scratch:
            errors.print(f"sending {events} events in batches of {batch} …")
            return as_dict(await scratch.run(events, batch, concurrency))

    figures = run(main())
    if json_ or fmt is Format.json:
        print_rows(figures, Format.json)
        return
    print_rows(
        [{"figure": key, "value": value} for key, value in figures.items()], fmt, "bench ingest"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(bench_app, name="bench")
