"""What a recorded alert looks like outside Tally, and when a failed webhook is retried. Pure.

- The CloudEvent (1.0, structured JSON, ``AlertEvent``) carries the alert; its ``id`` is
  derived from the alert's unique key, so publishing it again (after a crash between the
  XADD and the record of it) is the same event for a receiver that dedups on ``id``, and a
  reader of the stream finds the alert again by that key (``AlertEvent.key``).
- A webhook is retried with exponential backoff (doubling from ``first``, capped at
  ``cap``) until it answers 2xx or ``max_attempts`` were made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field

EVENT_TYPE: Final = "tally.alert.threshold_crossed"
EVENT_SOURCE: Final = "tally"
# uuid5 namespace of alert ids (fixed: changing it would change every published id)
ALERT_NAMESPACE = uuid.UUID("6f1d3c52-7a35-4f0e-9a7e-2b8c4d1e9f30")


def _plain(value: Decimal) -> str:
    """A decimal as a JSON string without exponent or trailing zeros (80.0 -> "80")."""
    return format(value.normalize(), "f")


DECIMAL = r"^\d+(\.\d+)?$"  # a decimal as a JSON string: no sign, no exponent


@dataclass(frozen=True)
class AlertKey:
    """What an alert is recorded once per."""

    org: str
    period: str
    meter: str
    kind: str
    threshold: Decimal


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


class AlertData(BaseModel):
    """The alert itself (decimals as strings)."""

    model_config = ConfigDict(frozen=True)

    org: str = Field(description="The organization (also the event's subject).")
    period: str = Field(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="The month, YYYY-MM.")
    meter: Literal["api_request", "ai_token"]
    kind: Literal["used", "projected"] = Field(
        description="used: committed usage reached the threshold; projected: the straight-line "
        "projection to the period's end first exceeds it."
    )
    threshold_percent: str = Field(pattern=DECIMAL, description="Percent of the allocation.")
    used: str = Field(pattern=DECIMAL)
    allocation: str = Field(pattern=DECIMAL)
    projected: str = Field(pattern=DECIMAL)


class AlertEvent(BaseModel):
    """A threshold alert as a CloudEvent 1.0 in structured JSON: the value of the one field
    ``event`` of an entry on the alerts stream, and the body POSTed to the webhooks."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(
        description="alert_<uuid5 of the alert's unique key>: a re-publish repeats it; dedup on it."
    )
    source: Literal["tally"] = EVENT_SOURCE
    type: Literal["tally.alert.threshold_crossed"] = EVENT_TYPE
    subject: str = Field(description="The organization.")
    time: str = Field(description="When the threshold was crossed (RFC 3339, UTC).")
    datacontenttype: Literal["application/json"] = "application/json"
    data: AlertData

    def key(self) -> AlertKey:
        d = self.data
        return AlertKey(d.org, d.period, d.meter, d.kind, Decimal(d.threshold_percent))


def cloud_event(alert: AlertRecord) -> dict[str, Any]:
    """The alert as a CloudEvent 1.0 in structured JSON form (decimals as strings)."""
    return AlertEvent.model_validate(
        {
            "id": alert.event_id,
            "subject": alert.org,
            "time": alert.crossed_at.isoformat().replace("+00:00", "Z"),
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
    ).model_dump(mode="json")


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
