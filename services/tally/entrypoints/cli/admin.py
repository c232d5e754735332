"""Setting up: ``tally migrate``, ``tally org …``, ``tally schemas export``."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated

import typer

from tally.adapters.postgres import organizations
from tally.domain.events import MAX_USERS, json_schemas
from tally.entrypoints.cli.context import run, settings_and_urls, with_engine
from tally.entrypoints.cli.output import Format, FormatOption, check_period, console, emit, fail
from tally.migrate import migrate

org_app = typer.Typer(help="Organizations: who is billed, in which currency.", no_args_is_help=True)
schemas_app = typer.Typer(help="The wire contract's JSON Schemas.", no_args_is_help=True)
SCHEMAS_DIR = Path("schemas")
MAX_HOURS = Decimal(10**9)


def migrate_command() -> None:
    """Upgrade the schema, grant the roles, load the rate cards, create the consumer group."""
    settings, urls = settings_and_urls()
    for line in run(migrate(settings, urls)):
        console.print(f"[green]✓[/green] {line}")


@org_app.command("add")
def org_add(
    org: Annotated[str, typer.Argument(help="The organization's name: the events' subject.")],
    currency: Annotated[str, typer.Option(help="Billing currency, priced by the rate card.")],
) -> None:
    """Add an organization (idempotent for the same currency)."""
    try:
        added = with_engine(lambda engine: organizations.add(engine, org, currency))
    except organizations.OrganizationError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"{'added' if added else 'already there:'} {org} ({currency.upper()})")


@org_app.command("list")
def org_list(fmt: FormatOption = Format.table) -> None:
    """The organizations and their currencies."""
    rows = with_engine(organizations.list_all)
    emit(
        [{"org": o.name, "currency": o.currency, "created_at": o.created_at} for o in rows],
        fmt,
        "organizations",
    )


@org_app.command("commit")
def org_commit(
    org: Annotated[str, typer.Argument(help="The organization.")],
    license: Annotated[str, typer.Option(help="communicate, gc1, gc2 or gc3.")],
    model: Annotated[str, typer.Option(help="named, concurrent or hourly.")],
    users: Annotated[
        int | None,
        typer.Option(min=0, max=MAX_USERS, help="Committed users (named, concurrent); 0 ends it."),
    ] = None,
    hours: Annotated[
        Decimal | None, typer.Option(min=0, help="Committed user-hours (hourly); 0 ends it.")
    ] = None,
    from_period: Annotated[
        str,
        typer.Option(
            "--from",
            help="First period it applies to (YYYY-MM); default: every period not yet closed.",
            callback=check_period,
        ),
    ] = "0001-01",
) -> None:
    """A committed minimum: counts at the close when higher than the reported usage."""
    if (users is None) == (hours is None) or (hours is not None) != (model == "hourly"):
        raise fail("give --users for named or concurrent, or --hours for hourly", 2)
    quantity = Decimal(users) if users is not None else hours
    assert quantity is not None
    if not quantity.is_finite() or quantity > MAX_HOURS or quantity != round(quantity, 6):
        raise fail(f"--hours must be at most {MAX_HOURS} with at most 6 decimal places", 2)
    try:
        with_engine(
            lambda engine: organizations.commit(engine, org, license, model, quantity, from_period)
        )
    except organizations.OrganizationError as exc:
        raise fail(str(exc), 2) from exc
    unit = "users" if users is not None else "hours"
    console.print(f"{org} commits to {quantity} {license} {model} {unit} from {from_period}")


@org_app.command("commitments")
def org_commitments(
    org: Annotated[str, typer.Argument(help="The organization.")],
    fmt: FormatOption = Format.table,
) -> None:
    """The organization's commitments, oldest first (a later one supersedes)."""
    emit(
        with_engine(lambda engine: organizations.commitments(engine, org)),
        fmt,
        f"commitments of {org}",
    )


@schemas_app.command("export")
def schemas_export(
    out: Annotated[Path, typer.Option(help="Folder to write into.")] = SCHEMAS_DIR,
    check: Annotated[bool, typer.Option(help="Only check the folder is current.")] = False,
) -> None:
    """Write one JSON Schema per event type (``--check``: fail when the folder is stale)."""
    stale = []
    for name, schema in json_schemas().items():
        text = json.dumps(schema, indent=2, sort_keys=True) + "\n"
        path = out / name
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(str(path))
            continue
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        console.print(f"wrote {path}")
    if stale:
        raise fail(f"stale schemas: {', '.join(stale)}; run `tally schemas export`")


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate_command)
    app.add_typer(org_app, name="org")
    app.add_typer(schemas_app, name="schemas")
