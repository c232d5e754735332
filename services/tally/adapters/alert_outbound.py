"""Where alerts go out: the outbound Redis stream and webhooks signed per Standard Webhooks.

Signing is the ``standardwebhooks`` package's (the spec's reference implementation):
``webhook-signature: v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">``
keyed with the base64 secret after ``whsec_``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
from standardwebhooks import Webhook

from tally.adapters.ports.alerts import WebhookTarget
from tally.adapters.redis_client import RedisClient

EVENT_FIELD = b"event"  # the entry's one field: the CloudEvent, structured JSON
CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"


class RedisAlertStream:
    def __init__(self, client: RedisClient, key: str) -> None:
        self.client = client
        self.key = key

    async def publish(self, event: dict[str, Any]) -> str:
        stream_id = await self.client.xadd(self.key, {EVENT_FIELD: json.dumps(event).encode()})
        return stream_id.decode() if isinstance(stream_id, bytes) else str(stream_id)


def signed_headers(
    target: WebhookTarget, message_id: str, body: bytes, at: datetime
) -> dict[str, str]:
    """The Standard Webhooks headers for ``body`` sent at ``at``."""
    return {
        "content-type": CONTENT_TYPE,
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(target.secret).sign(message_id, at, body.decode()),
    }


class HttpWebhookSender:
    def __init__(
        self, client: httpx.AsyncClient, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.client = client
        self.clock = clock

    async def send(self, target: WebhookTarget, message_id: str, body: bytes) -> int:
        headers = signed_headers(target, message_id, body, self.clock())
        response = await self.client.post(target.url, content=body, headers=headers)
        return response.status_code
