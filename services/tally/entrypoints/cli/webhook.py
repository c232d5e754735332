"""``tally webhook …``: where threshold alerts are delivered."""

from __future__ import annotations

from typing import Annotated

import typer

from tally.adapters.postgres import alert_outbox
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    console,
    fail,
    print_rows,
)

webhook_app = typer.Typer(
    help="Webhooks that receive alerts, signed per Standard Webhooks.", no_args_is_help=True
)


@webhook_app.command("add")
def webhook_add(
    url: Annotated[str, typer.Argument(help="Where alerts are POSTed (http:// or https://).")],
    secret: Annotated[
        str | None,
        typer.Option(help="The signing secret, whsec_ + base64 (generated when left out)."),
    ] = None,
) -> None:
    """Register a webhook; alerts crossed from now on are POSTed to it."""
    try:
        webhook, kept = with_engine(lambda engine: alert_outbox.add_webhook(engine, url, secret))
    except alert_outbox.WebhookError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"added {webhook} -> {url}")
    if secret is None:
        typer.echo(f"secret (shown once, keep it to verify signatures): {kept}")


@webhook_app.command("remove")
def webhook_remove(
    webhook: Annotated[str, typer.Argument(help="The webhook's id (wh_…).")],
) -> None:
    """Stop delivering to a webhook (a new version; its secret is forgotten)."""
    try:
        with_engine(lambda engine: alert_outbox.remove_webhook(engine, webhook))
    except alert_outbox.WebhookError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"removed {webhook}")


@webhook_app.command("list")
def webhook_list(fmt: FormatOption = Format.table) -> None:
    """The webhooks, oldest first (never their secrets)."""
    print_rows(with_engine(alert_outbox.list_webhooks), fmt, "webhooks")


def register(app: typer.Typer) -> None:
    app.add_typer(webhook_app, name="webhook")
