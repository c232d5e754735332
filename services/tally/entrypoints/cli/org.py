"""``tally org …``: organizations, their commitments and the AI tokens they buy."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import typer

from tally import bootstrap
from tally.adapters.postgres.reads import organizations as organization_reads
from tally.domain.events import MAX_USERS
from tally.domain.period import period_of
from tally.entrypoints.cli.context import with_connection, with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    FormatOption,
    check_period,
    console,
    fail,
    print_rows,
)
from tally.service_layer import organizations

org_app = typer.Typer(help="Organizations: who is billed, in which currency.", no_args_is_help=True)


MAX_HOURS = Decimal(10**9)


@org_app.command("add")
def org_add(
    org: Annotated[str, typer.Argument(help="The organization's name: the events' subject.")],
    currency: Annotated[str, typer.Option(help="Billing currency, priced by the rate card.")],
) -> None:
    """Add an organization (idempotent for the same currency)."""
    try:
        added = with_engine(
            lambda engine: organizations.add(bootstrap.database(engine), org, currency)
        )
    except organizations.OrganizationError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"{'added' if added else 'already there:'} {org} ({currency.upper()})")


@org_app.command("list")
def org_list(fmt: FormatOption = Format.table) -> None:
    """The organizations and their currencies."""
    rows = with_connection(organization_reads.organizations)
    print_rows(
        [{"org": o.name, "currency": o.currency, "created_at": o.created_at} for o in rows],
        fmt,
        "organizations",
    )


@org_app.command("commit")
def org_add_commitment(
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
            lambda engine: organizations.add_commitment(
                bootstrap.database(engine), org, license, model, quantity, from_period
            )
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
    found = with_connection(lambda conn: organization_reads.commitments(conn, org))
    print_rows([row.model_dump() for row in found], fmt, f"commitments of {org}")


@org_app.command("tokens")
def org_tokens(
    org: Annotated[str, typer.Argument(help="The organization.")],
    buy: Annotated[
        Decimal | None,
        typer.Option(help="Buy this many AI tokens (whole, no minimum) for --period."),
    ] = None,
    period: Annotated[
        str | None,
        typer.Option(
            help="YYYY-MM; buying: the period they count in (default: this month); listing: "
            "only this period.",
            callback=check_period,
        ),
    ] = None,
    note: Annotated[str | None, typer.Option(help="Kept with the purchase (an order id).")] = None,
    fmt: FormatOption = Format.table,
) -> None:
    """AI tokens bought for a period: added to its allocation, billed on its invoice.

    Without --buy, lists the organization's purchases."""
    if buy is None:
        if note is not None:
            raise fail("--note goes with --buy", 2)
        bought = with_connection(lambda conn: organization_reads.token_purchases(conn, org, period))
        print_rows([row.model_dump() for row in bought], fmt, f"tokens bought by {org}")
        return
    chosen = period or period_of(datetime.now(UTC))
    try:
        purchase = with_engine(
            lambda engine: organizations.buy_tokens(
                bootstrap.database(engine), bootstrap.token_purchases(), org, chosen, buy, note
            )
        )
    except organizations.OrganizationError as exc:
        raise fail(str(exc), 2) from exc
    console.print(f"{org} bought {buy:,} AI tokens for {chosen} (purchase {purchase})")


def register(app: typer.Typer) -> None:
    app.add_typer(org_app, name="org")
