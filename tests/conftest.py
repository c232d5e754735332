"""Registers the shared fixtures of ``tests/support`` for every tier.

Server fixtures (``pg_admin_url``, ``redis_url``, ``database_url``, ...) are lazy: a server is
found or started only when an integration or e2e test asks for one, so ``tests/unit`` runs
with no PostgreSQL or Redis at all.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

pytest_plugins = [
    "support.servers",
    "support.ledger_support",
    "support.serving",
    "support.browser",
]


# Compiled bytecode for every Python subprocess of the tests (the CLI, the crash drivers,
# `tally serve`), outside the source tree: with PYTHONDONTWRITEBYTECODE set, each start
# would compile every module again (~4 s of CPU, not ~1.5 s).
PYCACHE = Path(tempfile.gettempdir()) / f"tally-test-pycache-{os.getuid()}"


def pytest_configure(config: pytest.Config) -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    config.addinivalue_line(
        "markers", "embedded: starts its own embedded PostgreSQL and Redis (a few seconds)"
    )
