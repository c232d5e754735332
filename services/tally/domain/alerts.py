"""Threshold alerts: which thresholds an organization's meter has crossed in a period. Pure.

Rules (docs/content/operate/alerts.md):

- a ``used`` alert per threshold (percent of the allocation so far; 80 and 100 unless the
  organization set its own) once committed usage reaches it;
- one ``projected`` alert once the straight-line projection to the period's end exceeds
  100 % of the allocation (the dashboard's RED);
- no allocation yet, no alert: early in a period the licence reports that make the
  allocation may not have arrived, and every unit would look like overage.

Each alert is recorded once per organization, period, meter, kind and threshold (a unique
key in PostgreSQL), so deciding again on every batch is harmless.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum

from tally.domain.ledger import Entry, Meter
from tally.domain.period import period_bounds
from tally.domain.projection import RED_OVER, percent_of, project

DEFAULT_THRESHOLDS: tuple[Decimal, ...] = (Decimal(80), Decimal(100))
MAX_THRESHOLD = Decimal(1000)  # percent; a typo such as 8000 is refused, not silently kept


class Kind(StrEnum):
    USED = "used"  # committed usage reached the threshold
    PROJECTED = "projected"  # the projection to the period's end exceeds the threshold


@dataclass(frozen=True)
class Reading:
    """One meter of one organization and period, as the batch that just committed left it."""

    org: str
    period: str
    meter: Meter
    used: Decimal
    allocation: Decimal
    projected: Decimal


@dataclass(frozen=True)
class Crossing:
    reading: Reading
    kind: Kind
    threshold: Decimal  # percent of the allocation


def reading(
    org: str, period: str, meter: Meter, used: Decimal, allocation: Decimal, now: datetime
) -> Reading:
    """``used`` so far and its straight-line projection to the end of ``period`` at ``now``."""
    start, end = period_bounds(period)
    return Reading(org, period, meter, used, allocation, project(used, now - start, end - start))


def crossed(reading: Reading, thresholds: Iterable[Decimal]) -> list[Crossing]:
    """Every threshold ``reading`` is at or past (recorded ones included: the key dedups)."""
    used = percent_of(reading.used, reading.allocation)
    projected = percent_of(reading.projected, reading.allocation)
    if used is None or projected is None:  # no allocation (yet)
        return []
    out = [Crossing(reading, Kind.USED, t) for t in sorted(set(thresholds)) if used >= t]
    if projected > RED_OVER:
        out.append(Crossing(reading, Kind.PROJECTED, RED_OVER))
    return out


UsageKey = tuple[str, str, str]  # (org, period, meter)


def batch_usage(entries: Iterable[Entry]) -> dict[UsageKey, Decimal]:
    """What a batch's entries add to each organization's usage per period and meter."""
    added: dict[UsageKey, Decimal] = defaultdict(Decimal)
    for entry in entries:
        for line in entry.lines:
            account = line.account
            if account.kind == "usage" and account.period is not None:
                added[(account.owner, account.period, account.unit)] += line.amount
    return dict(added)


def parse_thresholds(text: str) -> tuple[Decimal, ...]:
    """``"75,90,100"`` as percentages, each above 0 and at most ``MAX_THRESHOLD``."""
    try:
        values = [Decimal(part.strip()) for part in text.split(",") if part.strip()]
    except InvalidOperation:
        raise ValueError(f"thresholds must be percentages like 75,90,100, got {text!r}") from None
    if not values:
        raise ValueError("give at least one threshold, e.g. --at 80,100")
    for value in values:
        if not value.is_finite() or not 0 < value <= MAX_THRESHOLD:
            raise ValueError(f"a threshold is a percentage in (0, {MAX_THRESHOLD}], got {value}")
    return tuple(sorted(set(values)))
