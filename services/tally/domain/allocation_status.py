"""Where a meter stands in its period (the fair-use policy and the AI token pricing):
allocation, used, remaining, by feature, week by week, projected to the month's end, and its
health. Pure.

- Weeks of a month are fixed: week 1 is days 1-7, week 2 days 8-14, week 3 days 15-21,
  week 4 days 22-28, week 5 the rest (none in a 28-day February). Each week's share is of the
  month's allocation, as on the AI token pricing page's dashboard.
- The projection is a straight line from the usage so far to the period's end
  (:func:`tally.domain.projection.project`); a period that is over projects what was used.
- Key metrics (the AI token pricing page): utilisation = used / allocation; overage risk =
  the projection's health; unused allocation = what the projection leaves of the allocation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from tally.domain.period import period_bounds
from tally.domain.projection import Health, health, percent_of, project

WEEK_DAYS = 7
ZERO = Decimal(0)


def week_of(day: date) -> int:
    """1 to 5: the week of the month ``day`` falls in."""
    return min((day.day - 1) // WEEK_DAYS + 1, 5)


@dataclass(frozen=True)
class Share:
    name: str
    used: Decimal
    percent: Decimal | None  # of the whole (features: of what was used; weeks: of the allocation)


@dataclass(frozen=True)
class MeterStatus:
    period: str
    unit: str
    allocation: Decimal
    used: Decimal
    features: list[Share]  # AI tokens per feature, largest first; empty for API requests
    weeks: list[Share]  # "week 1".. "week 5" (only weeks the month has)
    projected: Decimal
    as_of: datetime
    days: list[Decimal]  # usage of each day of the period read so far (day 1 first)

    @property
    def remaining(self) -> Decimal:
        return max(self.allocation - self.used, ZERO)

    @property
    def overage(self) -> Decimal:
        return max(self.used - self.allocation, ZERO)

    @property
    def usage_percent(self) -> Decimal | None:
        return percent_of(self.used, self.allocation)

    @property
    def projected_percent(self) -> Decimal | None:
        return percent_of(self.projected, self.allocation)

    @property
    def health(self) -> Health:
        return health(self.projected, self.allocation)

    @property
    def projected_unused(self) -> Decimal:
        """Allocation the projection leaves unused: it expires (no carryover)."""
        return max(self.allocation - self.projected, ZERO)


def daily_tokens(
    quantities: Mapping[tuple[date, str], Decimal], tokens: Callable[[str, Decimal], Decimal]
) -> dict[tuple[date, str], Decimal]:
    """AI tokens per (UTC day, feature) from quantities in each feature's own unit: the
    conversion (``tokens``, the rate card's) of the running quantity at the day's end minus
    at its start. The differences telescope, so a feature's days (and weeks) add up exactly
    to the conversion of its total, which is what the ledger posts and the invoice bills."""
    running: dict[str, Decimal] = defaultdict(Decimal)
    out = {}
    for day, feature in sorted(quantities):
        before = running[feature]
        running[feature] += quantities[(day, feature)]
        out[(day, feature)] = tokens(feature, running[feature]) - tokens(feature, before)
    return out


def meter_status(
    period: str,
    unit: str,
    allocation: Decimal,
    daily: Mapping[tuple[date, str], Decimal],
    as_of: datetime,
    used: Decimal | None = None,
) -> MeterStatus:
    """The status of one meter from its usage per (UTC day, feature) so far.

    ``daily`` holds the committed usage of the period's days (feature ``""`` when the meter
    has none). ``as_of`` is the instant the usage was read at (the projection's clock).
    ``used``: the period's usage as the ledger holds it (what the invoice will bill); by
    default the sum of ``daily``.
    """
    start, end = period_bounds(period)
    if used is None:
        used = sum(daily.values(), ZERO)
    per_feature: dict[str, Decimal] = defaultdict(Decimal)
    per_week: dict[int, Decimal] = defaultdict(Decimal)
    per_day: dict[int, Decimal] = defaultdict(Decimal)
    for (day, feature), quantity in daily.items():
        if feature:
            per_feature[feature] += quantity
        per_week[week_of(day)] += quantity
        per_day[day.day] += quantity
    last_day = (end.date() - start.date()).days
    read = min(max((min(as_of, end) - start).days + (as_of < end), 0), last_day)
    weeks = range(1, week_of(date(start.year, start.month, last_day)) + 1)
    return MeterStatus(
        period=period,
        unit=unit,
        allocation=allocation,
        used=used,
        features=[
            Share(name, quantity, percent_of(quantity, used))
            for name, quantity in sorted(per_feature.items(), key=lambda i: (-i[1], i[0]))
        ],
        weeks=[
            Share(f"week {week}", per_week[week], percent_of(per_week[week], allocation))
            for week in weeks
        ],
        projected=project(used, min(as_of, end) - start, end - start),
        as_of=as_of,
        days=[per_day[day] for day in range(1, max(read, max(per_day, default=0)) + 1)],
    )
