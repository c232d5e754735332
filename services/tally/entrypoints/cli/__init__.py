"""The ``tally`` command: one Typer app; each module here registers its commands (a new
command group is a new module with a ``register``)."""

from __future__ import annotations

import sys

import asyncpg
import typer
from redis.exceptions import ConnectionError as RedisConnectionError

from tally.adapters.ports.streams import UnsupportedServer
from tally.adapters.postgres.schema import RateCardChanged
from tally.entrypoints.cli.rendering import errors
from tally.entrypoints.discovery import submodules
from tally.service_layer.consumer import Unreachable
from tally.service_layer.organizations import OrganizationError

app = typer.Typer(
    name="tally",
    help="Tally: an open metering ledger (Redis Streams in, double-entry PostgreSQL out).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Each module here with a ``register`` is a command or a command group: found, in name
# order, never listed here.
for module in submodules("tally.entrypoints.cli", "register"):
    module.register(app)


def _explain(exc: BaseException) -> str | None:
    """A one-line answer for the failures a user can fix; None for real bugs."""
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "tally_tools":
        return (
            "this command runs from a checkout of Tally's repository (`uv run tally ...` "
            "there): the load generator, the benchmarks, the demo and the kill matrix "
            "(services/tally_tools) are not part of the installed package"
        )
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{exc}: create it (createdb) or fix TALLY_DATABASE_URL"
    if isinstance(exc, asyncpg.InvalidParameterValueError) and "role" in str(exc):
        return f"{exc}: run `tally migrate` (it creates Tally's roles)"
    if isinstance(exc, asyncpg.UndefinedTableError):
        return f"the database is not set up ({exc}): run `tally migrate`"
    if isinstance(exc, OSError | asyncpg.CannotConnectNowError) and not isinstance(
        exc, RedisConnectionError
    ):
        return f"cannot reach PostgreSQL ({exc}): check TALLY_DATABASE_URL"
    if isinstance(exc, RedisConnectionError):
        return f"cannot reach Redis ({exc}): check TALLY_REDIS_URL"
    if isinstance(
        exc, RateCardChanged | OrganizationError | LookupError | Unreachable | UnsupportedServer
    ):
        return str(exc)
    return None


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        errors.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        cause: BaseException | None = exc
        while cause is not None:
            message = _explain(cause)
            if message:
                errors.print(f"[bold red]error:[/bold red] {message}", highlight=False)
                sys.exit(1)
            cause = cause.__cause__
        raise
