"""``tally chaos``: the kill matrix, run as long as one likes, on private servers.

The tool (and Redis, SQLAlchemy, the load generator) is imported in the command's body:
every other ``tally`` command starts without it.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tally.entrypoints.cli.context import run
from tally.entrypoints.cli.rendering import Format, errors, fail, print_rows

STAGES = {
    "servers": "private servers",
    "publishing": "publishing the mix",
    "kills": "SIGKILLs",
    "draining": "final drain",
    "checking": "checking",
}


def chaos(
    kills: Annotated[
        int, typer.Option("--kills", min=0, help="SIGKILLs of the consumer, at random moments.")
    ] = 20,
    events: Annotated[
        int, typer.Option("--events", min=1, help="Stream entries published (loadgen mix).")
    ] = 20_000,
    seed: Annotated[
        int, typer.Option(help="Fixes the mix, the delays' fractions and the restarts.")
    ] = 7,
    restart_servers: Annotated[
        bool,
        typer.Option(
            "--restart-servers",
            help="Also restart Redis (SIGTERM or SIGKILL, AOF always) and PostgreSQL "
            "(-m fast or immediate) in a third of the consumer's lives.",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Consumer batch size: small batches, kills mid-work.")
    ] = 200,
    orgs: Annotated[int, typer.Option(min=1, help="Organizations in the mix.")] = 20,
    json_: Annotated[bool, typer.Option("--json", help="The result as JSON on stdout.")] = False,
) -> None:
    """SIGKILL the consumer (a real `tally consume`) at N random moments of a drain on
    private servers, then check the ledger event by event against what was sent.

    Exit 0: nothing lost, nothing doubled, every total right, `tally ledger verify`
    clean; 1: any of those failed; 2: the run could not be done (servers, a consumer
    that died by itself).
    """
    from tally_tools.chaos import Chaos, ChaosError
    from tally_tools.private_servers import ServerUnavailable

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=errors,
        transient=True,
    ) as progress:
        tasks: dict[str, TaskID] = {}

        def report(stage: str, done: int, total: int | None, note: str) -> None:
            if stage not in tasks:
                for task in tasks.values():  # the stages before are done
                    before = progress.tasks[task]
                    total_before = before.completed if before.total is None else before.total
                    progress.update(task, total=total_before, completed=total_before)
                tasks[stage] = progress.add_task(STAGES[stage], total=total, note=note)
            progress.update(tasks[stage], completed=done, total=total, note=note)

        runner = Chaos(kills, events, seed, restart_servers, batch_size, orgs, report)
        try:
            result = run(runner.run())
        except (ChaosError, ServerUnavailable) as exc:
            raise fail(str(exc), 2) from exc
    figures = result.as_dict()
    if json_:
        print_rows(figures, Format.json)
    else:
        print_rows(summary_rows(figures), Format.table, "tally chaos")
        for wrong in figures["totals_wrong"]:
            errors.print(f"[red]total wrong:[/red] {wrong}")
        for finding in figures["verify_findings"]:
            errors.print(f"[red]verify:[/red] {finding['check']}: {finding['detail']}")
    if not result.ok:
        raise typer.Exit(1)


def summary_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    restarts = figures["restarts"]
    rows: list[tuple[str, object]] = [
        ("result", "ok" if figures["ok"] else "FAILED"),
        ("kills", f"{figures['kills']} ({figures['kills_mid_work']} with work pending)"),
        (
            "server restarts",
            f"{sum(restarts.values())}"
            + (" (" + ", ".join(f"{k} {n}" for k, n in sorted(restarts.items())) + ")")
            * bool(restarts),
        ),
        ("events sent", figures["events"]),
        ("valid events (distinct keys)", figures["valid_events"]),
        ("metered (stored once)", figures["metered"]),
        (
            "duplicates sent / recorded",
            f"{figures['duplicates']} / {figures['duplicates_recorded']}",
        ),
        ("bad sent / dead-lettered", f"{figures['bad']} / {figures['dead_lettered']}"),
        ("lost", figures["lost"]),
        ("doubled", figures["doubled"]),
        ("totals wrong", f"{len(figures['totals_wrong'])} of {figures['totals_checked']}"),
        ("conflicts", figures["conflicts"]),
        ("verify findings", len(figures["verify_findings"])),
        ("final drain", f"{figures['final_drain_seconds']} s"),
        ("wall time", f"{figures['wall_seconds']} s"),
        ("load average (start, end)", ", ".join(map(str, figures["load_average"]))),
    ]
    return [{"figure": name, "value": str(value)} for name, value in rows]


def register(app: typer.Typer) -> None:
    app.command("chaos")(chaos)
