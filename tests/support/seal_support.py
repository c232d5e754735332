"""The README's proof checker, run as a customer would: the first Python block of its
section "The month seal", in a fresh interpreter, the proof's JSON on standard input."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_script() -> str:
    """The first Python block of the README's section "The month seal", as printed."""
    section = README.read_text().split("\n## The month seal\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def check(script: Path, proof: str, *root: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        *root,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate(proof.encode())
    assert process.returncode is not None
    return process.returncode, out.decode()
