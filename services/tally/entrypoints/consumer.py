"""The metering consumer: a FastStream app on the ``metering`` group of the usage stream.

FastStream reads new entries in batches (XREADGROUP ``>``). Beside it run what FastStream
cannot do on Redis 7: finishing this consumer name's own pending entries at start-up,
claiming idle entries of dead consumers (XAUTOCLAIM), and, with ``until_idle``, exiting
once the group has nothing left. Every batch is committed to PostgreSQL first and XACKed
after, so a crash anywhere redelivers entries whose effect is then a no-op.

Rating a batch (CPU) and committing the previous one (waiting on PostgreSQL) overlap:
the handler rates and hands the batch to one commit worker through a queue of one.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import socket
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from faststream import AckPolicy, FastStream
from faststream.message import StreamMessage
from faststream.redis import RedisBroker, StreamSub
from redis.exceptions import ResponseError

from tally.adapters import redis_streams
from tally.adapters.postgres.connection import make_engine
from tally.config import Settings
from tally.domain.metering import Limits
from tally.metering import BatchReport, MeteringService, RatedBatch, StreamEntry
from tally.runtime import ServiceUrls

log = logging.getLogger(__name__)
broker_log = logging.getLogger("tally.faststream")  # FastStream logs every batch at INFO
broker_log.setLevel(logging.WARNING)
IDLE_CHECKS = 3  # consecutive empty looks before --until-idle exits


def consumer_name(settings: Settings) -> str:
    return settings.consumer_name or f"{socket.gethostname()}-{os.getpid()}"


async def _raw_parser(message: Any) -> StreamMessage[Any]:
    """Skip FastStream's envelope decoding: our entries are plain ``event`` fields."""
    return StreamMessage(raw_message=message, body=message)


async def _raw_decoder(message: StreamMessage[Any]) -> Any:
    return message.body


