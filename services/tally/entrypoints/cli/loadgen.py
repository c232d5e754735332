"""``tally loadgen``: publish a deterministic synthetic usage mix (from a checkout: the
generator is in tally_tools)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from tally import bootstrap
from tally.bootstrap import service_urls
from tally.config import Settings, get_settings
from tally.domain.period import period_bounds, previous_period
from tally.entrypoints.cli.rendering import Format, FormatOption, errors, fail
from tally.entrypoints.cli.rendering import print_rows as show

if TYPE_CHECKING:
    from tally_tools.loadgen import LoadEntry, LoadMix, LoadSummary


def loadgen_command(
    events: Annotated[
        int, typer.Option("--events", "-n", min=0, help="Stream entries to publish in all.")
    ],
    orgs: Annotated[
        str, typer.Option("--orgs", help="Organizations (comma-separated) billed.")
    ] = "acme,globex,initech",
    period: Annotated[
        str | None,
        typer.Option(
            "--period", help="Billing period YYYY-MM the events fall in. [default: last month]"
        ),
    ] = None,
    seed: Annotated[
        int,
        typer.Option(
            "--seed", help="Same seed, same events and ids: publishing it twice meters nothing new."
        ),
    ] = 7,
    duplicates: Annotated[
        float,
        typer.Option("--duplicates", min=0.0, max=1.0, help="Share of re-sent events."),
    ] = 0.01,
    bad: Annotated[
        float, typer.Option("--bad", min=0.0, max=1.0, help="Share of bad entries.")
    ] = 0.01,
    source: Annotated[
        str, typer.Option("--source", help="Prefix of the events' CloudEvents source.")
    ] = "loadgen",
    batch: Annotated[
        int, typer.Option("--batch", min=1, help="Entries per pipelined XADD round.")
    ] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Generate only; publish nothing.")
    ] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Publish a deterministic synthetic usage mix and print what it contains.

    About 80 % api.request, 18 % ai.usage and daily license.usage reports,
    plus the asked shares of duplicates and of bad entries (every class).
    The summary gives the totals the ledger should then show.
    """
    from tally_tools.loadgen import LoadMix  # only here: `tally` starts without it

    names = [name.strip() for name in orgs.split(",") if name.strip()]
    chosen = period or previous_period(datetime.now(UTC))
    try:
        mix = LoadMix(
            names, chosen, events, seed=seed, duplicates=duplicates, bad=bad, source=source
        )
    except ValueError as exc:
        raise fail(str(exc), 2) from exc
    if period_bounds(mix.period)[1] > datetime.now(UTC):
        errors.print(
            f"[yellow]warning:[/yellow] {mix.period} is not over: events timed after now "
            "will be dead-lettered as from the future"
        )
    settings = get_settings()
    started = time.perf_counter()
    published: list[str] = []
    if dry_run:
        for _ in _progress(mix, "generating"):
            pass
    else:
        url = service_urls(settings).redis
        published = asyncio.run(_publish_mix(mix, settings, url, batch))
    seconds = time.perf_counter() - started
    report: dict[str, Any] = {
        "stream": None if dry_run else settings.stream,
        "published": len(published),
        "seconds": round(seconds, 3),
        "entries_per_s": round(mix.summary.entries / seconds) if seconds > 0 else None,
        "first_stream_id": published[0] if published else None,
        "last_stream_id": published[-1] if published else None,
    }
    if fmt is Format.json:
        show({**mix.summary.as_dict(), "publish": report}, fmt)
        return
    _show_summary(mix.summary, report)


def _bar() -> Progress:
    """A progress bar on stderr, so stdout stays clean for ``--format json``."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
    )


def _progress(mix: LoadMix, what: str) -> Iterator[LoadEntry]:
    with _bar() as progress:
        task = progress.add_task(what, total=len(mix))
        for done, entry in enumerate(mix, 1):
            if done % 1000 == 0:
                progress.update(task, completed=done)
            yield entry
        progress.update(task, completed=len(mix))


async def _publish_mix(mix: LoadMix, settings: Settings, url: str, batch: int) -> list[str]:
    async with bootstrap.producer(settings, url, batch_size=batch) as producer:
        with _bar() as progress:
            task = progress.add_task(f"XADD {settings.stream}", total=len(mix))
            return await producer.publish_all(
                (entry.fields for entry in mix),
                lambda done: progress.update(task, completed=done),
            )


def _show_summary(summary: LoadSummary, report: dict[str, Any]) -> None:
    mix = {
        "period": summary.period,
        "seed": summary.seed,
        "entries": summary.entries,
        **{f"{kind} events": count for kind, count in summary.by_type.items()},
        "duplicates": summary.duplicates,
        "bad": summary.bad_total,
        "published": report["published"],
        "seconds": report["seconds"],
        "entries/s": report["entries_per_s"],
    }
    show([{"": key, "value": value} for key, value in mix.items()], Format.table, title="load mix")
    show(
        [{"class": name, "entries": count} for name, count in summary.bad.items()],
        Format.table,
        title="bad entries",
    )
    overage = summary.api_overage
    show(
        [
            {
                "org": org,
                "billable requests": summary.billable_requests[org],
                "non-billable": summary.non_billable_requests[org],
                "API allocation": summary.api_allocation[org],
                "API overage": overage[org],
                "AI tokens": summary.ai_tokens[org],
                "licenses": ", ".join(
                    f"{name} {users}" for name, users in summary.license_users[org].items()
                )
                or "-",
            }
            for org in summary.orgs
        ],
        Format.table,
        title="expected per organization",
    )


def register(app: typer.Typer) -> None:
    app.command("loadgen")(loadgen_command)
