"""Lists read in keyset order: one page (``limit + 1`` rows), or every row through a
server-side cursor so that a long answer streams in flat memory.

A ``Listing`` is a SELECT whose first parameters are its filters and whose last ones are
the key of the row to continue after (NULL: from the start), ordered by that key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.domain.pagination import Key

PREFETCH = 1000  # rows per round trip of a streaming cursor


@dataclass(frozen=True)
class Listing:
    sql: str  # filters $1..$n, then the key's parts, ordered by the key; no LIMIT
    filters: tuple[Any, ...]
    shape: tuple[type, ...]  # the type of each part of the key
    key_of: Callable[[Mapping[str, Any]], Key]  # a row's key


@dataclass(frozen=True)
class Row:
    values: dict[str, Any]
    key: Key

    def cursor_key(self) -> Key:
        return self.key


async def fetch(
    engine: AsyncEngine, listing: Listing, after: Sequence[Any] | None, limit: int
) -> list[Row]:
    """Up to ``limit`` rows after the key ``after`` (from the start when None)."""
    keys = tuple(after) if after is not None else (None,) * len(listing.shape)
    parameters = (*listing.filters, *keys, limit)
    async with raw_connection(engine) as conn:
        rows = await conn.fetch(f"{listing.sql} LIMIT ${len(parameters)}", *parameters)
    return [Row(dict(row), listing.key_of(row)) for row in rows]


async def stream(engine: AsyncEngine, listing: Listing) -> AsyncIterator[dict[str, Any]]:
    """Every row, in order, read through a server-side cursor; the first item yielded is a
    dict of the column names (each mapped to itself), so that an empty list has a header."""
    parameters = (*listing.filters, *(None,) * len(listing.shape))
    async with raw_connection(engine) as conn, conn.transaction(readonly=True):
        statement = await conn.prepare(listing.sql)
        yield {attribute.name: attribute.name for attribute in statement.get_attributes()}
        async for row in statement.cursor(*parameters, prefetch=PREFETCH):
            yield dict(row)
