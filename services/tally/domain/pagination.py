"""Keyset pagination: a page of rows and the opaque cursor that continues after it.

A cursor is the sort key of the last row returned, so a page is stable while new rows
are written (rows are never skipped or repeated, unlike OFFSET). Callers never look
inside a cursor: it is base64url of a small JSON array of the key's parts, then ``.`` and
the HMAC-SHA256 of that with the server's key (``Cursors``), so that a client can continue
a list but never make up a key of its own: whatever it edits, the cursor is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from tally.domain import bounds

Key = tuple[str | int, ...]


class Keyed(Protocol):
    def cursor_key(self) -> Key:
        """The row's position in its list's order."""
        ...


T = TypeVar("T")
K = TypeVar("K", bound=Keyed)

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class BadCursor(ValueError):
    """The cursor was not made by this API for this list."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    next: str | None  # None: this is the last page


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _representable(part: object) -> bool:
    """A key part the ledger can hold: an id or sequence number (0 to bigint's maximum), or
    text PostgreSQL can compare."""
    if isinstance(part, int):
        return 0 <= part <= bounds.MAX_ID
    return isinstance(part, str) and not bounds.UNSTORABLE.search(part)


@dataclass(frozen=True)
class Cursors:
    """Makes and checks the cursors of every list with the server's secret (the
    ``cursor_key`` table: PostgreSQL made it at ``tally migrate``), for one ``scope`` (the
    list: the API binds each to its path), so a cursor of one list is refused by another."""

    secret: bytes
    scope: str = ""

    def bound_to(self, scope: str) -> Cursors:
        """These cursors for the list ``scope`` only."""
        return replace(self, scope=scope)

    def _mac(self, payload: str) -> str:
        signed = f"{self.scope}\n{payload}".encode()
        return _b64(hmac.new(self.secret, signed, hashlib.sha256).digest())

    def encode(self, key: Key) -> str:
        payload = _b64(json.dumps(list(key), separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def decode(self, cursor: str, shape: Sequence[type]) -> Key:
        """The key in ``cursor``, if this server signed it for this list, checked against
        ``shape`` (the type of each part) and what the ledger can represent."""
        payload, _, mac = cursor.rpartition(".")
        if not (cursor.isascii() and hmac.compare_digest(mac, self._mac(payload))):
            raise BadCursor(f"cursor {cursor!r} is not one this list gave out")
        parts = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if (  # signed by this server, but not a key this list could have made
            not isinstance(parts, list)
            or len(parts) != len(shape)
            or not all(
                type(part) is kind and _representable(part)
                for part, kind in zip(parts, shape, strict=True)
            )
        ):
            raise BadCursor(f"cursor {cursor!r} does not belong to this list")
        return tuple(parts)

    def after(self, cursor: str | None, shape: Sequence[type]) -> Key | None:
        """The key a page continues after: None (from the start) without a cursor."""
        return None if cursor is None else self.decode(cursor, shape)

    def page(self, rows: Sequence[K], limit: int) -> Page[K]:
        """A page from ``limit + 1`` fetched rows: the extra row only says there is a next
        page."""
        items = list(rows[:limit])
        more = len(rows) > limit and bool(items)
        return Page(items, self.encode(items[-1].cursor_key()) if more else None)
