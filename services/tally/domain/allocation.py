"""Month-close arithmetic: allocation, overage and the money of an invoice line. Pure.

Rules (docs/content/concepts/close.md; the fair-use policy and the AI token pricing):

- Billable users of a license and model in a period: named, the highest daily ``users``;
  concurrent, the highest daily peak; hourly, the sum of the daily ``hours`` (a day
  reported more than once counts its highest report).
- A committed minimum counts when it is higher than the usage.
- Allocations of every license are pooled per organization: API requests per billable
  user (hourly: per billable hour), AI tokens per named or concurrent user, plus the AI
  tokens purchased for the period (the AI token pricing page: no minimum, each period its
  own, no carryover).
- Overage is what was used beyond the allocation; unused allocation expires.
- Money is rounded once, on the invoice line, half up to the currency's minor unit; AI
  token overage is billed in whole tokens as the rate card says (rounded up by default).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from tally.domain.ratecard import LicenseModel, LicenseName, RateCard

Seat = tuple[LicenseName, LicenseModel]  # (license, model)
ZERO = Decimal(0)


@dataclass(frozen=True)
class LicenseDay:
    """One day's report from the licensing system (a ``license.usage`` event)."""

    license: LicenseName
    model: LicenseModel
    day: date
    users: int | None = None
    hours: Decimal | None = None


def billable_users(days: Iterable[LicenseDay]) -> dict[Seat, Decimal]:
    """Per license and model: highest daily users (named, concurrent) or sum of hours.

    A day reported twice (a resend under a new id, a correction) counts its highest report
    once, so a licensing system that repeats itself never inflates the allocation.
    """
    per_day: dict[tuple[Seat, date], Decimal] = defaultdict(Decimal)
    for report in days:
        key = ((report.license, report.model), report.day)
        value = (report.hours or ZERO) if report.model == "hourly" else Decimal(report.users or 0)
        per_day[key] = max(per_day[key], value)
    out: dict[Seat, Decimal] = defaultdict(Decimal)
    for (seat, _), value in per_day.items():
        out[seat] = out[seat] + value if seat[1] == "hourly" else max(out[seat], value)
    return dict(out)


def with_commitments(
    used: Mapping[Seat, Decimal], committed: Mapping[Seat, Decimal]
) -> dict[Seat, Decimal]:
    """A committed minimum counts when it is higher than the usage."""
    return {
        seat: max(used.get(seat, ZERO), committed.get(seat, ZERO))
        for seat in set(used) | set(committed)
    }


@dataclass(frozen=True)
class Allocation:
    api_requests: Decimal
    ai_tokens: Decimal


def allocation(users: Mapping[Seat, Decimal], card: RateCard) -> Allocation:
    """The organization's pooled allocation for the period."""
    for lic, model in users:
        if model not in card.api.allocation.get(lic, {}):
            raise ValueError(f"the rate card has no allocation for {lic} {model}")
    api = sum(
        (count * card.api.allocation[lic][model] for (lic, model), count in users.items()),
        ZERO,
    )
    ai = sum(
        (count * card.ai.allocation.get(model, 0) for (_, model), count in users.items()),
        ZERO,
    )
    return Allocation(api, ai)


def with_purchased(allocated: Allocation, tokens: Decimal) -> Allocation:
    """Tokens purchased for the period add to its AI allocation (that period only)."""
    return Allocation(allocated.api_requests, allocated.ai_tokens + tokens)


def billed_units(deficit: Decimal, whole_units: str) -> Decimal:
    """Units billed for a deficit: exact (``"none"``) or whole, rounded ``"up"``/``"half_up"``."""
    if whole_units == "none":
        return deficit
    return deficit.quantize(Decimal(1), ROUND_CEILING if whole_units == "up" else ROUND_HALF_UP)


@dataclass(frozen=True)
class Money:
    exact: Decimal  # units * unit price, unrounded
    amount: Decimal  # rounded once, half up, to the currency's minor unit

    @property
    def rounding(self) -> Decimal:
        """What rounding added (or took): posted to its own account, never lost."""
        return self.amount - self.exact


def money(units: Decimal, unit_price: Decimal, minor_units: int) -> Money:
    exact = units * unit_price
    return Money(exact, exact.quantize(Decimal(1).scaleb(-minor_units), ROUND_HALF_UP))


@dataclass(frozen=True)
class MeterPrice:
    """One meter priced for an invoice: what was allowed, used, billed, and the money (an
    invoice line holds one; a ledger ``Line`` is something else)."""

    allocation: Decimal
    used: Decimal
    overage: Decimal  # billed units (AI tokens: whole, rounded as the card says)
    expired: Decimal  # unused allocation, gone at the end of the period
    unit_price: Decimal
    money: Money

    @property
    def deficit(self) -> Decimal:
        """Exact units used beyond the allocation (``overage`` may be rounded to whole)."""
        return max(self.used - self.allocation, ZERO)

    @property
    def amount(self) -> Decimal:
        return self.money.amount


def price_meter(
    allocated: Decimal,
    used: Decimal,
    unit_price: Decimal,
    minor_units: int,
    whole_units: str = "none",
) -> MeterPrice:
    """Overage or expiry of one meter, and its money at ``unit_price``.

    ``whole_units``: ``"none"`` bills the exact overage; ``"up"`` and ``"half_up"`` round
    it to whole units first (the rate card's AI token rule).
    """
    over = billed_units(max(used - allocated, ZERO), whole_units)
    return MeterPrice(
        allocation=allocated,
        used=used,
        overage=over,
        expired=max(allocated - used, ZERO),
        unit_price=unit_price,
        money=money(over, unit_price, minor_units),
    )
