"""``tally ledger verify``: re-derive what the ledger promises and name every breach.

Each check is a function registered by name in one of this package's modules (see
``registry``): entries (balance, account codes, the journal's hash chain), derived data
(the rollups and running totals, recomputed), events (against the ledger and against their
own raw bytes), invoices (against the ledger, and what only a superuser could still remove),
deliveries (the tallies of every stream) and seals. A row of the ledger changed, removed or
inserted behind the application's back (with the triggers disabled by a superuser) is
found; what it cannot see is a whole lane rewritten with every hash recomputed: keep the
``heads`` and ``tally_heads`` it reports outside the database to detect that.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection

# The modules register their checks on import: this order is the order they run in (and
# are listed in the CLI's help and the docs).
# isort: off
from tally.adapters.postgres.verification import (  # noqa: F401
    entries,
    events,
    invoices,
    deliveries,
    derived,
    sealed,
)

# isort: on
from tally.adapters.postgres.verification.derived import check_rollups
from tally.adapters.postgres.verification.registry import (
    CHECKS,
    Check,
    Context,
    Finding,
    Verification,
)

__all__ = ["CHECKS", "Check", "Finding", "Verification", "check_rollups", "unknown", "verify"]


def unknown(names: Iterable[str]) -> list[str]:
    """The names that are not checks (``--check`` refuses them, naming the known ones)."""
    return [name for name in names if name not in CHECKS]


async def verify(
    engine: AsyncEngine, period: str | None = None, only: Iterable[str] | None = None
) -> Verification:
    """Every check (or those named in ``only``) over the whole ledger, in one snapshot;
    ``period`` narrows the seal check to that period's seals."""
    chosen = list(CHECKS.values()) if only is None else [CHECKS[name] for name in only]
    result = Verification()
    async with (
        raw_connection(engine) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        context = Context(conn, result, period)
        for check in chosen:
            await check.run(context)
    return result
