"""The Python producer SDK: build, validate and XADD usage events (the docs'
"The wire format", docs/content/integrate/wire-format.md).

    async with UsageProducer("redis://localhost:6379/0", source="crm-sync") as producer:
        await producer.api_request("acme", oauth_client_id="c-42", method="GET",
                                   template_uri="/api/v2/users/{userId}", status=200,
                                   client_kind="integration")
        await producer.ai_usage("acme", feature="voice_bot", quantity=Decimal("12.5"),
                                unit="minute")
    # leaving the block flushed the queue

Each method builds a CloudEvents 1.0 event, validates it with the wire-contract models
(a bad call raises :class:`tally.domain.events.InvalidEvent` at the caller, nothing is
queued), serialises it once to JSON (decimals as JSON strings, never through ``float``)
and queues the bytes. Queued entries go out as pipelined ``XADD`` s (field ``event``) in
batches of ``batch_size``: on :meth:`UsageProducer.flush`, whenever the queue is full,
and when the ``async with`` block ends.

With ``shards`` > 1 each event goes to its shard's key (``tally.domain.shards``: the
subject's SHA-256 decides), one pipeline per shard. On a Redis Cluster, a batch is not
done until ``WAIT`` says one replica of the shard's master has it (by default, when that
master has a replica): an event the producer was told is written survives a failover.

Connection and timeout errors, and a cluster's failover errors (MOVED, ASK, CLUSTERDOWN, a
batch no replica took in time), are retried with exponential backoff, re-sending the same
bytes, so the same ``(source, id)`` may land in the stream twice; the consumer dedupes on
that key. If the retries are exhausted the error propagates and the entries stay queued:
a later ``flush()`` sends them again, still with the same ids.

Event ids are UUIDv7 (RFC 9562), generated here, monotonic within the process.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import threading
import time as _time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, Self

from redis.asyncio.cluster import RedisCluster
from redis.typing import EncodableT, FieldT

from tally.adapters.redis_client import RedisClient, connect, failover
from tally.domain.events import DEFAULT_STREAM, EVENT_FIELD, validate_event
from tally.domain.shards import shard_key, shard_of

__all__ = [
    "DEFAULT_SOURCE",
    "DEFAULT_STREAM",
    "EVENT_FIELD",
    "Fields",
    "NotReplicated",
    "RawEntry",
    "UUID7Generator",
    "UsageProducer",
    "format_uuid7",
    "rfc3339",
    "uuid7",
]

DEFAULT_SOURCE = "tally-python-sdk"

Fields = Mapping[str, bytes | str] | Mapping[bytes, bytes | str]
"""The fields of one stream entry, as given to ``XADD``."""
RawEntry = bytes | str | Fields
"""What :meth:`UsageProducer.publish_raw` accepts: an ``event`` value, or a whole entry."""


class NotReplicated(RuntimeError):
    """No replica of the shard's master took the batch within the wait: sent again."""


def _retryable(exc: BaseException) -> bool:
    """Errors after which a batch is sent again: the connection, a cluster failing over."""
    return isinstance(exc, NotReplicated) or failover(exc)


_RAND_BITS = 74  # rand_a (12) + rand_b (62)
_RAND_MASK = (1 << _RAND_BITS) - 1
_MS_MASK = (1 << 48) - 1
_DECIMAL_FIELDS = frozenset({"quantity", "hours"})


# --- UUIDv7 -------------------------------------------------------------------------


def format_uuid7(unix_ms: int, rand: int) -> str:
    """The canonical text of a UUIDv7 from 48 bits of unix milliseconds and 74 random bits.

    Layout (RFC 9562 §5.7): ``unix_ts_ms`` (48) | ``ver`` = 7 (4) | ``rand_a`` (12) |
    ``var`` = 0b10 (2) | ``rand_b`` (62).
    """
    rand &= _RAND_MASK
    value = (
        (unix_ms & _MS_MASK) << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & ((1 << 62) - 1))
    )
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class UUID7Generator:
    """UUIDv7 ids, strictly increasing within the generator (thread-safe).

    Within one millisecond (or if the clock steps back) the 74 random bits of the previous
    id are incremented by a random step (RFC 9562 §6.2, method 3); if they would overflow,
    the timestamp is advanced by one millisecond. A fresh millisecond starts from random
    bits with the top bit clear, leaving room for about 2**73 increments.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_rand = 0

    def __call__(self) -> str:
        return self.next()

    def next(self) -> str:
        now_ms = _time.time_ns() // 1_000_000
        with self._lock:
            if now_ms > self._last_ms:
                ms, rand = now_ms, secrets.randbits(_RAND_BITS - 1)
            else:
                ms, rand = self._last_ms, self._last_rand + 1 + secrets.randbits(32)
                if rand > _RAND_MASK:
                    ms, rand = ms + 1, secrets.randbits(_RAND_BITS - 1)
            self._last_ms, self._last_rand = ms, rand
        return format_uuid7(ms, rand)


_default_generator = UUID7Generator()


def uuid7() -> str:
    """A new time-ordered event id (UUIDv7), increasing within this process."""
    return _default_generator.next()


def rfc3339(moment: datetime) -> str:
    """``moment`` in UTC, RFC 3339 with ``Z`` (microseconds only when present)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("time must be timezone-aware (a naive datetime has no UTC instant)")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _encode(body: Mapping[str, Any]) -> bytes:
    return _encoder.encode(body).encode()


