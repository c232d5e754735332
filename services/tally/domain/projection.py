"""Where a meter is heading: straight-line projection to the period's end, and its health.

The health rule (the AI token pricing page's dashboard; "Allocation tracking" in the
docs' reports page): compare the usage projected to the period's end with the allocation —
GREEN under 80 %, AMBER from 80 % up to and including 100 %, RED over 100 %.
An empty allocation with any usage is RED (every unit is overage). Pure.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

AMBER_FROM = Decimal(80)  # percent of the allocation
RED_OVER = Decimal(100)


class Health(StrEnum):
    GREEN = "GREEN"
    AMBER = "AMBER"
    RED = "RED"


def project(used: Decimal, elapsed: timedelta, length: timedelta) -> Decimal:
    """``used`` so far extended at the same rate to the whole ``length`` of the period.

    Nothing elapsed yet projects nothing beyond what is already used; a period that is over
    projects exactly what was used.
    """
    if elapsed >= length or elapsed <= timedelta(0):
        return used
    return (
        used
        * Decimal(length // timedelta(microseconds=1))
        / Decimal(elapsed // timedelta(microseconds=1))
    )


def percent_of(part: Decimal, whole: Decimal) -> Decimal | None:
    """``part`` as a percentage of ``whole``; None when ``whole`` is zero (no allocation)."""
    return None if whole == 0 else part * 100 / whole


def health(projected: Decimal, allocation: Decimal) -> Health:
    share = percent_of(projected, allocation)
    if share is None:
        return Health.RED if projected > 0 else Health.GREEN
    if share > RED_OVER:
        return Health.RED
    return Health.AMBER if share >= AMBER_FROM else Health.GREEN
