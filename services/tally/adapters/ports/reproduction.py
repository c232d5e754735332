"""What reproducing invoices needs of PostgreSQL: the invoices, each as stored with the raw
bytes and records it was computed from."""

from __future__ import annotations

from typing import Protocol

import asyncpg

from tally.domain.reproduction import StoredInvoice


class ReproductionStore(Protocol):
    async def invoice_count(self, conn: asyncpg.Connection) -> int: ...

    async def invoice_numbers(
        self, conn: asyncpg.Connection, after: int, limit: int
    ) -> list[int]: ...

    async def stored_invoice(
        self, conn: asyncpg.Connection, number: int
    ) -> StoredInvoice | None: ...
