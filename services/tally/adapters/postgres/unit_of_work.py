"""The PostgreSQL implementation of the ``Database`` port: one engine and its stores."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.ports.close import CloseStore
from tally.adapters.ports.metering import DeadLetters, MeteringStore
from tally.adapters.ports.organizations import OrganizationStore
from tally.adapters.ports.reproduction import ReproductionStore
from tally.adapters.ports.streams import StreamRecords
from tally.adapters.postgres import (
    close_store,
    metering_store,
    reproduction_store,
    stream_records,
)
from tally.adapters.postgres import organizations as organization_store
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.journal import Journal
from tally.adapters.postgres.reads import dead_letters as dead_letter_reads


class PostgresDatabase:
    """The stores are modules of SQL; this binds them to one engine for the service layer."""

    metering: MeteringStore = metering_store
    dead_letters: DeadLetters = dead_letter_reads
    close: CloseStore = close_store
    organizations: OrganizationStore = organization_store
    reproduction: ReproductionStore = reproduction_store
    stream_records: StreamRecords = stream_records

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def connection(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return raw_connection(self.engine)

    def transaction(self) -> AbstractAsyncContextManager[asyncpg.Connection]:
        return raw_transaction(self.engine)

    def journal(self) -> Journal:
        return Journal()
