"""``tally apikey …``: the API's keys and roles."""

from __future__ import annotations

from typing import Annotated

import typer

from tally import bootstrap
from tally.adapters.postgres.reads import api_keys as key_reads
from tally.config import parse_retention
from tally.domain.access import KeyRefused, Role
from tally.entrypoints.cli.context import with_connection, with_engine
from tally.entrypoints.cli.rendering import Format, FormatOption, console, fail, print_rows
from tally.service_layer.api_keys import create_key

apikey_app = typer.Typer(
    help="Keys of the HTTP API (tally serve): one role each, a secret shown once.",
    no_args_is_help=True,
)


@apikey_app.command("create")
def apikey_create(
    role: Annotated[
        Role,
        typer.Option(help="auditor, finance or org_viewer (read); producer (sends events)."),
    ],
    org: Annotated[str | None, typer.Option(help="The organization of an org_viewer.")] = None,
    source: Annotated[
        str | None,
        typer.Option(help="The registered source a producer's events come from (only it)."),
    ] = None,
    expires: Annotated[
        str | None, typer.Option(help="Lifetime such as 90d or 12h; default: no expiry.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for.")] = None,
) -> None:
    """Create a key and print its secret, once: only its SHA-256 is stored."""
    lifetime = parse_retention(expires) if expires else None
    if isinstance(lifetime, int):
        raise fail(f"--expires {expires!r}: a duration like '90d' or '12h'", 2)
    try:
        key, expires_at = with_engine(
            lambda engine: create_key(
                bootstrap.api_key_store(engine), role, org, name, lifetime, source
            )
        )
    except KeyRefused as exc:
        raise fail(str(exc), 2) from exc
    scopes = " ".join(sorted(key.scopes))
    until = f", expires {expires_at.isoformat()}" if expires_at else ""
    bound = f" of {org}" if org else f" as source {source}" if source else ""
    console.print(f"created key {key.id} ({role}{bound}: {scopes}{until})")
    console.print("the secret, shown once (send it as 'Authorization: Bearer <secret>'):")
    typer.echo(key.secret)


@apikey_app.command("list")
def apikey_list(fmt: FormatOption = Format.table) -> None:
    """Every key with its role, scopes, organization and dates (never a secret)."""
    keys = with_connection(key_reads.api_keys)
    print_rows([key.model_dump() for key in keys], fmt, "API keys")


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke a key for good: every later request with it is 401."""
    outcome = with_engine(lambda engine: bootstrap.api_key_store(engine).revoke(key_id))
    if outcome is None:
        raise fail(f"no API key {key_id}")
    console.print(f"{outcome}: {key_id}")


def register(app: typer.Typer) -> None:
    app.add_typer(apikey_app, name="apikey")
