"""Real PostgreSQL and Redis for the tests, never fakes.

Each server comes from, in order: ``TALLY_TEST_DATABASE_URL`` / ``TALLY_TEST_REDIS_URL``
(independently); testcontainers when a Docker engine answers; else the embedded servers
(``tally.adapters.embedded``) in a temporary directory, stopped when the session ends.

Fixtures are sync on purpose: database set-up runs on a private event loop in a worker
thread, so it never touches pytest-asyncio's session loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from sqlalchemy.engine import make_url

from tally import bootstrap
from tally.adapters.postgres import databases
from tally.adapters.postgres.connection import async_url
from tally.config import ServiceUrls, Settings

T = TypeVar("T")


# ---------------------------------------------------------------------------- helpers


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on a fresh loop in another thread."""
    with ThreadPoolExecutor(max_workers=1) as worker:
        return worker.submit(asyncio.run, coro).result()


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


# ---------------------------------------------------------------------------- servers


@pytest.fixture(scope="session")
def _docker() -> bool:
    return _docker_answers()


@contextlib.contextmanager
def embedded_data_dir() -> Iterator[Path]:
    """A temporary directory for embedded servers, outside pytest's basetemp.

    As root, PostgreSQL runs as the user ``pgserver``, which must traverse the path; every
    pytest session resets ``/tmp/pytest-of-root`` to 0700, breaking concurrent sessions.
    """
    data_dir = Path(tempfile.mkdtemp(prefix="tally-test-"))
    try:
        yield data_dir
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def _embedded() -> Iterator[tuple[str, str]]:
    """Embedded servers for this session: ``(database_url, redis_url)``."""
    from tally.adapters.embedded import ensure_servers, stop_servers

    with embedded_data_dir() as data_dir:
        try:
            yield ensure_servers(data_dir)
        finally:
            stop_servers(data_dir)


@pytest.fixture(scope="session")
def pg_admin_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """``postgresql+asyncpg://`` URL of a database where CREATE DATABASE may run."""
    if url := os.environ.get("TALLY_TEST_DATABASE_URL"):
        yield async_url(url)
    elif request.getfixturevalue("_docker"):
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # older testcontainers layout
            from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:15", driver=None) as container:
            yield async_url(container.get_connection_url())
    else:
        database_url, _ = request.getfixturevalue("_embedded")
        yield make_url(database_url).set(database="postgres").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def redis_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a Redis server, for ``redis.asyncio.from_url``; shared by the session."""
    if url := os.environ.get("TALLY_TEST_REDIS_URL"):
        yield url
    elif request.getfixturevalue("_docker"):
        try:
            from testcontainers.community.redis import RedisContainer
        except ImportError:  # older testcontainers layout
            from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7") as container:
            host = container.get_container_host_ip()
            yield f"redis://{host}:{container.get_exposed_port(6379)}/0"
    else:
        _, url = request.getfixturevalue("_embedded")
        yield url


# ---------------------------------------------------------------------------- per test


@pytest.fixture(scope="session")
def migrated_template(
    pg_admin_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The name of a database migrated once a session as ``tally migrate`` does (schema,
    grants, rate cards): the databases of the tests that ask for ``engine`` are copies of
    it, ~0.4 s each instead of ~1.5 s of migrating each one."""
    url = run_sync(databases.create_scratch(pg_admin_url, "tally_template"))
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        stream=f"tally:test:{secrets.token_hex(6)}",
        data_dir=tmp_path_factory.mktemp("template"),
    )
    try:
        run_sync(bootstrap.migrate(settings, ServiceUrls(url, redis_url, embedded=False)))
        yield str(make_url(url).database)
    finally:
        run_sync(databases.drop(url))
        client = redis.Redis.from_url(redis_url)
        try:
            client.delete(settings.stream)
        finally:
            client.close()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, pg_admin_url: str) -> Iterator[str]:
    """A fresh database for this test only (``postgresql+asyncpg://``): empty, or a copy of
    ``migrated_template`` when the test asks for ``engine`` (a migrated ledger)."""
    template = (
        request.getfixturevalue("migrated_template") if "engine" in request.fixturenames else None
    )
    url = run_sync(databases.create_scratch(pg_admin_url, "tally_t", template))
    try:
        yield url
    finally:
        run_sync(databases.drop(url))


@pytest.fixture
def stream_key(redis_url: str) -> Iterator[str]:
    """A stream key no other test uses; deleted (with its groups, its incidents and the
    alerts published beside it, ``settings.alerts_stream``) afterwards. Tests run side by
    side (pytest-xdist) on one Redis: no test may use a fixed key on a shared server."""
    key = f"tally:test:{secrets.token_hex(6)}"
    yield key
    client = redis.Redis.from_url(redis_url)
    try:
        client.delete(key, f"{key}:incidents", f"{key}:alerts")
    finally:
        client.close()


@pytest.fixture
def settings(database_url: str, redis_url: str, stream_key: str, tmp_path: Path) -> Settings:
    """Settings pointing at this test's database and streams (events and alerts), with quick
    consumer knobs."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        stream=stream_key,
        alerts_stream=f"{stream_key}:alerts",  # not the shared default, tally:alerts
        data_dir=tmp_path,
        batch_size=500,
        block_ms=50,
        claim_idle_ms=500,
    )
