"""Alert delivery from the outbox: never in the metering transaction, never slowing it.

Each step publishes the alerts not yet on the outbound stream (XADD, then the record of
it: a crash in between publishes the same CloudEvent id again) and retries the failed
deliveries that are due, with capped exponential backoff up to a maximum number of
attempts. One process steps at a time (the outbox's turn); others stand by.

The first POST of an alert to each enabled webhook added before it crossed is made by the
alerts stream's reader (the feed: a consumer group, shared by every running deliverer),
so an alert is POSTed when it arrives on the stream; the steps never make a first
attempt, and the reader never a retry. Every attempt is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tally.adapters.ports.alerts import (
    AlertFeed,
    AlertOutbox,
    AlertStream,
    Attempt,
    DueDelivery,
    WebhookSender,
)
from tally.adapters.telemetry import metrics, tracing
from tally.domain.alert_delivery import AlertEvent, RetryPolicy, cloud_event, delivered

log = logging.getLogger(__name__)
STEP_LIMIT = 100  # alerts published, or deliveries attempted, per step


@dataclass
class DeliveryReport:
    published: int = 0
    attempts: int = 0
    delivered: int = 0


class AlertDelivery:
    def __init__(
        self,
        outbox: AlertOutbox,
        stream: AlertStream,
        stream_key: str,
        feed: AlertFeed,
        sender: WebhookSender,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.stream = stream
        self.stream_key = stream_key
        self.feed = feed
        self.sender = sender
        self.policy = policy
        self.clock = clock

    async def step(self, report: DeliveryReport) -> bool:
        """Publish new alerts and retry what is due now; False when there was nothing to do."""
        fresh = await self.outbox.unpublished(STEP_LIMIT)
        for alert in fresh:
            stream_id = await self.stream.publish(cloud_event(alert))
            await self.outbox.published(alert.id, self.stream_key, stream_id)
            report.published += 1
        due = await self.outbox.due(self.clock(), STEP_LIMIT)
        await asyncio.gather(*(self._attempt(delivery, report) for delivery in due))
        return bool(fresh or due)

    async def first_attempts(self, event: AlertEvent, report: DeliveryReport) -> None:
        """POST an alert read from the stream to each webhook that never had it."""
        due = await self.outbox.unattempted(event.key())
        await asyncio.gather(*(self._attempt(delivery, report) for delivery in due))

    async def _attempt(self, due: DueDelivery, report: DeliveryReport) -> None:
        body = json.dumps(cloud_event(due.alert), separators=(",", ":")).encode()
        status, error = None, None
        n = due.attempts + 1
        with tracing.tracer.start_as_current_span(
            "deliver alert",
            attributes={"tally.alert": due.alert.event_id, "tally.attempt": n},
        ) as span:
            try:
                status = await self.sender.send(due.webhook, due.alert.event_id, body)
            except Exception as exc:  # whatever kept an answer from coming: logged, retried
                error = f"{type(exc).__name__}: {exc}"[:500]
            if status is not None:
                span.set_attribute("http.response.status_code", status)
        at = self.clock()
        ok = delivered(status)
        metrics.WEBHOOK_DELIVERIES.labels("delivered" if ok else "failed").inc()
        if not ok:
            error = error or f"HTTP {status}"
            log.warning(
                "webhook %s, alert %s, attempt %d: %s", due.webhook.id, due.alert.id, n, error
            )
        await self.outbox.attempted(
            Attempt(
                due.alert.id,
                due.webhook.id,
                n,
                status,
                None if ok else error,
                at,
                None if ok else self.policy.next_at(n, at),
            )
        )
        report.attempts += 1
        report.delivered += ok

    async def run(self, until_idle: bool, poll_s: float) -> DeliveryReport:
        """Deliver until stopped, or (``until_idle``) until nothing is left to publish,
        POST or retry."""
        report = DeliveryReport()
        async with self.feed.running(lambda event: self.first_attempts(event, report)):
            while True:
                async with self.outbox.turn() as mine:
                    # read first: every entry acknowledged has its first attempts recorded
                    drained = mine and await self.feed.idle()
                    busy = mine and await self.step(report)
                    pending = mine and await self.outbox.retries_pending()
                if until_idle and drained and not busy and not pending:
                    return report
                if not busy:
                    await asyncio.sleep(poll_s)
