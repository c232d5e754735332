"""What ``tally migrate`` needs: the schema upgraded, the roles granted, rate cards loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine


class Schema(Protocol):
    @property
    def WRITER(self) -> str: ...

    @property
    def READER(self) -> str: ...

    async def upgrade(self, url: str) -> None: ...

    async def grant(self, url: str, passwords: Mapping[str, str | None]) -> None: ...

    async def load_rate_cards(self, engine: AsyncEngine) -> list[str]: ...
