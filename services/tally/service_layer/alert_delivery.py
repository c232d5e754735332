"""Alert delivery from the outbox: never in the metering transaction, never slowing it.

Each step publishes the alerts not yet on the outbound stream (XADD, then the record of
it: a crash in between publishes the same CloudEvent id again) and POSTs each alert to
each enabled webhook added before it crossed, retrying failures with capped exponential
backoff up to a maximum number of attempts; every attempt is logged. One process
delivers at a time (the outbox's turn); others stand by.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from tally.adapters.ports.alerts import (
    AlertOutbox,
    AlertStream,
    Attempt,
    DueDelivery,
    WebhookSender,
)
from tally.domain.alert_delivery import RetryPolicy, cloud_event, delivered

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
        sender: WebhookSender,
        policy: RetryPolicy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.outbox = outbox
        self.stream = stream
        self.stream_key = stream_key
        self.sender = sender
        self.policy = policy
        self.clock = clock

    async def step(self, report: DeliveryReport) -> bool:
        """Publish and POST what is due now; False when there was nothing to do."""
        fresh = await self.outbox.unpublished(STEP_LIMIT)
        for alert in fresh:
            stream_id = await self.stream.publish(cloud_event(alert))
            await self.outbox.published(alert.id, self.stream_key, stream_id)
            report.published += 1
        due = await self.outbox.due(self.clock(), STEP_LIMIT)
        await asyncio.gather(*(self._attempt(delivery, report) for delivery in due))
        return bool(fresh or due)

    async def _attempt(self, due: DueDelivery, report: DeliveryReport) -> None:
        body = json.dumps(cloud_event(due.alert), separators=(",", ":")).encode()
        status, error = None, None
        try:
            status = await self.sender.send(due.webhook, due.alert.event_id, body)
        except Exception as exc:  # whatever kept an answer from coming: logged, retried
            error = f"{type(exc).__name__}: {exc}"[:500]
        at = self.clock()
        n = due.attempts + 1
        ok = delivered(status)
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
        while True:
            async with self.outbox.turn() as mine:
                busy = mine and await self.step(report)
                pending = mine and await self.outbox.retries_pending()
            if until_idle and mine and not busy and not pending:
                return report
            if not busy:
                await asyncio.sleep(poll_s)
