"""``tally stop``: stop the embedded PostgreSQL and Valkey."""

from __future__ import annotations

import typer

from tally.entrypoints.cli.rendering import console


def stop() -> None:
    """Stop the embedded PostgreSQL and Redis started in TALLY_DATA_DIR (default .tally)."""
    from tally.adapters.embedded import stop_servers
    from tally.config import get_settings

    data_dir = get_settings().data_dir
    lines = stop_servers(data_dir)
    for line in lines:
        console.print(line)
    if not lines:
        console.print(f"no embedded servers running in {data_dir}")


def register(app: typer.Typer) -> None:
    app.command("stop")(stop)
