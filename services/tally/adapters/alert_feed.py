"""The alerts stream read by FastStream: webhook delivery is a subscriber of ``tally:alerts``.

Each delivery target is a consumer group of the stream; this one is ``webhooks``. The group
is created here from id 0 before the subscriber starts (FastStream would create it at ``$``
and skip what is already in the stream). An entry is acknowledged once its target returned
(the delivery attempts are recorded), so delivery is at least once; a second subscriber of
the same group claims, with XAUTOCLAIM, what a dead reader left pending longer than the
claim idle time. An entry that is not one alert CloudEvent in one field ``event`` is logged
and acknowledged: it would otherwise come back forever.

The broker is a ``RedisClusterBroker`` on a cluster. The entries are written by Tally's own
XADD (``alert_outbound.RedisAlertStream``), not by a FastStream publisher: FastStream's
publisher writes one field ``__data__`` in its own envelope, and the wire contract is the
field ``event`` holding the CloudEvent's JSON. The publisher declared here documents that
stream in the AsyncAPI document and publishes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from faststream import ExceptionMiddleware
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.redis import RedisBroker, RedisClusterBroker, StreamSub
from faststream.redis.annotations import RedisStreamMessage
from faststream.redis.prometheus import RedisPrometheusMiddleware
from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from redis.exceptions import ResponseError

from tally.adapters.alert_outbound import EVENT_FIELD
from tally.domain.alert_delivery import AlertEvent

log = logging.getLogger(__name__)
GROUP = "webhooks"
Deliver = Callable[[AlertEvent], Awaitable[None]]


class NotAnAlert(ValueError):
    pass


async def _event_of(message: StreamMessage[Any]) -> AlertEvent:
    """The decoder: the entry's one field ``event``, an alert CloudEvent."""
    fields: dict[bytes, bytes] = message.raw_message["data"]
    if list(fields) != [EVENT_FIELD]:
        raise NotAnAlert(f"fields {sorted(fields)}, not one field 'event'")
    try:
        return AlertEvent.model_validate_json(fields[EVENT_FIELD])
    except ValidationError as exc:
        raise NotAnAlert(str(exc)) from exc


skip_unreadable = ExceptionMiddleware()


@skip_unreadable.add_handler(NotAnAlert)
async def _skip(exc: NotAnAlert, message: RedisStreamMessage) -> None:
    ids = b", ".join(message.raw_message["message_ids"]).decode()
    log.warning("alerts stream entry %s is no alert, acknowledged and skipped: %s", ids, exc)
    await message.ack()


class FastStreamAlertFeed:
    def __init__(
        self,
        url: str,
        stream: str,
        consumer: str,
        claim_idle_ms: int,
        poll_s: float,
        cluster: bool = False,
        metrics: CollectorRegistry | None = None,
    ) -> None:
        """A broker on ``url`` (no connection until ``running``) whose subscribers block a
        read, or wait between claims, for ``poll_s``; ``metrics``: the registry FastStream's
        Prometheus middleware counts the received messages in."""
        middlewares: list[Any] = [skip_unreadable]
        if metrics is not None:
            middlewares.append(RedisPrometheusMiddleware(registry=metrics, app_name="tally"))
        broker_class = RedisClusterBroker if cluster else RedisBroker
        self.broker = broker_class(
            url,
            middlewares=middlewares,
            logger=log,
            log_level=logging.DEBUG,  # a line per message: debug; failures are logged as errors
            description="Tally's Redis (TALLY_REDIS_URL): one server or any node of a cluster.",
        )
        self.stream = stream
        self._deliver: Deliver | None = None
        poll_ms = max(1, round(poll_s * 1000))
        reader = StreamSub(stream, group=GROUP, consumer=consumer, polling_interval=poll_ms)
        claimer = StreamSub(
            stream,
            group=GROUP,
            consumer=consumer,
            polling_interval=poll_ms,
            min_idle_time=claim_idle_ms,
        )
        for sub, documented in ((reader, True), (claimer, False)):
            self.broker.subscriber(
                stream=sub,
                ack_policy=AckPolicy.MANUAL,
                decoder=_event_of,
                title=GROUP,
                description=(
                    f"Webhook delivery: consumer group `{GROUP}` (created from id 0), one "
                    "consumer per `tally alerts deliver` process. Each alert is POSTed to "
                    "every enabled webhook added before it crossed, signed per Standard "
                    "Webhooks; the entry is acknowledged once the attempts are recorded, and "
                    "entries a dead consumer left pending are claimed (XAUTOCLAIM) after "
                    "TALLY_CLAIM_IDLE_MS. Retries are kept in PostgreSQL."
                ),
                include_in_schema=documented,
            )(self._handle)
        self.broker.publisher(
            stream=stream,
            schema=AlertEvent,
            title="alerts",
            description=(
                "Threshold alerts (TALLY_ALERTS_STREAM): `tally alerts deliver` XADDs each "
                "recorded alert once (again after a crash between the XADD and its record: "
                "the same CloudEvent id). Each entry has one field `event` whose value is the "
                "CloudEvent 1.0 in structured JSON (UTF-8), written by Tally's own XADD, not "
                "in FastStream's `__data__` envelope."
            ),
        )

    async def _handle(self, event: AlertEvent, message: RedisStreamMessage) -> None:
        assert self._deliver is not None, "entries are handed over only while running"
        await self._deliver(event)
        await message.ack()

    @asynccontextmanager
    async def running(self, deliver: Deliver) -> AsyncIterator[None]:
        self._deliver = deliver
        try:
            client = await self.broker.connect()
            try:
                await client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            await self.broker.start()
            yield
        finally:
            await self.broker.stop()  # the subscribers, then the connection
            self._deliver = None

    async def idle(self) -> bool:
        client = await self.broker.connect()
        last: Any = (await client.xinfo_stream(self.stream))["last-generated-id"]
        for group in await client.xinfo_groups(self.stream):
            if group["name"] in (GROUP, GROUP.encode()):
                return bool(group["pending"] == 0 and group["last-delivered-id"] == last)
        return False
