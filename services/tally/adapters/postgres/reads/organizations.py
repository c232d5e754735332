"""The organizations billed by the ledger and their license commitments. Nothing here
writes (``tally org add`` and ``tally org commit`` do, through the service layer)."""

from __future__ import annotations

from datetime import datetime

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import Amount


class OrganizationRow(BaseModel):
    name: str
    currency: str
    created_at: datetime


async def organizations(conn: asyncpg.Connection) -> list[OrganizationRow]:
    """Every organization, by name."""
    rows = await conn.fetch("SELECT name, currency, created_at FROM organization ORDER BY name")
    return [OrganizationRow.model_validate(dict(row)) for row in rows]


class Commitment(BaseModel):
    license: str
    model: str
    quantity: Amount  # users (named, concurrent) or hours (hourly) a month, at least
    from_period: str
    recorded_at: datetime


async def commitments(conn: asyncpg.Connection, org: str) -> list[Commitment]:
    """The organization's commitments, oldest first (a later one supersedes)."""
    rows = await conn.fetch(
        """SELECT license, model, quantity, from_period, recorded_at FROM commitment
            WHERE org = $1 ORDER BY license, model, from_period, id""",
        org,
    )
    return [Commitment.model_validate(dict(row)) for row in rows]


class TokenPurchase(BaseModel):
    id: int
    period: str
    tokens: Amount  # added to the period's AI token allocation
    note: str | None
    recorded_at: datetime


async def token_purchases(
    conn: asyncpg.Connection, org: str, period: str | None
) -> list[TokenPurchase]:
    """An organization's purchases (of one period, or all), in the order they were made."""
    rows = await conn.fetch(
        """SELECT id, period, tokens, note, recorded_at FROM token_purchase
            WHERE org = $1 AND ($2::text IS NULL OR period = $2) ORDER BY id""",
        org,
        period,
    )
    return [TokenPurchase.model_validate(dict(row)) for row in rows]
