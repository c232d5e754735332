"""What adding organizations and commitments needs of PostgreSQL (reads go to the adapter)."""

from __future__ import annotations

from decimal import Decimal
from typing import Protocol

import asyncpg


class OrganizationStore(Protocol):
    async def insert(self, conn: asyncpg.Connection, name: str, currency: str) -> bool: ...

    async def currency_of(self, conn: asyncpg.Connection, name: str) -> str | None: ...

    async def exists(self, conn: asyncpg.Connection, name: str) -> bool: ...

    async def insert_commitment(
        self,
        conn: asyncpg.Connection,
        org: str,
        license: str,
        model: str,
        quantity: Decimal,
        from_period: str,
    ) -> None: ...
