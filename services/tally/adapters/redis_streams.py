"""Redis Streams plumbing the consumer needs beyond FastStream: the group, claims, lag."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

RawEntry = tuple[str, dict[bytes, bytes]]


def connect(url: str) -> aioredis.Redis:
    return aioredis.from_url(url, decode_responses=False)


async def ensure_group(client: aioredis.Redis, stream: str, group: str) -> bool:
    """Create the group from id 0 (never ``$``: that skips what is already there).

    Returns False when it already existed; safe to call concurrently.
    """
    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


def _decode(entries: Any) -> list[RawEntry]:
    """Entry ids as text; an entry deleted from the stream while pending has no fields."""
    return [(sid.decode(), fields or {}) for sid, fields in entries or []]


async def read_own_pending(
    client: aioredis.Redis, stream: str, group: str, consumer: str, count: int, after: str = "0"
) -> list[RawEntry]:
    """What this consumer name was given but never acked (a previous run's crash), after
    the id ``after``: a caller pages with the last id it got, so each entry is read once."""
    reply: Any = await client.xreadgroup(group, consumer, {stream: after}, count=count)
    return _decode(reply[0][1]) if reply else []


async def claim_idle(
    client: aioredis.Redis,
    stream: str,
    group: str,
    consumer: str,
    min_idle_ms: int,
    count: int,
) -> list[RawEntry]:
    """Take over entries other consumers left pending for ``min_idle_ms`` (dead consumers).

    An entry deleted from the stream while pending comes back with no fields, so that the
    caller can acknowledge it. (Redis 7 drops such entries from the pending list itself;
    Redis 6.2 claims them without their ids, which only this consumer's own pending list
    then shows.)
    """
    claimed: list[RawEntry] = []
    start = "0-0"
    lost_ids = False
    while len(claimed) < count:
        reply: Any = await client.xautoclaim(
            stream, group, consumer, min_idle_ms, start_id=start, count=count - len(claimed)
        )
        start = reply[0].decode() if isinstance(reply[0], bytes) else reply[0]
        lost_ids = lost_ids or any(sid is None for sid, _ in reply[1])
        claimed.extend(_decode([entry for entry in reply[1] if entry[0] is not None]))
        if start == "0-0":
            break
    if lost_ids:
        claimed.extend(await _own_deleted(client, stream, group, consumer, count))
    return claimed


async def _own_deleted(
    client: aioredis.Redis, stream: str, group: str, consumer: str, count: int
) -> list[RawEntry]:
    deleted: list[RawEntry] = []
    after = "0"
    while page := await read_own_pending(client, stream, group, consumer, count, after):
        deleted.extend(entry for entry in page if not entry[1])
        after = page[-1][0]
    return deleted


@dataclass(frozen=True)
class Backlog:
    lag: int  # entries never delivered to the group
    pending: int  # delivered, not acked

    @property
    def drained(self) -> bool:
        return self.lag == 0 and self.pending == 0


async def backlog(client: aioredis.Redis, stream: str, group: str) -> Backlog:
    for info in await client.xinfo_groups(stream):
        name = info["name"].decode() if isinstance(info["name"], bytes) else info["name"]
        if name == group:
            lag = info.get("lag")
            if lag is None:  # Redis < 7 or an unknown lag: count what is after the last id
                last = info["last-delivered-id"]
                after: Any = await client.xrange(stream, min=f"({last.decode()}", count=1)
                lag = len(after)
            return Backlog(int(lag), int(info["pending"]))
    raise LookupError(f"no consumer group {group!r} on stream {stream!r}: run `tally migrate`")
