"""``tally bench``: the project's own performance figures."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.progress import Progress

from tally.bench import Bench, as_dict
from tally.entrypoints.cli.context import run, settings_and_urls
from tally.entrypoints.cli.output import Format, FormatOption, emit, errors


def bench(
    events: Annotated[int, typer.Option(help="Drain: events pre-filled, then drained.")] = 200_000,
    rate: Annotated[
        int | None, typer.Option(help="Steady mode: events per second to hold (instead of drain).")
    ] = None,
    seconds: Annotated[float, typer.Option(help="Steady mode: how long to hold the rate.")] = 30,
    orgs: Annotated[int, typer.Option(help="Organizations in the mix.")] = 20,
    consumers: Annotated[
        int, typer.Option(min=1, help="Drain: consumer processes in the group.")
    ] = 1,
    batch_size: Annotated[int | None, typer.Option(help="Consumer batch size.")] = None,
    seed: Annotated[int, typer.Option()] = 7,
    json_: Annotated[bool, typer.Option("--json", help="Same as --format json.")] = False,
    fmt: FormatOption = Format.table,
) -> None:
    """Measure drain throughput (default) or steady-rate latency, in a scratch database."""
    settings, urls = settings_and_urls()
    if batch_size:
        settings = settings.model_copy(update={"batch_size": batch_size})

    async def main() -> dict[str, object]:
        async with Bench(settings, urls, orgs) as scratch:
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
    emit(figures, Format.json if json_ else fmt, "bench")


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
