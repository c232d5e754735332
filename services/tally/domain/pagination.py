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
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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


@dataclass(frozen=True)
class Cursors:
    """Makes and checks the cursors of every list with the server's secret (the
    ``cursor_key`` table: PostgreSQL made it at ``tally migrate``)."""

    secret: bytes

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self.secret, payload.encode(), hashlib.sha256).digest())

    def encode(self, key: Key) -> str:
        payload = _b64(json.dumps(list(key), separators=(",", ":")).encode())
        return f"{payload}.{self._mac(payload)}"

    def decode(self, cursor: str, shape: Sequence[type]) -> Key:
        """The key in ``cursor``, if this server signed it, checked against ``shape`` (the
        type of each part)."""
        payload, _, mac = cursor.rpartition(".")
        if not (cursor.isascii() and hmac.compare_digest(mac, self._mac(payload))):
            raise BadCursor(f"cursor {cursor!r} is not one this API gave out")
        parts = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if (  # signed by this server, but maybe for another list
            not isinstance(parts, list)
            or len(parts) != len(shape)
            or not all(type(part) is kind for part, kind in zip(parts, shape, strict=True))
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
