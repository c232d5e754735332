"""What a period allocates each organization so far: its license reports, commitments and
the AI tokens bought for it.

One reading for the close (the final allocation), the dashboard and the alerts (the
allocation so far), so the three never disagree on a seat.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg

from tally.domain.allocation import (
    Allocation,
    LicenseDay,
    Seat,
    allocation,
    billable_users,
    with_commitments,
    with_purchased,
)
from tally.domain.ratecard import RateCard


async def license_days(
    conn: asyncpg.Connection, orgs: Sequence[str], period: str
) -> dict[str, list[LicenseDay]]:
    """Each organization's ``license.usage`` reports for the period."""
    days: dict[str, list[LicenseDay]] = defaultdict(list)
    for row in await conn.fetch(
        """SELECT org, license, model, day, users, hours FROM license_usage
            WHERE org = ANY($1::text[]) AND period = $2""",
        list(orgs),
        period,
    ):
        days[row["org"]].append(
            LicenseDay(row["license"], row["model"], row["day"], row["users"], row["hours"])
        )
    return days


async def commitments(
    conn: asyncpg.Connection,
    orgs: Sequence[str],
    period: str,
    recorded_by: datetime | None = None,
) -> dict[str, dict[Seat, Decimal]]:
    """The commitment in force for the period per license and model: the newest one whose
    ``from_period`` has begun (of those recorded by ``recorded_by``, when given: as an
    invoice issued then saw them)."""
    committed: dict[str, dict[Seat, Decimal]] = defaultdict(dict)
    for row in await conn.fetch(
        """SELECT DISTINCT ON (org, license, model) org, license, model, quantity
             FROM commitment WHERE org = ANY($1::text[]) AND from_period <= $2
              AND ($3::timestamptz IS NULL OR recorded_at <= $3)
            ORDER BY org, license, model, id DESC""",
        list(orgs),
        period,
        recorded_by,
    ):
        committed[row["org"]][(row["license"], row["model"])] = row["quantity"]
    return committed


async def purchased_tokens(
    conn: asyncpg.Connection, orgs: Sequence[str], period: str
) -> dict[str, Decimal]:
    """The AI tokens each organization bought for the period (absent: none)."""
    rows = await conn.fetch(
        """SELECT org, sum(tokens) AS tokens FROM token_purchase
            WHERE org = ANY($1::text[]) AND period = $2 GROUP BY org""",
        list(orgs),
        period,
    )
    return {row["org"]: row["tokens"] for row in rows}


async def allocations_so_far(
    conn: asyncpg.Connection, orgs: Sequence[str], period: str, card: RateCard
) -> dict[str, Allocation]:
    """Each organization's pooled allocation from what has been reported and committed so
    far, with the tokens bought for the period (at the close: the period's allocation)."""
    days = await license_days(conn, orgs, period)
    committed = await commitments(conn, orgs, period)
    bought = await purchased_tokens(conn, orgs, period)
    return {
        org: with_purchased(
            allocation(with_commitments(billable_users(days[org]), committed[org]), card),
            bought.get(org, Decimal(0)),
        )
        for org in orgs
    }
