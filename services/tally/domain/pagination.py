"""Keyset pagination: a page of rows and the opaque cursor that continues after it.

A cursor is the sort key of the last row returned, so a page is stable while new rows
are written (rows are never skipped or repeated, unlike OFFSET). Callers never look
inside a cursor: it is base64url of a small JSON array of the key's parts.
"""

from __future__ import annotations

import base64
import binascii
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


def encode_cursor(key: Key) -> str:
    text = json.dumps(list(key), separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, shape: Sequence[type]) -> Key:
    """The key in ``cursor``, checked against ``shape`` (the type of each part)."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        parts = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise BadCursor(f"cursor {cursor!r} is not one this API gave out") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != len(shape)
        or not all(type(part) is kind for part, kind in zip(parts, shape, strict=True))
    ):
        raise BadCursor(f"cursor {cursor!r} does not belong to this list")
    return tuple(parts)


def page_of(rows: Sequence[K], limit: int) -> Page[K]:
    """A page from ``limit + 1`` fetched rows: the extra row only says there is a next page."""
    items = list(rows[:limit])
    more = len(rows) > limit and bool(items)
    return Page(items, encode_cursor(items[-1].cursor_key()) if more else None)
