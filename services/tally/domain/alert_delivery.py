"""What a recorded alert looks like outside Tally, and when a failed webhook is retried. Pure.

- The CloudEvent (1.0, structured JSON) carries the alert; its ``id`` is derived from the
  alert's unique key, so publishing it again (after a crash between the XADD and the
  record of it) is the same event for a receiver that dedups on ``id``.
- A webhook is retried with exponential backoff (doubling from ``first``, capped at
  ``cap``) until it answers 2xx or ``max_attempts`` were made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

EVENT_TYPE = "tally.alert.threshold_crossed"
EVENT_SOURCE = "tally"
# uuid5 namespace of alert ids (fixed: changing it would change every published id)
ALERT_NAMESPACE = uuid.UUID("6f1d3c52-7a35-4f0e-9a7e-2b8c4d1e9f30")


def _plain(value: Decimal) -> str:
    """A decimal as a JSON string without exponent or trailing zeros (80.0 -> "80")."""
    return format(value.normalize(), "f")


@dataclass(frozen=True)
class AlertRecord:
    id: int  # the row's id (webhook attempts point at it)
    org: str
    period: str
    meter: str
    kind: str
    threshold: Decimal
    used: Decimal
    allocation: Decimal
    projected: Decimal
    crossed_at: datetime

    @property
    def event_id(self) -> str:
        """Stable for the alert's unique key: the CloudEvent ``id`` and ``webhook-id``."""
        key = "/".join((self.org, self.period, self.meter, self.kind, _plain(self.threshold)))
        return f"alert_{uuid.uuid5(ALERT_NAMESPACE, key).hex}"


def cloud_event(alert: AlertRecord) -> dict[str, Any]:
    """The alert as a CloudEvent 1.0 in structured JSON form (decimals as strings)."""
    return {
        "specversion": "1.0",
        "id": alert.event_id,
        "source": EVENT_SOURCE,
        "type": EVENT_TYPE,
        "subject": alert.org,
        "time": alert.crossed_at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {
            "org": alert.org,
            "period": alert.period,
            "meter": alert.meter,
            "kind": alert.kind,
            "threshold_percent": _plain(alert.threshold),
            "used": _plain(alert.used),
            "allocation": _plain(alert.allocation),
            "projected": _plain(alert.projected),
        },
    }


@dataclass(frozen=True)
class RetryPolicy:
    first: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_attempts: int = 8

    def next_at(self, attempt: int, at: datetime) -> datetime | None:
        """When attempt ``attempt + 1`` is due after attempt ``attempt`` failed at ``at``;
        None once ``max_attempts`` were made (given up)."""
        if attempt >= self.max_attempts:
            return None
        doubled = self.first * (1 << min(attempt - 1, 30))  # 2**30 * first: past any cap
        return at + min(doubled, self.cap)


def delivered(status_code: int | None) -> bool:
    return status_code is not None and 200 <= status_code < 300
