"""``tally chaos`` as a user runs it: a real ``tally consume`` SIGKILLed at random moments
(and Redis and PostgreSQL restarted) on private servers; every entry sent is recorded once.

The short versions of the kill matrix; the long one's figures are in the docs
(operate/crashes.md).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from tally_tools.private_servers import postgres_bindir, redis_server_binary

needs_servers = pytest.mark.skipif(
    redis_server_binary() is None or postgres_bindir() is None,
    reason="tally chaos needs redis-server and PostgreSQL's initdb/pg_ctl",
)


async def run_chaos(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tally.entrypoints.cli",
        "chaos",
        "--json",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=240)
    assert process.returncode is not None
    return process.returncode, stdout, stderr


async def chaos(*args: str) -> dict[str, Any]:
    code, stdout, stderr = await run_chaos(*args)
    assert stdout, stderr.decode()[-3000:]
    result: dict[str, Any] = json.loads(stdout)
    assert code == 0, result
    return result


def assert_exact(result: dict[str, Any]) -> None:
    assert result["ok"] and result["lost"] == 0 and result["doubled"] == 0
    assert result["metered"] == result["valid_events"] > 0
    assert result["duplicates_recorded"] == result["duplicates"] > 0
    assert result["dead_lettered"] == result["bad"] > 0
    assert not result["totals_wrong"] and not result["verify_findings"]


@needs_servers
async def test_sigkill_at_random_moments_loses_and_doubles_nothing() -> None:
    result = await chaos("--kills", "6", "--events", "3000", "--batch-size", "50", "--seed", "5")
    assert_exact(result)
    assert result["kills"] == 6 and result["kills_mid_work"] > 0


@needs_servers
async def test_redis_and_postgres_restarted_among_the_kills_lose_nothing() -> None:
    result = await chaos("--kills", "2", "--events", "1500", "--restart-servers", "--seed", "2")
    assert_exact(result)
    assert result["kills"] == 2
    assert {kind.split()[0] for kind in result["restarts"]} == {"redis", "postgres"}
