"""Run the real consumer and SIGKILL it at a chosen point (used by test_crashes.py).

    python crash_consumer.py POINT N

POINT: ``before_commit`` (the batch is rated, no transaction yet), ``mid_batch`` (inside
the transaction, entries posted, events not yet written), ``after_commit`` (committed,
not yet XACKed; ``after_commit_cluster`` on a Redis Cluster). N: the call at which to die.
Settings come from the environment.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from tally import bootstrap
from tally.adapters.postgres import metering_store
from tally.bootstrap import service_urls
from tally.config import Settings
from tally.service_layer.metering import MeteringService


def die_on_call(owner: Any, name: str, nth: int, after: bool = False) -> None:
    """SIGKILL this process at the ``nth`` call of ``owner.name`` (before it, or after it
    returned when ``after``)."""
    original: Callable[..., Any] = getattr(owner, name)
    calls = {"n": 0}

    @functools.wraps(original)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == nth and not after:
            os.kill(os.getpid(), signal.SIGKILL)
        result = await original(*args, **kwargs)
        if calls["n"] == nth:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


POINTS = {
    "before_commit": (MeteringService, "commit"),
    "mid_batch": (metering_store, "write_events"),
    "after_commit": (aioredis.Redis, "xack"),
    "after_commit_cluster": (RedisCluster, "xack"),
}


def main() -> None:
    point, nth = sys.argv[1], int(sys.argv[2])
    owner, name = POINTS[point]
    die_on_call(owner, name, nth)
    settings = Settings()
    asyncio.run(bootstrap.consumer(settings, service_urls(settings), until_idle=True).run())


if __name__ == "__main__":
    main()
