"""``tally migrate``: the schema, the roles, the rate cards and the consumer group."""

from __future__ import annotations

import typer

from tally import bootstrap
from tally.entrypoints.cli.context import run, settings_and_urls
from tally.entrypoints.cli.rendering import (
    console,
)


def migrate_command() -> None:
    """Upgrade the schema, grant the roles, load the rate cards, create the consumer group."""
    settings, urls = settings_and_urls()
    for line in run(bootstrap.migrate(settings, urls)):
        console.print(f"[green]✓[/green] {line}")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
