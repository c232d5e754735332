"""The documented proof checker, run as a customer would: the first Python block of the
page "The month seal" (docs/content/concepts/seal.md), in a fresh interpreter, the proof's
JSON on standard input."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

SEAL_PAGE = Path(__file__).resolve().parents[2] / "docs" / "content" / "concepts" / "seal.md"


def readme_script() -> str:
    """The first Python block of the page "The month seal", as printed."""
    return SEAL_PAGE.read_text().split("```python\n", 1)[1].split("```", 1)[0]


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


def signature_snippet() -> str:
    """The page's second Python block: checking an invoice's seal signature, given the
    invoice's JSON as ``invoice`` and its key from tally-seal-keys.json as ``key``."""
    return SEAL_PAGE.read_text().split("```python\n", 2)[2].split("```", 1)[0]
