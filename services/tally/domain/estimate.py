"""The cost estimator: a month's AI tokens and API requests from a contact centre's shape.

The AI token pricing page's calculator ("Token Allocation Examples": 50, 200 and 1,000
agents) and the data-action question of the developer forum (a data action per interaction
with 800 concurrent licences), answered with the same rate card and the same arithmetic as
the month close, so an estimate and an invoice never disagree on a rule:

- allocation: :func:`tally.domain.allocation.allocation` over the users per license/model;
- tokens per feature: the rate card's conversion (:meth:`RateCard.tokens`);
- per-day figures are multiplied by the working days; growth then buffer are applied to
  the month's total; overage and its money: :func:`tally.domain.allocation.price_meter`.
Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from tally.domain.allocation import MeterPrice, Seat, allocation, price_meter
from tally.domain.ledger import AI_TOKEN, API_REQUEST
from tally.domain.projection import Health, health, percent_of
from tally.domain.ratecard import LicenseModel, LicenseName, RateCard

# A billion of anything a month is beyond any contact centre; the products of such figures
# (users x tokens x days x growth x price) stay within Decimal's 28 digits when rounded to
# the currency's minor unit, where 1e308 would not.
MAX_FIGURE = Decimal(10**9)
Count = Annotated[Decimal, Field(ge=0, le=MAX_FIGURE, allow_inf_nan=False)]
# the AI token pricing page: "Budget 50 tokens per user as safe estimate"
COPILOT_TOKENS_PER_USER = Decimal(50)


class Seats(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    license: LicenseName
    model: LicenseModel
    users: Count


class EstimateInput(BaseModel):
    """What a customer knows about its centre; every figure defaults to none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seats: tuple[Seats, ...] = ()
    currency: str = "USD"
    working_days: Annotated[int, Field(ge=1, le=31)] = 20
    growth_percent: Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)] = Decimal(0)
    buffer_percent: Annotated[Decimal, Field(ge=0, le=1000, allow_inf_nan=False)] = Decimal(0)
    # AI features
    copilot_users: Count = Decimal(0)
    copilot_tokens_per_user: Count = COPILOT_TOKENS_PER_USER
    virtual_agent_sessions_per_day: Count = Decimal(0)
    scoring_interactions_per_day: Count = Decimal(0)
    voice_bot_minutes_per_day: Count = Decimal(0)
    translate_minutes_per_month: Count = Decimal(0)
    digital_bot_sessions_per_month: Count = Decimal(0)
    messages_per_month: Count = Decimal(0)
    social_posts_per_month: Count = Decimal(0)
    other_tokens_per_month: Count = Decimal(0)
    # API requests
    interactions_per_day: Count = Decimal(0)
    requests_per_interaction: Count = Decimal(0)
    other_requests_per_month: Count = Decimal(0)

    def feature_quantities(self) -> dict[str, Decimal]:
        """A month's quantity per rate-card feature, in the feature's own unit."""
        days = self.working_days
        return {
            "agent_copilot": self.copilot_users * self.copilot_tokens_per_user,
            "virtual_agent": self.virtual_agent_sessions_per_day * days,
            "ai_scoring": self.scoring_interactions_per_day * days,
            "voice_bot": self.voice_bot_minutes_per_day * days,
            "ai_translate": self.translate_minutes_per_month,
            "digital_bot": self.digital_bot_sessions_per_month,
            "messaging": self.messages_per_month,
            "social": self.social_posts_per_month,
        }

    def requests(self) -> Decimal:
        """A month's API requests: per interaction (data actions, polling) plus the rest."""
        per_day = self.interactions_per_day * self.requests_per_interaction
        return per_day * self.working_days + self.other_requests_per_month


@dataclass(frozen=True)
class MeterEstimate:
    """One meter's month: the base estimate, with growth and buffer, against the allocation."""

    base: Decimal  # before growth and buffer
    planned: Decimal  # base with growth, then buffer
    price: MeterPrice  # allocation, overage (billed units), expiry, money

    @property
    def usage_percent(self) -> Decimal | None:
        return percent_of(self.planned, self.price.allocation)

    @property
    def health(self) -> Health:
        return health(self.planned, self.price.allocation)


@dataclass(frozen=True)
class Estimate:
    card_version: str
    currency: str
    tokens_by_feature: dict[str, Decimal]
    ai_tokens: MeterEstimate
    api_requests: MeterEstimate

    @property
    def total_cost(self) -> Decimal:
        return self.ai_tokens.price.amount + self.api_requests.price.amount


def estimate(given: EstimateInput, card: RateCard) -> Estimate:
    """The month ``given`` describes, priced by ``card`` in ``given.currency``."""
    if given.currency not in card.currencies:
        raise ValueError(
            f"rate card {card.version} prices no {given.currency}; "
            f"it prices {', '.join(sorted(card.currencies))}"
        )
    users: dict[Seat, Decimal] = {}
    for seat in given.seats:
        key = (seat.license, seat.model)
        if key in users:
            raise ValueError(f"{seat.license} {seat.model} is given twice")
        users[key] = seat.users
    allocated = allocation(users, card)
    tokens = {
        feature: card.tokens(feature, quantity)
        for feature, quantity in given.feature_quantities().items()
        if quantity
    }
    if given.other_tokens_per_month:
        tokens["other"] = given.other_tokens_per_month
    minor = card.currencies[given.currency]
    grow = (1 + given.growth_percent / 100) * (1 + given.buffer_percent / 100)

    def meter(
        base: Decimal, allocated: Decimal, prices: dict[str, Decimal], whole: str
    ) -> MeterEstimate:
        planned = base * grow
        price = price_meter(allocated, planned, prices[given.currency], minor, whole)
        return MeterEstimate(base, planned, price)

    return Estimate(
        card_version=card.version,
        currency=given.currency,
        tokens_by_feature=tokens,
        ai_tokens=meter(
            sum(tokens.values(), Decimal(0)),
            allocated.ai_tokens,
            card.ai.price,
            card.ai.overage_whole_tokens,
        ),
        api_requests=meter(given.requests(), allocated.api_requests, card.api.price, "none"),
    )


class MeterReport(BaseModel):
    """One meter of an estimate as shown to a user (decimals as strings in JSON)."""

    unit: str
    estimated: Decimal  # the month's base estimate, before growth and buffer
    planned: Decimal  # with growth and buffer
    allocation: Decimal
    remaining: Decimal
    usage_percent: Decimal | None  # None: no allocation
    overage: Decimal  # billed units
    unit_price: Decimal
    cost: Decimal
    health: Health


class EstimateReport(BaseModel):
    rate_card: str
    currency: str
    tokens_by_feature: dict[str, Decimal]
    ai_tokens: MeterReport
    api_requests: MeterReport
    total_cost: Decimal


def report(result: Estimate) -> EstimateReport:
    def meter(unit: str, given: MeterEstimate) -> MeterReport:
        share = given.usage_percent
        return MeterReport(
            unit=unit,
            estimated=given.base,
            planned=given.planned,
            allocation=given.price.allocation,
            remaining=given.price.expired,
            usage_percent=None if share is None else share.quantize(Decimal("0.1")),
            overage=given.price.overage,
            unit_price=given.price.unit_price,
            cost=given.price.amount,
            health=given.health,
        )

    return EstimateReport(
        rate_card=result.card_version,
        currency=result.currency,
        tokens_by_feature=result.tokens_by_feature,
        ai_tokens=meter(AI_TOKEN, result.ai_tokens),
        api_requests=meter(API_REQUEST, result.api_requests),
        total_cost=result.total_cost,
    )
