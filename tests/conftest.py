"""Registers the shared fixtures of ``tests/support`` for every tier.

Server fixtures (``pg_admin_url``, ``redis_url``, ``database_url``, ...) are lazy: a server is
found or started only when an integration or e2e test asks for one, so ``tests/unit`` runs
with no PostgreSQL or Redis at all.
"""

from __future__ import annotations

import pytest

pytest_plugins = [
    "support.servers",
    "support.ledger_support",
    "support.serving",
    "support.browser",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "embedded: starts its own embedded PostgreSQL and Redis (a few seconds)"
    )
