"""What alert delivery needs: the outbox in PostgreSQL, the outbound stream, webhook POSTs."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tally.domain.alert_delivery import AlertRecord


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
        """Inside it, True when this process is the one deliverer (others stand by)."""
        ...

    async def unpublished(self, limit: int) -> list[AlertRecord]: ...

    async def published(self, alert_id: int, stream: str, stream_id: str) -> None: ...

    async def due(self, now: datetime, limit: int) -> list[DueDelivery]: ...

    async def retries_pending(self) -> bool:
        """A failed attempt is waiting for its retry."""
        ...

    async def attempted(self, attempt: Attempt) -> None: ...


class AlertStream(Protocol):
    async def publish(self, event: dict[str, Any]) -> str:
        """XADD the CloudEvent; returns its stream id."""
        ...


class WebhookSender(Protocol):
    async def send(self, target: WebhookTarget, message_id: str, body: bytes) -> int:
        """POST ``body`` signed for ``target``; returns the status code (raises when no
        answer came: connection refused, timeout)."""
        ...
