"""What alert delivery needs: the outbox in PostgreSQL, the outbound stream and its readers,
webhook POSTs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tally.domain.alert_delivery import AlertEvent, AlertKey, AlertRecord


@dataclass(frozen=True)
class WebhookTarget:
    id: str
    url: str
    secret: str  # whsec_ + base64


@dataclass(frozen=True)
class DueDelivery:
    alert: AlertRecord
    webhook: WebhookTarget
    attempts: int  # made so far


@dataclass(frozen=True)
class Attempt:
    alert_id: int
    webhook: str
    attempt: int
    status_code: int | None
    error: str | None
    attempted_at: datetime
    next_at: datetime | None


class AlertOutbox(Protocol):
    def turn(self) -> AbstractAsyncContextManager[bool]:
        """Inside it, True when this process is the one that publishes and retries (others
        stand by)."""
        ...

    async def unpublished(self, limit: int) -> list[AlertRecord]: ...

    async def published(self, alert_id: int, stream: str, stream_id: str) -> None: ...

    async def due(self, now: datetime, limit: int) -> list[DueDelivery]:
        """Failed deliveries whose retry is due at ``now``."""
        ...

    async def unattempted(self, alert: AlertKey) -> list[DueDelivery]:
        """The alert's deliveries never attempted (each enabled webhook added before it
        crossed, not POSTed yet); none when no such alert is recorded."""
        ...

    async def retries_pending(self) -> bool:
        """A failed attempt is waiting for its retry."""
        ...

    async def attempted(self, attempt: Attempt) -> None: ...


class AlertStream(Protocol):
    async def publish(self, event: dict[str, Any]) -> str:
        """XADD the CloudEvent; returns its stream id."""
        ...


class AlertFeed(Protocol):
    """The alerts stream's entries, each handed to a delivery target: at least once, the
    entry acknowledged after the target returned, and those of a dead reader reclaimed."""

    def running(
        self, deliver: Callable[[AlertEvent], Awaitable[None]]
    ) -> AbstractAsyncContextManager[None]:
        """Hand each entry to ``deliver`` while inside."""
        ...

    async def idle(self) -> bool:
        """Every entry was handed over and acknowledged."""
        ...


class WebhookSender(Protocol):
    async def send(self, target: WebhookTarget, message_id: str, body: bytes) -> int:
        """POST ``body`` signed for ``target``; returns the status code (raises when no
        answer came: connection refused, timeout)."""
        ...
