"""`tally serve` for real: a uvicorn subprocess on a free port, on a test's ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from support.cli import CLI, env_for, tally
from tally.adapters import embedded
from tally.config import Settings


@pytest.fixture
async def served(settings: Settings) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """A migrated ledger and `tally serve` on a free port: its base URL and process."""
    assert (await tally(settings, "migrate")).code == 0
    port = embedded.free_port()
    server = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--port",
        str(port),
        env=env_for(settings),
        cwd=settings.data_dir,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base) as client:
            for _ in range(600):  # until it listens (start-up time is not under test)
                try:
                    if (await client.get("/v1/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert server.returncode is None, "tally serve exited"
                await asyncio.sleep(0.1)
        yield base, server
    finally:
        if server.returncode is None:
            server.terminate()
            await server.wait()
