"""The README's curl examples of HTTP ingest, run as written against a real `tally serve`:
each mode's event is metered."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from pathlib import Path

from support.cli import tally
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_curl_block() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(), re.DOTALL)
    [block] = [b for b in blocks if "/v1/events" in b]
    return block


async def test_the_readmes_curl_examples_are_metered(
    served: tuple[str, asyncio.subprocess.Process], settings: Settings
) -> None:
    assert shutil.which("curl"), "this test runs the README's curl examples: install curl"
    base, _ = served
    assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
    assert (await tally(settings, "source", "add", "crm-sync", "--orgs", "acme")).code == 0
    created = await tally(
        settings, "apikey", "create", "--role", "producer", "--source", "crm-sync"
    )
    assert created.code == 0, created
    key = created.stdout.strip().splitlines()[-1]
    process = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", readme_curl_block(),
        env=os.environ | {"TALLY_URL": base, "TALLY_KEY": key},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().count('"accepted":1') == 3, stdout.decode()

    assert (await tally(settings, "consume", "--until-idle")).code == 0
    engine = bootstrap.engine(settings.database_url or "")
    try:
        async with raw_connection(engine) as conn:
            rows = await conn.fetch("SELECT id, type, status FROM usage_event ORDER BY id")
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("http-1", "api.request", "metered"),
        ("http-2", "ai.usage", "metered"),
        ("http-3", "api.request", "metered"),
    ]
