"""A customer's statement in tests: exported to a file as `tally statement export` writes
it, the docs' standalone checker (the Python block of docs/content/integrate/statements.md)
run on it in a fresh interpreter, and one-line forgeries."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.statement import statement_lines
from tally.entrypoints.plain import json_line

PAGE = Path(__file__).resolve().parents[2] / "docs" / "content" / "integrate" / "statements.md"


def docs_script() -> str:
    """The page's Python block, as printed."""
    return PAGE.read_text().split("```python\n", 1)[1].split("```", 1)[0]


async def export(engine: AsyncEngine, org: str, period: str, out: Path) -> list[dict[str, Any]]:
    """The statement written to ``out``; its lines, read back."""
    async with raw_connection(engine) as conn:
        out.write_text(
            "".join([json_line(line) async for line in statement_lines(conn, org, period)])
        )
    return [json.loads(text) for text in out.read_text().splitlines()]


def forged(
    lines: list[dict[str, Any]], out: Path, change: Callable[[list[dict[str, Any]]], None]
) -> Path:
    """A copy of the statement with ``change`` made to its lines."""
    copy = json.loads(json.dumps(lines))
    change(copy)
    out.write_text("".join(json.dumps(line) + "\n" for line in copy))
    return out


async def run_script(script: Path, *args: Path) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *map(str, args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode()
