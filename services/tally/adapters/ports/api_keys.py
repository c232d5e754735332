"""What creating and revoking API keys needs from storage."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from tally.domain.access import NewKey


class ApiKeyStore(Protocol):
    async def add(self, key: NewKey, name: str, expires_at: datetime | None) -> datetime:
        """Store the key (its secret's hash only); returns its creation time. ``KeyRefused``
        when its organization does not exist."""
        ...

    async def revoke(self, key_id: str) -> str | None:
        """None for an unknown key, else 'revoked' or 'already revoked'."""
        ...
