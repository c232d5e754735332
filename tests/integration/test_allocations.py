"""The allocation so far (dashboard, alerts) is read like the close reads the final one."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import license_day, meter
from tally import bootstrap
from tally.adapters.postgres.allocations import allocations_so_far
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.ratecard_files import bundled_cards
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService


async def test_reports_and_commitments_so_far_make_each_orgs_allocation(
    engine: AsyncEngine, service: MeteringService
) -> None:
    for org in ("north", "south", "east"):
        await organizations.add(bootstrap.database(engine), org, "USD")
    await meter(
        service,
        [
            license_day("a1", "gc2", "named", 10, org="north", day="2026-11-02"),
            license_day("a2", "gc2", "named", 12, org="north", day="2026-11-03"),
            license_day("a3", "gc1", "hourly", "7.5", org="north", day="2026-11-03"),
            license_day("g1", "gc1", "concurrent", 4, org="south", day="2026-11-02"),
        ],
    )
    await organizations.add_commitment(
        bootstrap.database(engine), "south", "gc1", "concurrent", Decimal(6), "2026-11"
    )
    async with raw_connection(engine) as conn:
        found = await allocations_so_far(
            conn, ["north", "south", "east"], "2026-11", bundled_cards()[-1]
        )
    assert found["north"].api_requests == 12 * 110_000 + Decimal("7.5") * 676
    assert found["north"].ai_tokens == 12 * 250  # hourly users bring no tokens
    assert (found["south"].api_requests, found["south"].ai_tokens) == (6 * 97_500, 6 * 350)
    assert (found["east"].api_requests, found["east"].ai_tokens) == (0, 0)


async def test_tokens_bought_for_the_period_add_to_its_ai_allocation(
    engine: AsyncEngine, service: MeteringService
) -> None:
    """The dashboard and the alerts see a purchase as soon as it is recorded, in its own
    period only."""
    await meter(service, [license_day("b1", "gc2", "named", 10, org="acme", day="2026-11-02")])
    purchases = bootstrap.token_purchases()
    for period, tokens in (("2026-11", 500), ("2026-11", 300), ("2026-12", 7_000)):
        await organizations.buy_tokens(
            bootstrap.database(engine), purchases, "acme", period, Decimal(tokens)
        )
    async with raw_connection(engine) as conn:
        found = await allocations_so_far(conn, ["acme", "globex"], "2026-11", bundled_cards()[-1])
    assert (found["acme"].api_requests, found["acme"].ai_tokens) == (10 * 110_000, 10 * 250 + 800)
    assert (found["globex"].api_requests, found["globex"].ai_tokens) == (0, 0)
