"""What the month close needs of PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from tally.adapters.ports.ledger import Journal
from tally.domain.invoicing import CloseInput, InvoiceDraft
from tally.domain.ratecard import RateCard


class CloseStore(Protocol):
    """The close's lock, who still owes an invoice and their usage, the invoices written."""

    async def lock(self, conn: asyncpg.Connection) -> bool: ...

    async def unlock(self, conn: asyncpg.Connection) -> None: ...

    async def count_orgs_to_close(
        self, conn: asyncpg.Connection, period: str, period_end: datetime
    ) -> int: ...

    async def orgs_to_close(
        self,
        conn: asyncpg.Connection,
        period: str,
        period_end: datetime,
        after: str | None = None,
        limit: int | None = None,
    ) -> list[tuple[str, str]]: ...

    async def close_inputs(
        self,
        conn: asyncpg.Connection,
        orgs: Sequence[tuple[str, str]],
        period: str,
        card: RateCard,
    ) -> list[CloseInput]: ...

    async def write_invoices(
        self,
        conn: asyncpg.Connection,
        journal: Journal,
        drafts: Sequence[InvoiceDraft],
        issued_at: datetime,
    ) -> list[int]: ...

    async def record_closed(
        self, conn: asyncpg.Connection, period: str, as_of: datetime
    ) -> None: ...

    async def seal_due_periods(self, conn: asyncpg.Connection) -> None:
        """Seal every closed period with entries no seal covers yet (the month seal)."""

    async def invoice_count(self, conn: asyncpg.Connection, period: str) -> int: ...

    async def closed_periods_missing_invoices(
        self, conn: asyncpg.Connection, before: str
    ) -> list[str]: ...
