"""A built wheel migrates on its own: the migrations travel inside it as ``tally/migrations``.

The wheel is built with ``uv build`` and unpacked into a temporary folder that comes first
on ``PYTHONPATH`` (its dependencies are this environment's), far from the source checkout,
so ``tally`` and its migrations are the wheel's and nothing else's.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import asyncpg
import pytest

REPO = Path(__file__).resolve().parents[2]

MIGRATE = """
import asyncio, sys
from tally.adapters.postgres import schema
assert schema.MIGRATIONS.is_relative_to(sys.argv[2]), schema.MIGRATIONS
asyncio.run(schema.upgrade(sys.argv[1]))
print(schema.MIGRATIONS)
"""


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv builds the wheel")
async def test_a_built_wheel_migrates_a_scratch_database(database_url: str, tmp_path: Path) -> None:
    built = subprocess.run(
        ["uv", "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(REPO)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("tally-*.whl")
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(unpacked)
    assert "tally/migrations/env.py" in names
    # the developer tools stay in the checkout: the product's wheel has none of them
    assert not [name for name in names if name.startswith(("tally_tools/", "tally/tools/"))]
    assert any(name.startswith("tally/migrations/versions/0001_") for name in names)
    run = subprocess.run(
        [sys.executable, "-c", MIGRATE, database_url, str(unpacked)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(unpacked)},
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert Path(run.stdout.strip()) == unpacked / "tally" / "migrations"
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        head = await conn.fetchval("SELECT version_num FROM alembic_version")
    finally:
        await conn.close()
    versions = sorted(p.name for p in (REPO / "migrations" / "versions").glob("0*.py"))
    assert head == versions[-1].split("_")[0]
