"""Run ``tally close`` and SIGKILL it inside a chunk's transaction (used by test_close_safety).

    python crash_close.py PERIOD AS_OF N

The close's N-th chunk writes its entries and invoices, then the process dies before the
commit. Settings (database, chunk size) come from the environment.
"""

from __future__ import annotations

import sys

from crash_consumer import die_on_call
from typer.testing import CliRunner

from tally.adapters.postgres import close_store
from tally.entrypoints.cli import app


def main() -> None:
    period, as_of, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
    die_on_call(close_store, "write_invoices", nth, after=True)
    CliRunner().invoke(app, ["close", "--period", period, "--as-of", as_of])


if __name__ == "__main__":
    main()
