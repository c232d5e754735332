"""Private servers for fault tests: ``tally.tools.private_servers``, skipped when missing.

Fault tests restart, kill and stop servers; they never touch the shared ones. The servers
themselves (free loopback ports, AOF ``always``, a cluster run as ``postgres`` when root)
live in the tool that ``tally chaos`` uses too; here a missing binary is a skip.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tally.tools import private_servers
from tally.tools.private_servers import PrivatePostgres, PrivateRedis, ServerUnavailable

__all__ = ["PrivatePostgres", "PrivateRedis", "private_postgres", "private_redis"]


@contextlib.contextmanager
def _skipped_when_unavailable() -> Iterator[None]:
    try:
        yield
    except ServerUnavailable as exc:
        pytest.skip(str(exc))


@contextlib.contextmanager
def private_redis() -> Iterator[PrivateRedis]:
    with _skipped_when_unavailable(), private_servers.private_redis() as server:
        yield server


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    with _skipped_when_unavailable(), private_servers.private_postgres() as server:
        yield server