def _event_value(fields: Fields) -> bytes | str | None:
    """The ``event`` field of a whole entry, if it has one."""
    for name, value in fields.items():
        if name in (EVENT_FIELD, EVENT_FIELD.encode()):
            return value
    return None


# --- the producer ------------------------------------------------------------------------


class UsageProducer:
    """Queue usage events and XADD them in pipelined batches.

    ``redis``: a ``redis.asyncio.Redis`` or ``RedisCluster`` client (left open on close)
    or a ``redis://`` URL of a server or of any node of a cluster (a client is made and
    closed with the producer). ``stream`` defaults to ``tally:usage`` and ``shards`` to 1:
    the SDK reads none of the server's settings, so pass them if yours differ
    (``TALLY_STREAM``, ``TALLY_STREAM_SHARDS``). ``source`` is the CloudEvents ``source``
    of every event unless a call gives its own; with the event id it is the idempotency key.

    ``batch_size``: entries per pipelined round (and the queue size that triggers one).
    A round failing with a connection or timeout error is re-sent up to ``max_retries``
    times, after ``backoff`` doubling up to ``max_backoff`` seconds (with jitter): with
    the defaults, a Redis outage (or a cluster's failover) of roughly 6-11 s is ridden out.

    ``wait_replicas``: after each batch, ``WAIT`` until this many replicas of the shard's
    master have it, at most ``wait_timeout_ms`` (fewer: the batch is sent again). Unset: 1 on
    a cluster whose shard's master has a replica, else 0.
    """

    def __init__(
        self,
        redis: RedisClient | str,
        stream: str = DEFAULT_STREAM,
        *,
        shards: int = 1,
        wait_replicas: int | None = None,
        wait_timeout_ms: int = 2000,
        source: str = DEFAULT_SOURCE,
        batch_size: int = 1000,
        max_retries: int = 10,
        backoff: float = 0.05,
        max_backoff: float = 2.0,
        ids: UUID7Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if shards < 1:
            raise ValueError("shards must be at least 1")
        if isinstance(redis, str):
            self.redis: RedisClient = connect(redis)
            self._owns_client = True
        else:
            self.redis = redis
            self._owns_client = False
        self.stream = stream
        self.shards = shards
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self.source = source
        self.batch_size = batch_size
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._ids = ids or _default_generator
        self._queue: list[tuple[str, Fields]] = []  # (the shard's key, the entry)
        self._lock = asyncio.Lock()
        self.sent = 0
        """Entries XADDed so far (a retried batch counts once)."""
        self.retries = 0
        """Batches sent again after a connection or timeout error."""
        self.last_stream_id: str | None = None

    # -- routing

    def key_for(self, subject: str) -> str:
        """The stream key an event billed to ``subject`` goes to (its shard's)."""
        return shard_key(self.stream, shard_of(subject, self.shards), self.shards)

    def key_of(self, value: RawEntry) -> str:
        """The stream key a raw entry goes to: its ``event``'s subject's shard; an entry
        without a readable subject (it will be dead-lettered) goes to shard 0."""
        if self.shards == 1:
            return self.stream
        raw = value if isinstance(value, bytes | str) else _event_value(value)
        subject = None
        try:
            event = json.loads(raw) if raw is not None else None
            subject = event.get("subject") if isinstance(event, dict) else None
        except ValueError:
            pass
        return (
            self.key_for(subject)
            if isinstance(subject, str)
            else shard_key(self.stream, 0, self.shards)
        )

    # -- lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.flush()
        finally:
            await self.aclose(flush=False)

    async def aclose(self, *, flush: bool = True) -> None:
        """Flush (by default) and close the client if the producer made it."""
        try:
            if flush:
                await self.flush()
        finally:
            if self._owns_client:
                await self.redis.aclose()

    @property
    def pending(self) -> int:
        """Entries queued and not yet sent."""
        return len(self._queue)

    # -- one method per event type

    async def api_request(
        self,
        org: str,
        *,
        oauth_client_id: str,
        method: str,
        template_uri: str,
        status: int,
        client_kind: str,
        count: int = 1,
        time: datetime | str | None = None,
        source: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue an ``api.request`` event; returns its event id."""
        data: dict[str, Any] = {
            "oauth_client_id": oauth_client_id,
            "method": method,
            "template_uri": template_uri,
            "status": status,
            "client_kind": client_kind,
            "count": count,
        }
        return await self._queue_event("api.request", org, data, time, source, id)

    async def ai_usage(
        self,
        org: str,
        *,
        feature: str,
        quantity: Decimal | int | str,
        unit: str,
        user_id: str | None = None,
        time: datetime | str | None = None,
        source: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue an ``ai.usage`` event (``quantity`` in the feature's ``unit``)."""
        data: dict[str, Any] = {"feature": feature, "quantity": quantity, "unit": unit}
        if user_id is not None:
            data["user_id"] = user_id
        return await self._queue_event("ai.usage", org, data, time, source, id)

    async def license_usage(
        self,
        org: str,
        *,
        license: str,
        model: str,
        users: int | None = None,
        hours: Decimal | int | str | None = None,
        time: datetime | str | None = None,
        source: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue a ``license.usage`` event: ``users`` (named, concurrent) or ``hours``."""
        data: dict[str, Any] = {"license": license, "model": model}
        if users is not None:
            data["users"] = users
        if hours is not None:
            data["hours"] = hours
        return await self._queue_event("license.usage", org, data, time, source, id)

    async def void(
        self,
        org: str,
        event_id: str,
        *,
        reason: str,
        time: datetime | str | None = None,
        source: str | None = None,
        id: str | None = None,
    ) -> str:
        """Queue a ``tally.void``: take back the metered event ``event_id`` of this
        producer's source (amend = void + a new event under a new id)."""
        own = self.source if source is None else source
        data = {"source": own, "id": event_id, "reason": reason}
        return await self._queue_event("tally.void", org, data, time, source, id)

    async def _queue_event(
        self,
        kind: str,
        org: str,
        data: dict[str, Any],
        time: datetime | str | None,
        source: str | None,
        id: str | None,
    ) -> str:
        event_id = id if id is not None else self._ids.next()
        if time is None:
            stamp = rfc3339(datetime.now(UTC))
        elif isinstance(time, datetime):
            stamp = rfc3339(time)
        else:
            stamp = time
        body: dict[str, Any] = {
            "specversion": "1.0",
            "id": event_id,
            "source": self.source if source is None else source,
            "type": kind,
            "time": stamp,
            "subject": org,
            "data": data,
        }
        for name in _DECIMAL_FIELDS.intersection(data):
            if isinstance(data[name], float):
                raise TypeError(
                    f"{name} must be a Decimal, int or str, not float (floats are inexact): "
                    f"use Decimal({str(data[name])!r})"
                )
        validated = validate_event(body)  # raises InvalidEvent: nothing is queued
        for name in _DECIMAL_FIELDS.intersection(data):
            # ints stay JSON numbers; anything else becomes the exact decimal as a string
            if not isinstance(data[name], int) or isinstance(data[name], bool):
                data[name] = format(getattr(validated.data, name), "f")
        self._queue.append((self.key_for(org), {EVENT_FIELD: _encode(body)}))
        if len(self._queue) >= self.batch_size:
            await self.flush()
        return event_id

    # -- sending

    async def flush(self) -> list[str]:
        """Send everything queued; returns the stream ids in queue order."""
        published: list[str] = []
        async with self._lock:
            while self._queue:
                batch = self._queue[: self.batch_size]
                published += await self._send(batch)
                del self._queue[: len(batch)]
        return published

    async def publish_raw(self, values: Sequence[RawEntry]) -> list[str]:
        """XADD entries as given, unvalidated, after anything already queued.

        A ``bytes``/``str`` value becomes the ``event`` field; a mapping is the whole
        entry (so a tool can send an entry without the ``event`` field). Returns the
        stream ids of ``values``, in order. Same batching and retries as :meth:`flush`.
        """
        return [stream_id for _, stream_id in await self.publish_routed(values)]

    async def publish_routed(self, values: Sequence[RawEntry]) -> list[tuple[str, str]]:
        """:meth:`publish_raw`, returning each value's stream key (its shard) with its
        stream id: the routing is read once, by the send."""
        entries = [
            (self.key_of(value), {EVENT_FIELD: value} if isinstance(value, bytes | str) else value)
            for value in values
        ]
        await self.flush()
        published: list[str] = []
        async with self._lock:
            for start in range(0, len(entries), self.batch_size):
                published += await self._send(entries[start : start + self.batch_size])
        return [(key, stream_id) for (key, _), stream_id in zip(entries, published, strict=True)]

    async def publish_all(
        self, values: Iterable[RawEntry], progress: Callable[[int], object] | None = None
    ) -> list[str]:
        """``publish_raw`` for a long iterable: the next batch is built while Redis takes one.

        ``progress`` is called with the count sent so far after each batch.
        """
        published: list[str] = []
        sending: asyncio.Task[list[str]] | None = None
        chunk: list[RawEntry] = []
        for value in values:
            chunk.append(value)
            if len(chunk) < self.batch_size:
                continue
            if sending is not None:
                published += await sending
                if progress:
                    progress(len(published))
            sending = asyncio.create_task(self.publish_raw(chunk))
            await asyncio.sleep(0)
            chunk = []
        if sending is not None:
            published += await sending
        if chunk:
            published += await self.publish_raw(chunk)
        if progress:
            progress(len(published))
        return published

    async def _send(self, batch: Sequence[tuple[str, Fields]]) -> list[str]:
        """One round: a pipeline per shard; the stream ids in ``batch``'s order.

        A failure leaves the whole round to be sent again: shards already written get
        duplicates, which the consumer counts once.
        """
        positions: dict[str, list[int]] = {}
        for position, (key, _) in enumerate(batch):
            positions.setdefault(key, []).append(position)
        ids = [""] * len(batch)
        for key, where in positions.items():
            sent = await self._send_shard(key, [batch[position][1] for position in where])
            for position, stream_id in zip(where, sent, strict=True):
                ids[position] = stream_id
        self.sent += len(ids)
        if ids:
            self.last_stream_id = ids[-1]
        return ids

    async def _send_shard(self, key: str, entries: Sequence[Fields]) -> list[str]:
        """Pipelined XADDs to one key, retried on connection and failover errors with the
        same bytes."""
        attempt = 0
        while True:
            try:
                return await self._xadd_and_wait(key, entries)
            except Exception as exc:
                if not _retryable(exc) or attempt >= self.max_retries:
                    raise
                attempt += 1
                self.retries += 1
                delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    async def _xadd_and_wait(self, key: str, entries: Sequence[Fields]) -> list[str]:
        """XADD ``entries`` in one pipeline, then ``WAIT`` on the same connection (WAIT
        counts the replicas that have this connection's writes) when a replica is wanted."""
        pipe = self.redis.pipeline(transaction=False)
        for fields in entries:
            entry: dict[FieldT, EncodableT] = dict(fields.items())
            pipe.xadd(key, entry)
        replicas, master = await self._replicas_wanted(key)
        if replicas:
            where = {} if master is None else {"target_nodes": master}
            pipe.execute_command("WAIT", replicas, self.wait_timeout_ms, **where)
        replies = await pipe.execute()
        if replicas:
            took = int(replies.pop())
            if took < replicas:
                raise NotReplicated(
                    f"{took} of {replicas} replica(s) took the batch for {key!r} within "
                    f"{self.wait_timeout_ms} ms"
                )
            if master is not None and (await self._replicas_wanted(key))[1] != master:
                raise NotReplicated(f"{key!r} moved to another master while it was written")
        return [r.decode() if isinstance(r, bytes) else str(r) for r in replies]

    async def _replicas_wanted(self, key: str) -> tuple[int, Any]:
        """How many replicas to WAIT for after writing ``key``, and (on a cluster) the
        master that holds its slot now."""
        if not isinstance(self.redis, RedisCluster):
            return self.wait_replicas or 0, None
        await self.redis.initialize()  # after a failover: the cluster's new layout
        master = self.redis.get_node_from_key(key)
        if self.wait_replicas is not None:
            return self.wait_replicas, master
        holders = self.redis.nodes_manager.slots_cache.get(self.redis.keyslot(key), [])
        return (1 if len(holders) > 1 else 0), master
