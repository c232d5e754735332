"""The event stream (Redis Streams) as the consumer and the stream's health see it, and the
records PostgreSQL keeps of it (trims, incidents, deliveries)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.redis_client import RedisClient
from tally.domain.rating import StreamEntry


class UnsupportedServer(RuntimeError):
    """The server keeps no stream counters (Redis before 7): entries removed before they were
    read would go unnoticed, so the consumer refuses to start."""


@dataclass(frozen=True)
class Read:
    """A bounded read: the entries, and how many entries its check found removed unread."""

    entries: list[StreamEntry]
    lost: int = 0


@dataclass(frozen=True)
class Claim:
    next_start: str
    claimed: list[str]  # now pending on this consumer; read them with ``fetch``
    deleted: list[str]  # pending entries that no longer exist (Redis 7 removed them)


@dataclass(frozen=True)
class GroupStatus:
    name: str
    last_delivered_id: str
    pending: int
    oldest_pending_id: str | None
    entries_read: int | None
    lag: int | None


@dataclass(frozen=True)
class StreamStatus:
    length: int
    last_generated_id: str
    entries_added: int | None
    first_entry_id: str | None
    groups: list[GroupStatus]

    def group(self, name: str) -> GroupStatus:
        for group in self.groups:
            if group.name == name:
                return group
        raise LookupError(f"no consumer group {name!r} on the stream: run `tally migrate`")


class Reader(Protocol):
    """One consumer's view of one stream and group, with batches bounded by bytes."""

    stream: str

    async def read_new(self, now_ms: int) -> Read: ...

    async def wait_for_new(self, block_ms: int) -> None: ...

    async def fetch(self, ids: Sequence[str]) -> list[StreamEntry]: ...

    async def own_pending(self, after: str, count: int) -> list[str]: ...

    async def claim_idle(self, min_idle_ms: int, start: str, count: int) -> Claim: ...

    async def ack(self, ids: Sequence[str]) -> None: ...


class Streams(Protocol):
    """Connecting, the consumer group, a reader, the stream's status, trimming, incidents."""

    @property
    def NO_CEILING(self) -> str: ...

    def connect(self, url: str) -> RedisClient: ...

    def StreamReader(
        self,
        client: RedisClient,
        stream: str,
        group: str,
        consumer: str,
        batch_size: int,
        batch_max_bytes: int,
        max_entry_bytes: int,
    ) -> Reader: ...

    async def ensure_group(self, client: RedisClient, stream: str, group: str) -> bool: ...

    async def require_counters(self, client: RedisClient, stream: str) -> None: ...

    async def stream_status(self, client: RedisClient, stream: str) -> StreamStatus: ...

    def drained(self, status: StreamStatus, group: str) -> bool: ...

    async def incidents(self, client: RedisClient, stream: str) -> list[dict[str, str]]: ...

    async def trim_bound(self, client: RedisClient, stream: str, ceiling: str = ...) -> str: ...

    async def trim(self, client: RedisClient, stream: str, ceiling: str) -> tuple[str, int]: ...

    async def nth_newest_id(self, client: RedisClient, stream: str, n: int) -> str | None: ...

    async def newest_before(
        self, client: RedisClient, stream: str, bound: str
    ) -> StreamEntry | None: ...


class StreamRecords(Protocol):
    """What PostgreSQL records of the stream: deliveries, trims, incidents."""

    async def delivery_recorded(
        self, engine: AsyncEngine, stream: str, stream_id: str, key: tuple[str, str] | None
    ) -> bool: ...

    async def record_trim(
        self, engine: AsyncEngine, stream: str, min_id: str, removed: int
    ) -> None: ...

    async def record_incidents(
        self, engine: AsyncEngine, stream: str, logged: Sequence[dict[str, str]]
    ) -> int: ...

    async def stream_summary(self, engine: AsyncEngine, stream: str) -> dict[str, Any]: ...

    async def dead_letter_counts(self, engine: AsyncEngine) -> list[tuple[str, str, int]]: ...
