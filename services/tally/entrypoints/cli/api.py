"""The HTTP API from the CLI: ``tally serve`` and ``tally apikey create|list|revoke``."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from tally import bootstrap
from tally.adapters.postgres.api_keys import list_keys
from tally.config import parse_retention
from tally.domain.access import KeyRefused, Role
from tally.entrypoints.cli.context import settings_and_urls, with_engine
from tally.entrypoints.cli.rendering import Format, FormatOption, console, fail, print_rows
from tally.service_layer.api_keys import create_key

WORKER_HEALTHCHECK_S = 60

apikey_app = typer.Typer(
    help="Keys of the HTTP API (tally serve): one role each, a secret shown once.",
    no_args_is_help=True,
)


def serve(
    host: Annotated[str | None, typer.Option(help="Address (TALLY_API_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (TALLY_API_PORT).")] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (TALLY_API_WORKERS).")
    ] = None,
) -> None:
    """Run the read-only HTTP API; its database connection acts as tally_reader."""
    import uvicorn  # only for this command: every other one starts faster

    settings, _ = settings_and_urls()  # start the embedded servers once, before the workers
    uvicorn.run(
        "tally.entrypoints.http.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port or settings.api_port,
        workers=workers or settings.api_workers,
        access_log=False,  # tally.api logs every request with its key id
        proxy_headers=False,  # the app believes only TALLY_TRUSTED_PROXIES
        log_config=_log_config(),  # applied in every worker process
        # a spawned worker imports the whole CLI before it answers the supervisor's ping:
        # on a busy host that takes more than uvicorn's 5 s, and it would be killed forever
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )


def _log_config() -> dict[str, Any]:
    """uvicorn's logging, plus tally.api's one line a request (with a timestamp) on stderr."""
    from uvicorn.config import LOGGING_CONFIG

    return {
        **LOGGING_CONFIG,
        "formatters": {
            **LOGGING_CONFIG["formatters"],
            "requests": {"format": "%(asctime)s %(name)s %(message)s"},
        },
        "handlers": {
            **LOGGING_CONFIG["handlers"],
            "requests": {
                "formatter": "requests",
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stderr",
            },
        },
        "loggers": {
            **LOGGING_CONFIG["loggers"],
            "tally.api": {"handlers": ["requests"], "level": "INFO", "propagate": False},
        },
    }


@apikey_app.command("create")
def apikey_create(
    role: Annotated[Role, typer.Option(help="auditor, finance or org_viewer.")],
    org: Annotated[str | None, typer.Option(help="The organization of an org_viewer.")] = None,
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
            lambda engine: create_key(bootstrap.api_key_store(engine), role, org, name, lifetime)
        )
    except KeyRefused as exc:
        raise fail(str(exc), 2) from exc
    scopes = " ".join(sorted(key.scopes))
    until = f", expires {expires_at.isoformat()}" if expires_at else ""
    console.print(f"created key {key.id} ({role}{f' of {org}' if org else ''}: {scopes}{until})")
    console.print("the secret, shown once (send it as 'Authorization: Bearer <secret>'):")
    typer.echo(key.secret)


@apikey_app.command("list")
def apikey_list(fmt: FormatOption = Format.table) -> None:
    """Every key with its role, scopes, organization and dates (never a secret)."""
    print_rows(with_engine(list_keys), fmt, "API keys")


@apikey_app.command("revoke")
def apikey_revoke(key_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke a key for good: every later request with it is 401."""
    outcome = with_engine(lambda engine: bootstrap.api_key_store(engine).revoke(key_id))
    if outcome is None:
        raise fail(f"no API key {key_id}")
    console.print(f"{outcome}: {key_id}")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.add_typer(apikey_app, name="apikey")
