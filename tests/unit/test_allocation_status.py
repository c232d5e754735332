"""Allocation tracking (the fair-use policy and the AI token pricing): used, remaining,
features, weeks, projection."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tally.adapters.ratecard_files import bundled_cards
from tally.domain.allocation_status import daily_tokens, meter_status, week_of
from tally.domain.projection import Health

# the AI token pricing page's dashboard: March 2026, 50,000 tokens, 19,810 consumed, read
# after the month
MARCH = {
    (date(2026, 3, 3), "agent_copilot"): Decimal(2500),
    (date(2026, 3, 5), "virtual_agent"): Decimal(2000),
    (date(2026, 3, 10), "agent_copilot"): Decimal(2200),
    (date(2026, 3, 12), "virtual_agent"): Decimal(2000),
    (date(2026, 3, 17), "agent_copilot"): Decimal(3300),
    (date(2026, 3, 19), "virtual_agent"): Decimal(2000),
    (date(2026, 3, 24), "agent_copilot"): Decimal(3000),
    (date(2026, 3, 26), "virtual_agent"): Decimal(2000),
    (date(2026, 3, 27), "ai_scoring"): Decimal(500),
    (date(2026, 3, 28), "voice_bot"): Decimal(294),
    (date(2026, 3, 28), "messaging"): Decimal(13),
    (date(2026, 3, 28), "ai_translate"): Decimal(3),
}


def test_seed_003_dashboard_after_the_month() -> None:
    status = meter_status(
        "2026-03", "ai_token", Decimal(50_000), MARCH, datetime(2026, 4, 2, tzinfo=UTC)
    )
    assert (status.used, status.remaining, status.overage) == (19_810, 30_190, 0)
    assert status.usage_percent is not None and round(status.usage_percent) == 40
    assert [(s.name, s.used) for s in status.features][:2] == [
        ("agent_copilot", 11_000),
        ("virtual_agent", 8_000),
    ]
    assert round(status.features[0].percent or 0) == 56  # 11,000 of 19,810
    assert [s.used for s in status.weeks] == [4500, 4200, 5300, 5810, 0]
    assert status.weeks[0].percent == 9  # of the month's allocation
    assert status.projected == 19_810  # the month is over
    assert status.health is Health.GREEN
    assert status.projected_unused == 30_190


def test_mid_month_projects_a_straight_line_and_turns_red() -> None:
    used = {(date(2026, 11, day), ""): Decimal(100) for day in range(1, 16)}  # 1,500 by the 15th
    status = meter_status(
        "2026-11", "api_request", Decimal(2500), used, datetime(2026, 11, 16, tzinfo=UTC)
    )
    assert status.projected == 3000  # 1,500 in 15 of 30 days
    assert status.projected_percent == 120
    assert status.health is Health.RED
    assert status.features == []
    assert len(status.weeks) == 5


def test_february_of_28_days_has_four_weeks() -> None:
    status = meter_status("2027-02", "ai_token", Decimal(1), {}, datetime(2027, 3, 1, tzinfo=UTC))
    assert [s.name for s in status.weeks] == ["week 1", "week 2", "week 3", "week 4"]


@given(day=st.dates(date(2000, 1, 1), date(2099, 12, 31)))
def test_every_day_falls_in_one_of_five_weeks(day: date) -> None:
    assert week_of(day) == min((day.day + 6) // 7, 5)


CARD = bundled_cards()[0]


@given(
    st.dictionaries(
        st.tuples(
            st.dates(date(2026, 10, 1), date(2026, 10, 31)),
            st.sampled_from(["voice_bot", "messaging", "ai_translate", "virtual_agent"]),
        ),
        st.decimals(0, 100_000, places=3),
        max_size=40,
    )
)
def test_daily_tokens_add_up_to_the_conversion_of_each_features_total(
    quantities: dict[tuple[date, str], Decimal],
) -> None:
    daily = daily_tokens(quantities, CARD.tokens)
    assert set(daily) == set(quantities)
    for feature in {feature for _, feature in quantities}:
        total = sum((q for (_, f), q in quantities.items() if f == feature), Decimal(0))
        days = sum((t for (_, f), t in daily.items() if f == feature), Decimal(0))
        assert days == CARD.tokens(feature, total)
    assert all(tokens >= 0 for tokens in daily.values())
