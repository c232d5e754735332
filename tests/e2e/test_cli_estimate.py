"""``tally estimate`` as a customer's architect runs it (the data-action question from the
developer forum): will a data action per interaction with 800 concurrent licences stay
within fair use, and what if it polls?"""

from __future__ import annotations

from support.cli import tally, tally_all
from tally.config import Settings

SEED_001 = ["estimate", "--seats", "gc1:concurrent:800", "--working-days", "30"]


async def test_estimating_a_data_action_per_interaction_and_polling(settings: Settings) -> None:
    assert (await tally(settings, "migrate")).code == 0
    per_interaction, polling, in_euros, table, bad_seat, negative = await tally_all(
        settings,
        [*SEED_001, "--interactions", "32000", "--requests-per-interaction", "1", "-f", "json"],
        [*SEED_001, "--interactions", "800", "--requests-per-interaction", "5760", "-f", "json"],
        [*SEED_001, "--interactions", "800", "--requests-per-interaction", "5760",
         "--currency", "eur", "-f", "json"],
        [*SEED_001, "--interactions", "800", "--requests-per-interaction", "5760"],
        ["estimate", "--seats", "gc9:named:3"],
        ["estimate", "--copilot-users", "-3"],
    )  # fmt: skip
    within = per_interaction.json()["api_requests"]
    assert (within["planned"], within["allocation"], within["overage"], within["health"]) == (
        "960000",
        "78000000",
        "0",
        "GREEN",
    )
    over = polling.json()
    assert over["api_requests"]["overage"] == "60240000"
    assert over["api_requests"]["cost"] == "6024.00"
    assert over["total_cost"] == "6024.00"
    assert over["rate_card"] == "2020-01"
    assert in_euros.json()["api_requests"]["cost"] == "4819.20"  # at EUR 0.00008
    assert table.code == 0 and "6024.00" in table.stdout and "RED" in table.stdout, table
    assert bad_seat.code == 2 and "LICENSE:MODEL:USERS" not in bad_seat.said, bad_seat
    assert "a license (communicate, gc1, gc2, gc3)" in bad_seat.said, bad_seat
    assert negative.code == 1, negative
    assert negative.said == "error: copilot_users: Input should be greater than or equal to 0"
