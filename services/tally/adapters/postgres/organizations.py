"""Organizations and their commitments: the SQL that writes them (the rules are in
``tally.service_layer.organizations``; listing them is ``reads.organizations``)."""

from __future__ import annotations

from decimal import Decimal

import asyncpg


async def insert(conn: asyncpg.Connection, name: str, currency: str) -> bool:
    """Insert an organization; False when the name exists (whatever its currency)."""
    inserted = await conn.fetchval(
        "INSERT INTO organization (name, currency) VALUES ($1, $2) "
        "ON CONFLICT (name) DO NOTHING RETURNING name",
        name,
        currency,
    )
    return inserted is not None


async def currency_of(conn: asyncpg.Connection, name: str) -> str | None:
    currency: str | None = await conn.fetchval(
        "SELECT currency FROM organization WHERE name = $1", name
    )
    return currency


async def exists(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM organization WHERE name = $1", name))


async def insert_commitment(
    conn: asyncpg.Connection,
    org: str,
    license: str,
    model: str,
    quantity: Decimal,
    from_period: str,
) -> None:
    await conn.execute(
        """INSERT INTO commitment (org, license, model, quantity, from_period)
           VALUES ($1, $2, $3, $4, $5)""",
        org,
        license,
        model,
        quantity,
        from_period,
    )
