"""What buying AI tokens for a period needs of the ledger's store (listing them is a read:
entrypoints query ``adapters.postgres.token_purchases``)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

import asyncpg


@dataclass(frozen=True)
class Standing:
    """Where an organization stands for a period, as a purchase must know it."""

    org_exists: bool
    period_closed: bool  # the month close has run for the period
    invoice: str | None  # the organization's invoice for the period (INV-...), once issued


class TokenPurchaseStore(Protocol):
    async def standing(self, conn: asyncpg.Connection, org: str, period: str) -> Standing:
        """Read while holding off the month close (its lock, shared) until the commit, so
        a purchase and a close of its period never cross."""
        ...

    async def insert(
        self, conn: asyncpg.Connection, org: str, period: str, tokens: Decimal, note: str | None
    ) -> int:
        """Record the purchase; its id."""
        ...
