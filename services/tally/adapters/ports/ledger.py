"""The ledger's journal: posting hash-chained entries inside a unit of work's transaction."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

import asyncpg

from tally.domain.ledger import CarriedEvent, Entry

Carried = Mapping[str, Iterable[CarriedEvent]]  # entry key -> the events it carries


class Journal(Protocol):
    """Posts entries; told whether each transaction committed or rolled back."""

    async def post(
        self, conn: asyncpg.Connection, entries: list[Entry], carried: Carried | None = None
    ) -> dict[str, int]: ...

    def committed(self) -> None: ...

    def rolled_back(self) -> None: ...
