"""A scratch database with no revision applied, and its owner's engine (application
engines act as ``tally_writer``, which has no grants before ``tally migrate``)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.pool import NullPool

from support.migrations import Migrations
from tally import bootstrap


@pytest.fixture
async def migrations(database_url: str) -> AsyncIterator[Migrations]:
    # No pooled connection outlives a revision: each query sees the schema as it is now.
    engine = bootstrap.engine(database_url, owner=True, poolclass=NullPool)
    yield Migrations(database_url, engine)
    await engine.dispose()
