"""The alerts' running usage totals are derived data: verify recomputes them from the
usage accounts and names a total that disagrees."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import meter
from support.ledger_support import api
from tally.adapters.postgres.connection import raw_transaction
from tally.adapters.postgres.verification import verify
from tally.service_layer.metering import MeteringService


async def test_verify_names_a_running_total_that_is_not_the_ledgers(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("r1", count=40), api("r2", count=2)])
    assert (await verify(engine)).ok
    async with raw_transaction(owner) as conn:  # as the owner, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE usage_total SET used = 41 WHERE org = 'acme'")
    findings = (await verify(engine)).findings
    assert [(f.check, f.detail) for f in findings] == [
        (
            "usage total",
            "acme 2026-10 api_request: the alerts' running total is 41, the usage accounts hold 42",
        )
    ]
