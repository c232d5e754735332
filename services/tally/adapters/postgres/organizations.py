"""Organizations and their commitments: the SQL (the rules are in
``tally.service_layer.organizations``)."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection

if TYPE_CHECKING:
    from tally.adapters.postgres.tables import Organization


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


async def list_all(engine: AsyncEngine) -> list[Organization]:
    # SQLModel and the tables (~0.5 s to import) only here: the metering path never needs them
    from sqlmodel import select
    from sqlmodel.ext.asyncio.session import AsyncSession

    from tally.adapters.postgres.tables import Organization

    async with AsyncSession(engine) as session:
        return list((await session.exec(select(Organization).order_by(Organization.name))).all())


async def commitments(engine: AsyncEngine, org: str) -> list[dict[str, Any]]:
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(
            """SELECT license, model, quantity, from_period, recorded_at FROM commitment
                WHERE org = $1 ORDER BY license, model, from_period, id""",
            org,
        )
    return [dict(row) for row in rows]
