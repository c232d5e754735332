"""Every list of the read side, in one shape: a typed keyset query that gives a page (for
the API's JSON, the pages and the CLI) or every row through a server-side cursor (for CSV,
in flat memory).

A ``Listing`` is a SELECT whose first parameters are its filters and whose last ones are
the key of the row to continue after (NULL: from the start), ordered by that key, with no
LIMIT. Each record becomes a row of ``model``, whose ``cursor_key`` is that key: so a
list is written once, as its SQL, its filters and its row, and every entrypoint reads it
the same way.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import asyncpg
from pydantic import BaseModel

from tally.adapters.postgres.reads import fetch_limit, stream
from tally.domain.pagination import Cursors, Key, Page


class KeyedRow(BaseModel):
    """A row of a list: it knows its place in the list's order."""

    def cursor_key(self) -> Key:
        raise NotImplementedError


R = TypeVar("R", bound=KeyedRow)


def in_order(filters: BaseModel) -> tuple[Any, ...]:
    """A list's filters as its SQL's first parameters: a filter model's fields are written
    in the order of the parameters they fill."""
    return tuple(getattr(filters, name) for name in type(filters).model_fields)


class Paged(Protocol[R]):
    """What the entrypoints read a list through: a ``Listing``, or a list that takes more
    than one query a page (the month seals, each with its lane heads)."""

    @property
    def fields(self) -> list[str]: ...

    def page(
        self, conn: asyncpg.Connection, cursors: Cursors, after: str | None, limit: int
    ) -> Awaitable[Page[R]]: ...

    def iter_rows(self, conn: asyncpg.Connection) -> AsyncIterator[R]: ...


@dataclass(frozen=True)
class Listing(Generic[R]):
    scope: str  # the list's name: a cursor this list gave out is refused by any other
    sql: str  # filters $1..$n, then the key's parts, ordered by the key; no LIMIT
    filters: tuple[Any, ...]
    model: type[R]  # a record's columns, in order, are the model's fields
    shape: tuple[type, ...]  # the type of each part of the key

    def _row(self, record: asyncpg.Record) -> R:
        return self.model.model_validate(dict(record))

    async def page(
        self, conn: asyncpg.Connection, cursors: Cursors, after: str | None, limit: int
    ) -> Page[R]:
        """Up to ``limit`` rows after the cursor ``after`` (from the start when None);
        ``BadCursor`` if this list did not give it out."""
        signed = cursors.bound_to(self.scope)
        key = signed.after(after, self.shape)
        parameters = (*self.filters, *(key or (None,) * len(self.shape)), fetch_limit(limit))
        records = await conn.fetch(f"{self.sql} LIMIT ${len(parameters)}", *parameters)
        return signed.page([self._row(record) for record in records], limit)

    async def iter_rows(self, conn: asyncpg.Connection) -> AsyncIterator[R]:
        """Every row, in order, in one read-only snapshot."""
        async for record in stream(conn, self.sql, *self.filters, *(None,) * len(self.shape)):
            yield self._row(record)

    @property
    def fields(self) -> list[str]:
        """The columns of a row (a CSV's header, even of an empty list)."""
        return list(self.model.model_fields)