class Consumer:
    def __init__(
        self,
        settings: Settings,
        urls: ServiceUrls,
        until_idle: bool = False,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.urls = urls
        self.name = consumer_name(settings)
        self.until_idle = until_idle
        self.on_batch = on_batch
        self.engine = make_engine(urls.database)
        self.service = MeteringService(
            self.engine, Limits(settings.max_event_bytes, settings.max_future_skew)
        )
        self.redis = redis_streams.connect(urls.redis)
        self.broker = RedisBroker(urls.redis, logger=broker_log)
        self.app = FastStream(self.broker, logger=broker_log)
        self.totals: Counter[str] = Counter()
        self._ready: asyncio.Queue[RatedBatch] = asyncio.Queue(maxsize=1)
        self._committing = False
        self._tasks: list[asyncio.Task[None]] = []
        self.broker.subscriber(
            stream=StreamSub(
                settings.stream,
                group=settings.group,
                consumer=self.name,
                batch=True,
                max_records=settings.batch_size,
                polling_interval=settings.block_ms,
                last_id=">",
            ),
            ack_policy=AckPolicy.MANUAL,
            parser=_raw_parser,
            decoder=_raw_decoder,
        )(self._on_message)
        self.app.on_startup(self._before_reading)
        self.app.after_startup(self._start_background)
        self.app.after_shutdown(self._stop_background)

    async def _on_message(self, body: Any) -> None:
        entries = [
            (sid.decode(), fields)
            for sid, fields in zip(body["message_ids"], body["data"], strict=True)
        ]
        try:
            await self.handle(entries)
        except Exception:
            log.exception(
                "batch of %d entries failed; they stay pending and are retried", len(entries)
            )
            await asyncio.sleep(1)

    async def handle(self, entries: Sequence[StreamEntry]) -> None:
        """Rate the batch and queue it for the commit worker (waits while one is queued)."""
        if entries:
            await self._ready.put(await self.service.rate_batch(self.settings.stream, entries))

    async def _commit_worker(self) -> None:
        """Commit each batch, then XACK it. A failure leaves its entries pending (claimed later)."""
        while True:
            batch = await self._ready.get()
            self._committing = True
            try:
                report = await self.service.commit(batch)
                await self.redis.xack(self.settings.stream, self.settings.group, *batch.stream_ids)
            except Exception:
                log.exception(
                    "batch of %d entries failed; they stay pending and are claimed again after "
                    "%d ms",
                    len(batch.stream_ids),
                    self.settings.claim_idle_ms,
                )
                await asyncio.sleep(1)
                continue
            finally:
                self._committing = False
                self._ready.task_done()
            self.totals.update(report.counts)
            if self.on_batch:
                self.on_batch(report)

    async def _before_reading(self) -> None:
        """The group from id 0, then whatever a previous run of this name left pending."""
        await self.service.book()  # fails fast, with a clear error, on an unmigrated database
        self._tasks.append(asyncio.create_task(self._commit_worker(), name="commit"))
        await redis_streams.ensure_group(self.redis, self.settings.stream, self.settings.group)
        after = "0"
        while pending := await redis_streams.read_own_pending(
            self.redis,
            self.settings.stream,
            self.settings.group,
            self.name,
            self.settings.batch_size,
            after,
        ):
            await self.handle(pending)
            after = pending[-1][0]
        await self._ready.join()

    async def _start_background(self) -> None:
        self._tasks.append(asyncio.create_task(self._claim_loop(), name="claim"))
        if self.until_idle:
            self._tasks.append(asyncio.create_task(self._exit_when_idle(), name="idle"))

    async def _stop_background(self) -> None:
        """After the broker stopped reading: finish the queued commit, then stop the tasks."""
        try:
            await asyncio.wait_for(self._ready.join(), timeout=30)
        except TimeoutError:
            log.warning("a queued batch was not committed; it stays pending for the next run")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.redis.aclose()
        await self.engine.dispose()

    async def claim_once(self) -> int:
        claimed = await redis_streams.claim_idle(
            self.redis,
            self.settings.stream,
            self.settings.group,
            self.name,
            self.settings.claim_idle_ms,
            self.settings.batch_size,
        )
        await self.handle(claimed)
        return len(claimed)

    async def _claim_loop(self) -> None:
        interval = max(self.settings.claim_idle_ms / 2000, 0.05)
        while True:
            try:
                while await self.claim_once() == self.settings.batch_size:
                    pass
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("claiming idle entries failed; retrying")
            await asyncio.sleep(interval)

    async def _exit_when_idle(self) -> None:
        quiet = 0
        while quiet < IDLE_CHECKS:
            await asyncio.sleep(max(self.settings.block_ms / 1000, 0.05))
            backlog = await redis_streams.backlog(
                self.redis, self.settings.stream, self.settings.group
            )
            idle = backlog.drained and self._ready.empty() and not self._committing
            quiet = quiet + 1 if idle else 0
        self.app.exit()

    async def run(self) -> Counter[str]:
        tune_gc()
        await self.app.run()
        await self._group_still_there()
        return self.totals

    async def _group_still_there(self) -> None:
        """FastStream stops quietly when the group vanishes (NOGROUP): say so, and fail."""
        client = redis_streams.connect(self.urls.redis)
        try:
            await redis_streams.backlog(client, self.settings.stream, self.settings.group)
        except LookupError as exc:
            raise LookupError(
                f"{exc}: the stream or its group disappeared under the consumer (deleted, or "
                "Redis restarted without persistence)"
            ) from exc
        except ResponseError as exc:  # no such key: the stream itself is gone
            raise LookupError(
                f"stream {self.settings.stream!r} is gone ({exc}): run `tally migrate`"
            ) from exc
        finally:
            await client.aclose()


def tune_gc() -> None:
    """Fewer, cheaper collections: batches allocate many short-lived objects, and every
    full collection would walk the long-lived ones from start-up again (measured: about
    a third more events per second with ``tally bench``)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
