"""The running totals are derived data: verify recomputes the alerts' usage totals from the
usage accounts, and the running AI quantities from their events (voided ones left out), and
names a total that disagrees."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import meter
from support.ledger_support import ai, api, event
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


async def test_verify_names_a_running_ai_quantity_that_is_not_its_events(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    """A void may shrink a running AI quantity, so verify checks it against the events."""
    await meter(
        service, [ai("t1", "voice_bot", 170, "minute"), ai("t2", "voice_bot", 34, "minute")]
    )
    await meter(service, [event("tally.void", "v1", {"source": "test", "id": "t2", "reason": "x"})])
    assert (await verify(engine)).ok
    async with raw_transaction(owner) as conn:  # as the owner, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("UPDATE meter_total SET quantity = 204 WHERE org = 'acme'")
    findings = [(f.check, f.detail) for f in (await verify(engine)).findings]
    assert (
        "ai total",
        "acme 2026-10 voice_bot (rate card 2020-01): the running quantity is 204, its events "
        "add up to 170",
    ) in findings
