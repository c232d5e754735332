"""The one place that decides what kind of Redis ``TALLY_REDIS_URL`` names.

A URL may name a standalone server or any node of a Redis Cluster: the server says which
(``HELLO``'s ``mode``; Tally's ACL users may run HELLO, not INFO), and the answer is a
``redis.asyncio.Redis`` or a ``redis.asyncio.cluster.RedisCluster``. Everything else is
handed the client. ``connect`` stays synchronous like redis-py's ``from_url``: the one probe
per URL and process is a blocking HELLO, remembered afterwards.

Also here: the errors a failover of a cluster's master produces (the connection lost, then
MOVED, ASK, CLUSTERDOWN, TRYAGAIN, READONLY, UNBLOCKED while the replica takes over), which
the consumer and the SDK retry rather than fail on.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ClusterError,
    ReadOnlyError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

RedisClient = aioredis.Redis | RedisCluster
"""What Tally's asynchronous code talks to: one server, or a cluster."""

FAILOVER_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,  # also TimeoutError
    ClusterError,  # CLUSTERDOWN, MASTERDOWN
    AskError,  # ASK and MOVED (a subclass) after redis-py's own redirections ran out
    TryAgainError,
    ReadOnlyError,  # a write reached a master just demoted to a replica
    SlotNotCoveredError,  # while the cluster's layout changes
)
"""Errors after which the same command, sent again a little later, succeeds."""


# Replies a node gives while a failover moves its slots, also when they come back inside a
# Lua script's error ("ERR Error running script …: READONLY …"), which redis-py does not
# turn into their own exception classes: UNBLOCKED (a blocked read on a master that became
# a replica), NOSCRIPT (a promoted replica never had the script; the next call loads it).
FAILOVER_REPLY = re.compile(
    r"\b(?:UNBLOCKED|READONLY|MOVED|ASK|CLUSTERDOWN|TRYAGAIN|LOADING|MASTERDOWN|NOSCRIPT)\b"
)


# redis-py's asyncio connection, which a cluster client's other task may close under a
# command while it reinitializes the nodes after a failover: the command then fails on the
# connection's missing writer or reader with an AttributeError raised there.
_CONNECTION_MODULE = os.path.join("redis", "asyncio", "connection.py")


def failover(exc: BaseException) -> bool:
    """A connection lost or a cluster's topology changing, not a mistake in the command."""
    if isinstance(exc, FAILOVER_ERRORS):
        return True
    if isinstance(exc, AttributeError):
        return _raised_in(exc, _CONNECTION_MODULE)
    return isinstance(exc, ResponseError) and FAILOVER_REPLY.search(str(exc)) is not None


def _raised_in(exc: BaseException, module: str) -> bool:
    """``exc`` was raised by code of ``module`` (its traceback's innermost frame)."""
    frame = exc.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    return frame is not None and frame.tb_frame.f_code.co_filename.endswith(module)


@lru_cache(maxsize=16)
def is_cluster(url: str) -> bool:
    """Whether ``url`` names a node of a Redis Cluster (asks the server once per process)."""
    with redis.Redis.from_url(url, socket_connect_timeout=10) as probe:
        hello: Any = probe.execute_command("HELLO")
    about = hello if isinstance(hello, dict) else dict(zip(hello[::2], hello[1::2], strict=True))
    mode = about.get(b"mode", about.get("mode", b""))
    return (mode.decode() if isinstance(mode, bytes) else str(mode)) == "cluster"


def connect(url: str) -> RedisClient:
    """An asynchronous client for ``url``: a cluster client when it names a cluster's node."""
    if is_cluster(url):
        return RedisCluster.from_url(url, decode_responses=False)
    return aioredis.from_url(url, decode_responses=False)


def has_hash_tag(key: str) -> bool:
    """Whether Redis Cluster hashes ``key`` by a ``{tag}`` rather than by the whole key."""
    start = key.find("{")
    end = key.find("}", start + 1)
    return start >= 0 and end > start + 1


def companion_key(client: RedisClient, key: str, suffix: str) -> str:
    """A key that a script may touch together with ``key`` (``<key>:<suffix>``).

    It shares ``key``'s slot: a sharded key's tag (``tally:usage:{3}:incidents``) comes along;
    a key without a tag on a cluster becomes the tag itself (``{tally:usage}:incidents``
    hashes like ``tally:usage``). On one server the name stays ``<key>:<suffix>``.
    """
    if isinstance(client, RedisCluster) and not has_hash_tag(key):
        return f"{{{key}}}:{suffix}"
    return f"{key}:{suffix}"
