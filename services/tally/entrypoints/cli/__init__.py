"""The ``tally`` command: one Typer app; each module here registers its commands."""

from __future__ import annotations

import typer

from tally.entrypoints.cli import produce

app = typer.Typer(
    name="tally",
    help="Tally: an open metering ledger (Redis Streams in, double-entry PostgreSQL out).",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)

for module in (produce,):
    module.register(app)
