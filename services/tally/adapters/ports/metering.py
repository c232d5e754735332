"""What metering a batch and replaying dead letters need of PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.domain.alerts import UsageKey
from tally.domain.deliveries import DeliveryCounts
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    Deliveries,
    EventKey,
    Posting,
    Rated,
    Reject,
    SourceGrant,
    TotalKey,
)
from tally.domain.voids import Target, VoidRequest


class MeteringStore(Protocol):
    """Rate cards, producers and organizations to rate with; one batch's rows to write."""

    async def rate_cards_loaded(self, conn: asyncpg.Connection) -> tuple[int, datetime | None]: ...

    async def load_rate_cards(self, conn: asyncpg.Connection) -> RateCardBook: ...

    async def organizations(
        self, conn: asyncpg.Connection, names: Iterable[str]
    ) -> dict[str, str]: ...

    async def sources_loaded(self, conn: asyncpg.Connection) -> int: ...

    async def load_sources(self, conn: asyncpg.Connection) -> dict[str, SourceGrant]: ...

    async def stored_keys(
        self, conn: asyncpg.Connection, keys: Sequence[EventKey]
    ) -> dict[EventKey, tuple[bytes, str]]: ...

    async def add_ai_quantities(
        self, conn: asyncpg.Connection, batch: Mapping[TotalKey, Decimal]
    ) -> dict[TotalKey, Decimal]: ...

    async def write_events(
        self,
        conn: asyncpg.Connection,
        stream: str,
        received_at: datetime,
        deliveries: Deliveries,
        postings: Sequence[Posting],
        entry_ids: Mapping[str, int],
    ) -> DeliveryCounts: ...

    async def add_rollups(self, conn: asyncpg.Connection, new_events: Sequence[Rated]) -> None:
        """Add the batch's new events to the daily rollups the reports read."""

    async def compact_rollups(self, conn: asyncpg.Connection) -> int:
        """Fold the rollups' appended deltas into their daily rows; returns how many moved."""

    async def record_alert_crossings(
        self,
        conn: asyncpg.Connection,
        added: Mapping[UsageKey, Decimal],
        book: RateCardBook,
        now: datetime,
    ) -> int:
        """Add the batch's usage to the running totals and record the thresholds crossed."""

    async def write_rejects(
        self,
        conn: asyncpg.Connection,
        stream: str,
        received_at: datetime,
        rejects: Sequence[Reject],
    ) -> int: ...

    async def record_replays(
        self,
        conn: asyncpg.Connection,
        replaying: Mapping[str, int],
        outcomes: Mapping[str, str],
        at: datetime,
    ) -> int: ...

    async def record_tally(
        self, conn: asyncpg.Connection, stream: str, at: datetime, counts: DeliveryCounts
    ) -> None: ...

    async def void_targets(
        self, conn: asyncpg.Connection, keys: Sequence[EventKey]
    ) -> dict[EventKey, Target]:
        """The stored events these voids name, each with whether it is voided already."""

    async def write_voids(
        self,
        conn: asyncpg.Connection,
        voids: Sequence[tuple[VoidRequest, Rated]],
        entry_ids: Mapping[EventKey, int],
        at: datetime,
    ) -> None:
        """Record each void with the id of its reversing entry."""

    async def ai_totals(
        self, conn: asyncpg.Connection, keys: Sequence[TotalKey]
    ) -> dict[TotalKey, Decimal]:
        """The running AI totals, locked until the transaction ends."""

    async def take_back_ai_quantities(
        self, conn: asyncpg.Connection, taken: Mapping[TotalKey, Decimal]
    ) -> None:
        """Subtract voided AI quantities from the running totals."""

    async def take_back_usage(
        self, conn: asyncpg.Connection, taken: Mapping[UsageKey, Decimal]
    ) -> None:
        """Subtract voided usage from the usage totals the alerts read."""

    async def invoice_of(self, conn: asyncpg.Connection, org: str, period: str) -> int | None:
        """The organization's invoice for the period, if it has one."""


@dataclass(frozen=True)
class LetterToReplay:
    """An open dead letter as a replay needs it: the stream entry it keeps (an oversized
    one only by its start, its length and digest) and the answer it got."""

    id: int
    stream: str
    stream_id: str
    raw: bytes
    code: str
    original_length: int | None
    original_sha256: str | None


class DeadLetters(Protocol):
    """The open dead letters, in id order (what ``tally dlq replay`` meters again)."""

    async def open_dead_letters(
        self, engine: AsyncEngine, ids: list[int] | None, after: int, limit: int
    ) -> list[LetterToReplay]: ...
