"""One PostgreSQL database as the service layer sees it: connections, transactions, a journal
for posting, and the stores, all bound to the same engine (cosmicpython's unit of work)."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.close import CloseStore
from tally.adapters.ports.ledger import Journal
from tally.adapters.ports.metering import DeadLetters, MeteringStore
from tally.adapters.ports.organizations import OrganizationStore
from tally.adapters.ports.reproduction import ReproductionStore
from tally.adapters.ports.streams import StreamRecords


class Database(Protocol):
    @property
    def engine(self) -> AsyncEngine: ...

    @property
    def metering(self) -> MeteringStore: ...

    @property
    def dead_letters(self) -> DeadLetters: ...

    @property
    def close(self) -> CloseStore: ...

    @property
    def organizations(self) -> OrganizationStore: ...

    @property
    def reproduction(self) -> ReproductionStore: ...

    @property
    def stream_records(self) -> StreamRecords: ...

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A pooled connection (no transaction: each statement commits alone)."""
        ...

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        """A connection in one transaction, committed when the block ends without error."""
        ...

    def journal(self) -> Journal:
        """A new journal (its account and lane caches last as long as it does)."""
        ...
