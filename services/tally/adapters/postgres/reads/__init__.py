"""The ledger's read side (CQRS): queries that only SELECT, returning pydantic models.

Sign convention, as in ``tally.domain.ledger``: a positive line amount is a **debit**, a
negative one a **credit**. ``debits`` and ``credits`` columns are positive totals, and a
balance is ``debits - credits`` (positive: a debit balance, negative: a credit balance).
Decimals serialize as strings in JSON (pydantic's JSON mode). Lists are keyset pages
(``tally.domain.pagination``): a function takes the server's ``Cursors``, the opaque
cursor ``after`` and a limit and returns a ``Page``; its ``iter_`` twin streams every row
(a server-side cursor, flat memory) for CSV.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Annotated, Any

import asyncpg
from pydantic import PlainSerializer

from tally.domain.pagination import MAX_LIMIT, Cursors

STREAM_PREFETCH = 5000

# An exact decimal, as a plain string in JSON ("3000000", never "3.00E+6").
Amount = Annotated[
    Decimal, PlainSerializer(lambda v: format(v, "f"), return_type=str, when_used="json")
]


async def cursors(conn: asyncpg.Connection) -> Cursors:
    """The server's cursors, signed with the key ``tally migrate`` made (``cursor_key``)."""
    return Cursors(await conn.fetchval("SELECT secret FROM cursor_key"))


def fetch_limit(limit: int) -> int:
    """Rows to fetch for a page of ``limit``: one more says whether a next page exists."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit + 1


@asynccontextmanager
async def snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """One read-only snapshot for several queries (or the caller's transaction, if any)."""
    if conn.is_in_transaction():
        yield
        return
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        yield


# For a read through a whole period: JIT's compilation (about a second at ten million
# lines) costs more than it saves on these plans; a period's sort fits in memory; and the
# ledger's hot pages are cached, so an index read in order beats a scan and a sort (the
# default random_page_cost prices every index page as a disk seek).
BULK_SETTINGS = "SET LOCAL jit = off; SET LOCAL work_mem = '64MB'; SET LOCAL random_page_cost = 1.1"


@asynccontextmanager
async def bulk_snapshot(conn: asyncpg.Connection) -> AsyncIterator[None]:
    """``snapshot`` with ``BULK_SETTINGS`` (for the rest of the caller's transaction, if
    there is one)."""
    async with snapshot(conn):
        await conn.execute(BULK_SETTINGS)
        yield


async def stream(conn: asyncpg.Connection, query: str, *args: Any) -> AsyncIterator[asyncpg.Record]:
    """Every row of ``query`` through a server-side cursor, in one read-only snapshot."""
    async with snapshot(conn):
        async for record in conn.cursor(query, *args, prefetch=STREAM_PREFETCH):
            yield record
