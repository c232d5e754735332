"""The cost estimator answers the AI token pricing page's three example centres and the
developer forum's data-action question with the bundled rate card, and its rules hold for
any input."""

from __future__ import annotations

from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from tally.adapters.ratecard_files import bundled_cards
from tally.domain.estimate import EstimateInput, Seats, estimate
from tally.domain.projection import Health, health, project

CARD = bundled_cards()[-1]


def named(users: int) -> tuple[Seats, ...]:
    return (Seats(license="gc2", model="named", users=Decimal(users)),)


def whole(value: Decimal) -> Decimal:
    return value.quantize(Decimal(1), ROUND_HALF_UP)


def test_small_centre_of_seed_003_uses_about_4700_tokens_of_12500() -> None:
    result = estimate(
        EstimateInput(
            seats=named(50),
            copilot_users=Decimal(50),
            scoring_interactions_per_day=Decimal(200),
            messages_per_month=Decimal(500),
            virtual_agent_sessions_per_day=Decimal(50),
        ),
        CARD,
    )
    assert result.tokens_by_feature == {
        "agent_copilot": Decimal(2500),
        "ai_scoring": Decimal(200),
        "messaging": Decimal("1.25"),
        "virtual_agent": Decimal(2000),
    }
    assert whole(result.ai_tokens.planned) == 4701  # the seed's "~4,700"
    assert result.ai_tokens.price.allocation == 12_500
    assert result.ai_tokens.price.overage == 0
    assert result.total_cost == 0
    assert result.ai_tokens.health is Health.GREEN


def test_mid_market_centre_of_seed_003_uses_about_19810_tokens_of_50000() -> None:
    result = estimate(
        EstimateInput(
            seats=named(200),
            copilot_users=Decimal(200),
            copilot_tokens_per_user=Decimal(55),
            scoring_interactions_per_day=Decimal(500),
            translate_minutes_per_month=Decimal(300),
            messages_per_month=Decimal(5000),
            voice_bot_minutes_per_day=Decimal(250),  # 1,000 interactions x 5 min a month
            virtual_agent_sessions_per_day=Decimal(200),
        ),
        CARD,
    )
    assert result.tokens_by_feature["voice_bot"] == Decimal("294.117648")  # 5,000 / 17, up
    assert whole(result.ai_tokens.planned) == 19_810
    assert result.ai_tokens.price.allocation == 50_000
    assert result.ai_tokens.usage_percent is not None
    assert whole(result.ai_tokens.usage_percent) == 40  # the dashboard's "Usage Rate: 40%"
    assert result.ai_tokens.price.overage == 0


def test_enterprise_centre_of_seed_003_uses_about_93527_tokens_of_250000() -> None:
    result = estimate(
        EstimateInput(
            seats=named(1000),
            copilot_users=Decimal(1000),
            scoring_interactions_per_day=Decimal(2000),
            translate_minutes_per_month=Decimal(3000),
            messages_per_month=Decimal(50_000),
            voice_bot_minutes_per_day=Decimal(1000),  # 5,000 interactions x 4 min a month
            digital_bot_sessions_per_month=Decimal(10_000),
            virtual_agent_sessions_per_day=Decimal(1000),
        ),
        CARD,
    )
    assert abs(result.ai_tokens.planned - 93_527) < 1  # the seed rounds each feature down
    assert result.ai_tokens.price.allocation == 250_000
    assert result.ai_tokens.price.overage == 0
    assert result.total_cost == 0


def data_action(requests_per_interaction: Decimal, interactions_per_day: Decimal) -> EstimateInput:
    """The data-action question: 800 concurrent licences, a data action calling the
    customer's own endpoint on every new interaction, every day of the month."""
    return EstimateInput(
        seats=(Seats(license="gc1", model="concurrent", users=Decimal(800)),),
        working_days=30,
        interactions_per_day=interactions_per_day,
        requests_per_interaction=requests_per_interaction,
    )


