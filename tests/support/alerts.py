"""An alert as the outbox records it, for tests that publish or read one without metering."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from tally.domain.alert_delivery import AlertRecord

ALERT = AlertRecord(
    1, "acme", "2026-10", "api_request", "used", Decimal(80), Decimal(90_000), Decimal(110_000),
    Decimal(90_000), datetime(2026, 10, 9, tzinfo=UTC),
)  # fmt: skip
