"""Month-close arithmetic: allocation, overage and the money of an invoice line. Pure.

Rules (DESIGN §3, seeds 000 and 003):

- Billable users of a license and model in a period: named, the highest daily ``users``;
  concurrent, the highest daily peak; hourly, the sum of the daily ``hours``.
- A committed minimum counts when it is higher than the usage.
- Allocations of every license are pooled per organization: API requests per billable
  user (hourly: per billable hour), AI tokens per named or concurrent user.
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
    """Per license and model: highest daily users (named, concurrent) or sum of hours."""
    out: dict[Seat, Decimal] = defaultdict(Decimal)
    for report in days:
        seat = (report.license, report.model)
        if report.model == "hourly":
            out[seat] += report.hours or ZERO
        else:
            out[seat] = max(out[seat], Decimal(report.users or 0))
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
    api = sum(
        (count * card.api.allocation[lic][model] for (lic, model), count in users.items()),
        ZERO,
    )
    ai = sum(
        (count * card.ai.allocation.get(model, 0) for (_, model), count in users.items()),
        ZERO,
    )
    return Allocation(api, ai)


@dataclass(frozen=True)
class Line:
    """One meter of an invoice: what was allowed, used, billed, and the money."""

    allocation: Decimal
    used: Decimal
    overage: Decimal  # billed units (AI tokens: whole, rounded as the card says)
    expired: Decimal  # unused allocation, gone at the end of the period
    unit_price: Decimal
    amount: Decimal  # rounded once, to the currency's minor unit
    rounding: Decimal  # amount minus the exact overage * price: posted, never lost


def price_line(
    allocated: Decimal,
    used: Decimal,
    unit_price: Decimal,
    minor_units: int,
    whole_units: str = "none",
) -> Line:
    """Overage or expiry of one meter, and its money at ``unit_price``.

    ``whole_units``: ``"none"`` bills the exact overage; ``"up"`` and ``"half_up"`` round
    it to whole units first (the rate card's AI token rule).
    """
    over = max(used - allocated, ZERO)
    if whole_units != "none":
        over = over.quantize(Decimal(1), ROUND_CEILING if whole_units == "up" else ROUND_HALF_UP)
    exact = over * unit_price
    amount = exact.quantize(Decimal(1).scaleb(-minor_units), ROUND_HALF_UP)
    return Line(
        allocation=allocated,
        used=used,
        overage=over,
        expired=max(allocated - used, ZERO),
        unit_price=unit_price,
        amount=amount,
        rounding=amount - exact,
    )
