"""The fixtures give real, isolated servers; the embedded servers start, persist and stop."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis
import redis.asyncio as aioredis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tally.adapters.postgres.databases import dsn
from tally.config import Settings

_seen: dict[str, str] = {}


async def _databases(admin_url: str) -> set[str]:
    conn = await asyncpg.connect(dsn(admin_url))
    try:
        return {row["datname"] for row in await conn.fetch("SELECT datname FROM pg_database")}
    finally:
        await conn.close()


@pytest.mark.parametrize("round_", [1, 2])
async def test_each_test_gets_a_fresh_database(
    round_: int, database_url: str, pg_admin_url: str
) -> None:
    assert database_url.startswith("postgresql+asyncpg://")
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            name = (await conn.execute(text("SELECT current_database()"))).scalar_one()
            tables = (
                await conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                )
            ).scalar_one()
            assert tables == 0  # round 2 must not see round 1's table
            await conn.execute(text("CREATE TABLE probe (n numeric NOT NULL)"))
            await conn.execute(text("INSERT INTO probe VALUES (1.10)"))
    finally:
        await engine.dispose()
    assert name.startswith("tally_t_")
    _seen[f"db{round_}"] = name
    if round_ == 2 and "db1" in _seen:
        existing = await _databases(pg_admin_url)
        assert _seen["db1"] not in existing  # dropped after its test
        assert name in existing


@pytest.mark.parametrize("round_", [1, 2])
async def test_each_test_gets_its_own_stream(round_: int, redis_url: str, stream_key: str) -> None:
    assert stream_key.startswith("tally:test:")
    client = aioredis.from_url(redis_url)
    try:
        assert await client.exists(stream_key) == 0
        entry = await client.xadd(stream_key, {"event": b"{}"})
        await client.xgroup_create(stream_key, "metering", id="0")
        read: Any = await client.xreadgroup("metering", "c1", {stream_key: ">"}, count=10)
        assert read[0][1][0][0] == entry
        assert await client.xack(stream_key, "metering", entry) == 1
        _seen[f"stream{round_}"] = stream_key
        if round_ == 2 and "stream1" in _seen:
            assert await client.exists(_seen["stream1"]) == 0  # deleted after its test
    finally:
        await client.aclose()


async def test_settings_point_at_the_test_servers(settings: Settings, tmp_path: Path) -> None:
    assert settings.data_dir == tmp_path
    assert (settings.batch_size, settings.block_ms, settings.claim_idle_ms) == (500, 50, 500)
    assert settings.database_url is not None and settings.redis_url is not None
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()
    client = aioredis.from_url(settings.redis_url)
    try:
        assert await client.ping()
    finally:
        await client.aclose()


_START = """
import json, sys, time
from pathlib import Path
from typing import Any
from tally.adapters.embedded import ensure_servers
started = time.monotonic()
urls = ensure_servers(Path(sys.argv[1]))
print(json.dumps({"urls": urls, "seconds": time.monotonic() - started}))
"""


async def _pg_answers(database_url: str) -> str | None:
    try:
        conn = await asyncpg.connect(dsn(database_url), timeout=5)
    except (OSError, asyncpg.PostgresError):
        return None
    try:
        return str(await conn.fetchval("SELECT current_database()"))
    finally:
        await conn.close()


def _redis_answers(redis_url: str) -> bool:
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False
    finally:
        client.close()


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "pg" / "postmaster.pid").read_text().split("\n", 1)[0])


@pytest.mark.embedded
async def test_embedded_servers_start_outlive_their_process_are_reused_and_stop() -> None:
    with tempfile.TemporaryDirectory(prefix="tally-test-", ignore_cleanup_errors=True) as workdir:
        await _embedded_lifecycle(Path(workdir))


async def _embedded_lifecycle(workdir: Path) -> None:
    from tally.adapters.embedded import ensure_servers, stop_servers

    # not under pytest's basetemp: see support.servers.embedded_data_dir
    data_dir = workdir / ".tally"
    try:
        # Two processes race to start the servers in the same (relative) directory.
        racers = [
            subprocess.Popen(
                [sys.executable, "-c", _START, ".tally"],
                cwd=workdir,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        results = []
        for racer in racers:
            out, err = racer.communicate(timeout=180)  # a daemon holding stdout would hang here
            assert racer.returncode == 0, err
            results.append(json.loads(out))  # stdout carries nothing but our JSON
        database_url, redis_url = results[0]["urls"]
        assert results[1]["urls"] == [database_url, redis_url]
        assert database_url.startswith("postgresql+asyncpg://")
        assert redis_url.startswith(("unix://", "redis://"))

        # Both processes have exited; the servers still run, and this process reuses them.
        pid = _postmaster_pid(data_dir)
        assert await _pg_answers(database_url) == "tally"
        assert _redis_answers(redis_url)
        assert ensure_servers(data_dir) == (database_url, redis_url)
        assert _postmaster_pid(data_dir) == pid

        stopped = stop_servers(data_dir)
        assert [line.split(" (")[0] for line in stopped] == [
            "stopped PostgreSQL",
            "stopped Redis",
        ]
        assert await _pg_answers(database_url) is None
        assert not _redis_answers(redis_url)
        assert stop_servers(data_dir) == []
    finally:
        stop_servers(data_dir)