def test_seed_001_one_data_action_per_interaction_stays_within_fair_use() -> None:
    result = estimate(data_action(Decimal(1), Decimal(800 * 40)), CARD)
    assert result.api_requests.planned == 960_000
    assert result.api_requests.price.allocation == 78_000_000  # 800 x 97,500
    assert result.api_requests.price.overage == 0
    assert result.api_requests.health is Health.GREEN


def test_seed_001_polling_from_a_data_action_goes_far_beyond_fair_use() -> None:
    # polling every 5 s through an 8-hour shift: 5,760 requests per agent a day
    result = estimate(data_action(Decimal(5760), Decimal(800)), CARD)
    assert result.api_requests.planned == 138_240_000
    assert result.api_requests.price.overage == 60_240_000
    assert result.api_requests.price.amount == Decimal("6024.00")  # at $0.0001
    assert result.api_requests.health is Health.RED


def test_growth_then_buffer_are_applied_to_the_month_and_priced_in_its_currency() -> None:
    given = EstimateInput(
        seats=named(10),
        currency="JPY",
        other_tokens_per_month=Decimal(2500),
        growth_percent=Decimal(10),
        buffer_percent=Decimal(20),
    )
    result = estimate(given, CARD)
    assert result.ai_tokens.planned == Decimal("3300.00")  # 2,500 x 1.1 x 1.2
    assert result.ai_tokens.price.overage == 800  # beyond 10 x 250
    assert result.ai_tokens.price.amount == 96_000  # 800 x 120 JPY, no minor unit
    assert result.ai_tokens.health is Health.RED


def test_a_currency_the_card_does_not_price_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="prices no XXX"):
        estimate(EstimateInput(currency="XXX"), CARD)


def test_a_seat_given_twice_is_an_error_not_a_choice() -> None:
    with pytest.raises(ValueError, match="gc2 named is given twice"):
        estimate(EstimateInput(seats=named(1) + named(2)), CARD)


def test_negative_or_unknown_inputs_are_refused() -> None:
    with pytest.raises(ValidationError):
        EstimateInput(copilot_users=Decimal(-1))
    with pytest.raises(ValidationError):
        EstimateInput.model_validate({"copilot_user": 3})


quantities = st.decimals(min_value=0, max_value=10**6, places=2)


@given(copilot=quantities, sessions=quantities, minutes=quantities, users=st.integers(0, 5000))
def test_overage_is_what_the_plan_exceeds_and_expiry_what_it_leaves(
    copilot: Decimal, sessions: Decimal, minutes: Decimal, users: int
) -> None:
    result = estimate(
        EstimateInput(
            seats=named(users),
            copilot_users=copilot,
            virtual_agent_sessions_per_day=sessions,
            voice_bot_minutes_per_day=minutes,
        ),
        CARD,
    )
    ai = result.ai_tokens
    assert ai.planned == sum(result.tokens_by_feature.values(), Decimal(0))
    assert ai.price.overage >= ai.price.deficit >= 0  # billed whole, rounded up
    assert ai.price.overage - ai.price.deficit < 1
    assert min(ai.price.deficit, ai.price.expired) == 0
    assert ai.planned - ai.price.deficit + ai.price.expired == ai.price.allocation


@pytest.mark.parametrize(
    ("projected", "allocation", "expected"),
    [
        (Decimal("79.99"), Decimal(100), Health.GREEN),
        (Decimal(80), Decimal(100), Health.AMBER),
        (Decimal(100), Decimal(100), Health.AMBER),
        (Decimal("100.01"), Decimal(100), Health.RED),
        (Decimal(0), Decimal(0), Health.GREEN),
        (Decimal(1), Decimal(0), Health.RED),
    ],
)
def test_health_is_green_under_80_amber_from_80_red_over_100_percent(
    projected: Decimal, allocation: Decimal, expected: Health
) -> None:
    assert health(projected, allocation) is expected


def test_projection_is_a_straight_line_to_the_period_end() -> None:
    month = timedelta(days=30)
    assert project(Decimal(1000), timedelta(days=10), month) == 3000
    assert project(Decimal(1000), month, month) == 1000  # over: what was used
    assert project(Decimal(0), timedelta(0), month) == 0
