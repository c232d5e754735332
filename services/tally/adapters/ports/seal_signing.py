"""What signing month seals needs from storage: the public keys and the signatures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Unsigned:
    """A stored seal without a signature: the fields its signature signs."""

    period: str
    sequence: int
    root: str  # hex
    entries: int


class SealSigningStore(Protocol):
    async def add_key(self, key_id: str, public_key: bytes) -> datetime:
        """Publish a new public key: from now on it signs, the one before it is retired.
        Returns its ``valid_from``."""
        ...

    async def current_key(self) -> str | None:
        """The id of the key that signs now (the newest), None before the first."""
        ...

    async def unsigned(self, period: str | None) -> list[Unsigned]:
        """Seals (of one period, or all) not signed yet, by period and sequence."""
        ...

    async def add_signature(self, seal: Unsigned, key_id: str, signature: bytes) -> None:
        """Store a seal's signature by ``key_id``, which must be the current key."""
        ...
