"""Daily rollups of new events (UTC days): what the metering transaction adds to
``api_usage_daily`` and ``ai_usage_daily``. Pure: the caller passes only the batch's new
events (never duplicates, conflicts or rejects), so a rollup counts each event once.

Non-billable API requests are kept too (``billable`` false): out of the report, on record.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from decimal import Decimal

from tally.domain.ledger import AI_TOKEN
from tally.domain.rating import Rated

# (org, day, oauth_client_id, template_uri, method, status, billable)
ApiDayKey = tuple[str, date, str, str, str, int, bool]
AiDayKey = tuple[str, str, date, str]  # (org, period, day, feature)


def api_days(events: Iterable[Rated]) -> dict[ApiDayKey, int]:
    """Requests per rollup key (one row per key and batch)."""
    requests: dict[ApiDayKey, int] = defaultdict(int)
    for event in events:
        if event.api is not None:
            data = event.api
            key = (
                event.org,
                event.day,
                data.oauth_client_id,
                data.template_uri,
                data.method,
                data.status,
                event.status == "metered",
            )
            requests[key] += data.requests
    return requests


def ai_days(events: Iterable[Rated]) -> dict[AiDayKey, Decimal]:
    """AI quantity per rollup key (the feature's own unit)."""
    quantity: dict[AiDayKey, Decimal] = defaultdict(Decimal)
    for event in events:
        if event.meter == AI_TOKEN and event.feature is not None:
            quantity[(event.org, event.period, event.day, event.feature)] += event.quantity
    return quantity
