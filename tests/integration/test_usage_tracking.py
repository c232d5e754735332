"""Allocation tracking (the fair-use policy and the AI token pricing) equals an independent
computation: the allocation from license reports and commitments, used as the ledger (and so
the invoice) has it, daily AI tokens that add up exactly to the ledger's, weeks 1-5, the
projection and the health."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ai, api, balance_map, event, read
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.reads.usage_reports import UsageTracking, allocation_tracking
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService

# (day of October 2026, client kind, requests)
REQUESTS = [(1, "integration", 400_000), (7, "appfoundry", 100_000), (8, "integration", 250_000),
            (15, "data_action", 300_000), (22, "ui", 999_999), (29, "integration", 50_000),
            (31, "embeddable_framework", 7)]  # fmt: skip
# (day, feature, quantity, unit); the card converts per 17 minutes, per 400 messages, x2
AI_USE = [(1, "voice_bot", "10", "minute"), (2, "voice_bot", "7", "minute"),
          (2, "messaging", "150", "message"), (9, "messaging", "251", "message"),
          (16, "virtual_agent", "3", "session"), (30, "voice_bot", "0.5", "minute")]  # fmt: skip
PER = {"voice_bot": (Decimal(1), Decimal(17)), "messaging": (Decimal(1), Decimal(400)),
       "virtual_agent": (Decimal(2), Decimal(1))}  # fmt: skip


def tokens(feature: str, quantity: Decimal) -> Decimal:
    per_tokens, per = PER[feature]
    return (quantity * per_tokens / per).quantize(Decimal("0.000001"), rounding=ROUND_CEILING)


def at(day: int) -> str:
    return f"2026-10-{day:02d}T12:00:00Z"


async def track(engine: AsyncEngine, now: datetime) -> UsageTracking:
    async with raw_connection(engine) as conn:
        return await allocation_tracking(conn, "acme", "2026-10", now)


async def test_tracking_equals_the_ledger_and_an_independent_computation(
    engine: AsyncEngine, service: MeteringService
) -> None:
    license_reports = [
        event("license.usage", "l1", {"license": "gc2", "model": "named", "users": 18}, time=at(3)),
        event("license.usage", "l2", {"license": "gc2", "model": "named", "users": 20}, time=at(9)),
    ]
    await organizations.add_commitment(
        bootstrap.database(engine), "acme", "gc1", "concurrent", Decimal(2), "2026-10"
    )
    raws = license_reports + [
        api(f"r{n}", count=count, kind=kind, time=at(day))
        for n, (day, kind, count) in enumerate(REQUESTS)
    ] + [
        ai(f"a{n}", feature, quantity, unit, time=at(day))
        for n, (day, feature, quantity, unit) in enumerate(AI_USE)
    ]  # fmt: skip
    for n, raw in enumerate(raws):  # one event a batch: the ledger's tokens telescope too
        await service.process("s", [(f"{n}-0", {b"event": raw})])

    tracked = await track(engine, datetime(2026, 12, 1, tzinfo=UTC))  # the period is over

    api_meter, ai_meter = tracked.api_requests, tracked.ai_tokens
    assert api_meter.allocation == 20 * 110_000 + 2 * 97_500  # max named users + commitment
    assert ai_meter.allocation == 20 * 250 + 2 * 350
    billable = sum(count for _, kind, count in REQUESTS if kind != "ui")
    assert api_meter.used == billable == 1_100_007
    weeks: dict[int, Decimal] = defaultdict(Decimal)
    for day, kind, count in REQUESTS:
        if kind != "ui":
            weeks[min((day - 1) // 7 + 1, 5)] += count
    assert [(w.name, w.used) for w in api_meter.weeks] == [
        (f"week {n}", weeks[n]) for n in range(1, 6)
    ]
    assert api_meter.weeks[0].percent == Decimal(500_000 * 100) / api_meter.allocation
    quantities: dict[str, Decimal] = defaultdict(Decimal)
    for _, feature, quantity, _ in AI_USE:
        quantities[feature] += Decimal(quantity)
    per_feature = {feature: tokens(feature, q) for feature, q in quantities.items()}
    assert {f.name: f.used for f in ai_meter.features} == per_feature
    assert ai_meter.used == sum(per_feature.values()) == Decimal("8.031912")
    assert sum(w.used for w in ai_meter.weeks) == ai_meter.used  # days telescope exactly
    balances = balance_map(await read(engine, org_balances.balances, "acme", "2026-10"))
    assert ai_meter.used == sum(v for k, v in balances.items() if "/ai_token/usage/" in k)
    assert ai_meter.weeks[0].used == tokens("voice_bot", Decimal(17)) + tokens(
        "messaging", Decimal(150)
    )
    assert api_meter.projected == api_meter.used  # over: the projection is what was used
    assert api_meter.remaining == api_meter.allocation - billable
    assert (api_meter.health.value, ai_meter.health.value) == ("GREEN", "GREEN")

    document = tracked.document().model_dump()
    assert document["meters"]["api_requests"]["used"] == billable
    assert document["meters"]["ai_tokens"]["health"] == "GREEN"


async def test_the_projection_runs_straight_to_the_months_end(
    engine: AsyncEngine, service: MeteringService
) -> None:
    licensed = event("license.usage", "l1", {"license": "gc2", "model": "named", "users": 1})
    await service.process("s", [("1-0", {b"event": licensed})])
    await service.process("s", [("2-0", {b"event": api("r1", count=50_000, time=at(3))})])

    halfway = await track(engine, datetime(2026, 10, 16, 12, tzinfo=UTC))  # 15.5 of 31 days

    meter = halfway.api_requests
    assert meter.projected == Decimal(100_000)  # 50,000 in half the month
    assert meter.projected_percent == Decimal(100_000 * 100) / Decimal(110_000)
    assert meter.health.value == "AMBER"  # 90.9 % projected
    assert meter.projected_unused == Decimal(10_000)
    empty = halfway.ai_tokens
    assert (empty.allocation, empty.used, empty.health.value) == (Decimal(250), 0, "GREEN")
