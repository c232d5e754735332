"""Organizations, commitments and purchased tokens: who is billed, in which currency, for at
least how much, with how many tokens bought.

Listing them is a pure read: entrypoints query ``adapters.postgres.organizations``."""

from __future__ import annotations

import re
from decimal import Decimal

from tally.adapters.ports.token_purchases import TokenPurchaseStore
from tally.adapters.ports.unit_of_work import Database
from tally.domain.ledger import ORG_NAME, PLATFORM


class OrganizationError(ValueError):
    pass


async def add(db: Database, name: str, currency: str) -> bool:
    """Add an organization; False when it exists with that currency already."""
    currency = currency.upper()
    async with db.transaction() as conn:
        book = await db.metering.load_rate_cards(conn)
        if currency not in book.currencies:
            raise OrganizationError(
                f"currency {currency!r} is not priced by the rate card: "
                f"use one of {', '.join(sorted(book.currencies))}"
            )
        if not re.match(ORG_NAME, name) or name == PLATFORM:
            raise OrganizationError(
                f"{name!r} is not an organization name: letters, digits and . _ : - "
                f"(starting with a letter or digit, at most 128), and not {PLATFORM!r}"
            )
        if await db.organizations.insert(conn, name, currency):
            return True
        existing = await db.organizations.currency_of(conn, name)
        if existing != currency:
            raise OrganizationError(
                f"organization {name!r} exists with currency {existing}; "
                "an organization's currency never changes"
            )
        return False


async def add_commitment(
    db: Database, org: str, license: str, model: str, quantity: Decimal, from_period: str
) -> None:
    """Record a committed minimum of billable users (hourly: hours) from ``from_period`` on.

    Commitments are never edited: a newer one for the same license and model supersedes
    the older from its period on, and ``0`` ends one. Closed periods keep their invoices.
    """
    async with db.transaction() as conn:
        card = (await db.metering.load_rate_cards(conn)).cards[-1]
        if model not in card.api.allocation.get(license, {}):  # type: ignore[call-overload]
            offered = ", ".join(
                f"{lic} {mod}" for lic, models in card.api.allocation.items() for mod in models
            )
            raise OrganizationError(
                f"the rate card has no allocation for {license} {model}: use one of {offered}"
            )
        if not await db.organizations.exists(conn, org):
            raise OrganizationError(f"no organization {org!r}: add it with `tally org add`")
        if quantity < 0:
            raise OrganizationError("a commitment is a number of users or hours, at least 0")
        await db.organizations.insert_commitment(conn, org, license, model, quantity, from_period)


async def buy_tokens(
    db: Database,
    purchases: TokenPurchaseStore,
    org: str,
    period: str,
    tokens: Decimal,
    note: str | None = None,
) -> int:
    """Record AI tokens bought for ``period`` (the AI token pricing page: no minimum, any
    month still open); the close adds them to that period's allocation only and bills them
    on its invoice. Returns the purchase's id."""
    if not tokens.is_finite() or tokens < 1 or tokens != tokens.to_integral_value():
        raise OrganizationError(f"tokens are bought whole, at least 1 (not {tokens})")
    async with db.transaction() as conn:
        standing = await purchases.standing(conn, org, period)
        if not standing.org_exists:
            raise OrganizationError(f"no organization {org!r}: add it with `tally org add`")
        if standing.invoice is not None or standing.period_closed:
            issued = f" (invoice {standing.invoice})" if standing.invoice else ""
            raise OrganizationError(
                f"period {period} is closed for {org}{issued}: tokens are bought for a "
                "period still open (this month or a later one)"
            )
        return await purchases.insert(conn, org, period, tokens, note)
