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
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

pytest_plugins = [
    "support.servers",
    "support.ledger_support",
    "support.serving",
    "support.browser",
]


# Compiled bytecode for every Python subprocess of the tests (the CLI, the crash drivers,
# `tally serve`), outside the source tree: with PYTHONDONTWRITEBYTECODE set, each start
# would compile every module again (~4 s of CPU, not ~1.5 s). One directory for every
# pytest-xdist worker and every checkout: it mirrors each source's absolute path, and
# Python writes a .pyc atomically (a temporary file, then a rename), so processes that
# compile the same module at once never see half a file.
PYCACHE = Path(tempfile.gettempdir()) / f"tally-test-pycache-{os.getuid()}"

# No property test is timed: Hypothesis's deadline (200 ms an example) and its too_slow health
# check fail a correct test when the machine is busy (two workers on two cores, other jobs).
hypothesis_settings.register_profile(
    "tally", deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
hypothesis_settings.load_profile("tally")

# `-n auto` (pyproject's addopts) runs the tests in this many pytest-xdist workers at most:
# the CI machine has 2 cores, and the workers share one PostgreSQL and one Redis.
MAX_WORKERS = 4
# Below this many test files of the server tiers (integration, e2e) a run stays in one
# process: starting workers (each imports the app: ~2 s) would cost more than it saves.
PARALLEL_FROM_FILES = 2


def pytest_configure(config: pytest.Config) -> None:
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    config.addinivalue_line(
        "markers", "embedded: starts its own embedded PostgreSQL and Redis (a few seconds)"
    )


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """How many workers ``-n auto`` starts: one per CPU (at most ``MAX_WORKERS``) for a run of
    several server test files, none (one process, as with ``-n0``) for ``tests/unit`` or a
    single file. ``PYTEST_XDIST_AUTO_NUM_WORKERS`` or an explicit ``-n N`` decides instead."""
    if configured := os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return int(configured)
    if len(_server_test_files(config)) < PARALLEL_FROM_FILES:
        return 0
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def _server_test_files(config: pytest.Config) -> set[Path]:
    """The test files the command line names (or ``testpaths``), outside ``tests/unit``."""
    unit = Path(__file__).resolve().parent / "unit"
    found: set[Path] = set()
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::", 1)[0]).resolve()
        files = path.rglob("test_*.py") if path.is_dir() else [path]
        found.update(file for file in files if not file.is_relative_to(unit))
    return found
