"""Running the ``tally`` CLI as a subprocess on a test's servers and stream (e2e tests)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis.asyncio as aioredis

from support.ledger_support import urls_of
from tally.config import Settings

CLI = (sys.executable, "-m", "tally.entrypoints.cli")


@dataclass(frozen=True)
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def said(self) -> str:
        """stdout and stderr as one line (Rich wraps long messages at the terminal width)."""
        return " ".join((self.stdout + " " + self.stderr).split())

    def json(self) -> Any:
        assert self.code == 0, self
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return f"tally {' '.join(self.args)} → {self.code}\n{self.stdout}\n{self.stderr[-3000:]}"


def env_for(settings: Settings) -> dict[str, str]:
    """This test's servers and stream; no other ``TALLY_*`` setting leaks in."""
    urls = urls_of(settings)
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    return inherited | {
        "TALLY_DATABASE_URL": urls.database,
        "TALLY_REDIS_URL": urls.redis,
        "TALLY_STREAM": settings.stream,
        "TALLY_STREAM_SHARDS": str(settings.stream_shards),
        "TALLY_ALERTS_STREAM": settings.alerts_stream,
        "TALLY_DATA_DIR": str(settings.data_dir),
        "TALLY_CONSUMER_NAME": "cli-test",
        "TALLY_BATCH_SIZE": str(settings.batch_size),
        "TALLY_BLOCK_MS": str(settings.block_ms),
        "TALLY_CLAIM_IDLE_MS": str(settings.claim_idle_ms),
        "TALLY_SELLER_NAME": settings.seller_name,
        "TALLY_SELLER_ADDRESS": settings.seller_address,
        "TALLY_SELLER_TAX_ID": settings.seller_tax_id,
        "TALLY_SELLER_EMAIL": settings.seller_email,
    }


async def tally(settings: Settings, *args: str, env: dict[str, str] | None = None) -> Run:
    """``tally ARGS`` on this test's servers; ``env`` replaces the inherited environment
    (``env_for(settings)`` by default)."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        env=env_for(settings) if env is None else env,
        cwd=settings.data_dir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=180)
    assert process.returncode is not None
    return Run(args, process.returncode, stdout.decode(), stderr.decode())


async def tally_all(settings: Settings, *commands: list[str]) -> list[Run]:
    """Independent commands, side by side."""
    return list(await asyncio.gather(*(tally(settings, *command) for command in commands)))


def redis_cli_target(url: str) -> list[str]:
    """``redis-cli`` arguments for a ``redis://`` or ``unix://`` URL."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        db = parse_qs(parts.query).get("db", ["0"])[0]
        return ["-s", unquote(parts.path), "-n", db]
    return ["-u", url]


async def xadd_like_an_integration(settings: Settings, value: bytes) -> str:
    """``XADD <stream> * event <json>`` with plain ``redis-cli`` (redis-py if it is missing)."""
    url = urls_of(settings).redis
    if shutil.which("redis-cli") is None:
        client = aioredis.from_url(url)
        try:
            return (await client.xadd(settings.stream, {b"event": value})).decode()
        finally:
            await client.aclose()
    process = await asyncio.create_subprocess_exec(
        "redis-cli",
        *redis_cli_target(url),
        "XADD",
        settings.stream,
        "*",
        "event",
        value.decode(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    stream_id = stdout.decode().strip()
    assert stream_id.count("-") == 1, stdout.decode()  # not an "(error) …"
    return stream_id
