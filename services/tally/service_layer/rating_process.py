"""Rating in a second process, so that a consumer uses two cores.

Python runs one core per process. Parsing and rating a batch is about half of a consumer's
CPU, the commit (building rows, COPY, waiting on PostgreSQL) the other half; in one process
they alternate. Here a worker process rates batch n+1 while this process commits batch n.
Off by default (``TALLY_RATING_PROCESS``): on 2 cores shared with PostgreSQL and Redis the
hand-off cost what the overlap won (docs/content/performance.md).

What crosses between the processes is plain data, cheap to pickle: the entries' fields go
there; each rated event comes back as a tuple of its values (its bytes stay here, in the
entry they came from) and each reject whole (they are few). The rating context (rate
cards, organizations, sources, limits) goes only when it changed since the last batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    EVENT_FIELD_BYTES,
    ApiCall,
    Fields,
    Limits,
    Rated,
    Reject,
    SourceGrant,
    StreamEntry,
    rate,
)

Packed = tuple[Any, ...]  # a Rated's values but its bytes and stream id


@dataclass(frozen=True)
class RatingContext:
    """What rating a batch needs besides its entries (sent to the worker when it changes)."""

    orgs: Mapping[str, str]
    book: RateCardBook
    limits: Limits
    sources: Mapping[str, SourceGrant] | None

    def same_as(self, other: RatingContext | None) -> bool:
        """The same objects (the service replaces, never mutates, what it reloads)."""
        return (
            other is not None
            and other.orgs is self.orgs
            and other.book is self.book
            and other.sources is self.sources
            and other.limits == self.limits
        )


_context: RatingContext | None = None  # the worker's: the latest one it was sent
PARENT_CHECK_S = 0.2


def _follow_parent(parent: int) -> None:
    """The worker ends when the consumer does, even killed (SIGKILL leaves no time to stop
    it): an orphan would hold the consumer's stdout and stderr open for whoever reads them."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="follow-parent", daemon=True).start()


def _rate_in_worker(
    context: RatingContext | None, entries: Sequence[StreamEntry], now: datetime
) -> list[Packed | Reject]:
    global _context
    if context is not None:
        _context = context
    if not entries:
        return []
    assert _context is not None, "the first batch brings the rating context"
    c = _context
    return [
        _pack(result) if isinstance(result, Rated) else result
        for result in (rate(sid, f, c.orgs, c.book, c.limits, now, c.sources) for sid, f in entries)
    ]


def _pack(event: Rated) -> Packed:
    """The values main needs, the repeated ones interned: pickle then sends each once per
    batch and main holds one copy (organizations, periods, clients, URLs repeat a lot)."""
    api = event.api
    if api is not None:
        api = ApiCall(_i(api.oauth_client_id), _i(api.template_uri), _i(api.method), *api[3:])
    return (
        _i(event.source),
        event.id,
        _i(event.type),
        _i(event.org),
        event.time,
        _i(event.period),
        _i(event.status),
        event.meter and _i(event.meter),
        event.feature and _i(event.feature),
        str(event.quantity),
        _i(event.rate_card_version),
        event.license,
        api,
    )


_i = sys.intern


def _unpack(values: Packed, stream_id: str, fields: Fields) -> Rated:
    """A rated event again, with the bytes of the entry it came from (a rated entry is
    exactly one ``event`` field)."""
    source, id_, kind, org, time, period, status, meter, feature, quantity, version, lic, api = (
        values
    )
    raw = fields[EVENT_FIELD_BYTES] if isinstance(fields, Mapping) else fields[0][1]  # type: ignore[index]
    return Rated(
        source, id_, kind, org, time, period, status, meter, feature, Decimal(quantity),
        version, raw, stream_id, lic, api,
    )  # fmt: skip


@contextlib.contextmanager
def _lean_start() -> Iterator[None]:
    """Start the worker without the program's main script: spawn would import it again
    in the worker (for ``tally consume``, the whole CLI: tens of MB the worker never uses)."""
    main = sys.modules["__main__"]
    path = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if path is not None:
            main.__file__ = path


class RatingProcess:
    """One worker process that rates batches; started on first use, started again if it
    died (the batch is then rated again: rating has no side effect)."""

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._sent: RatingContext | None = None

    async def start(self) -> None:
        """Start the worker now (a spawned process imports the rating rules first)."""
        if self._pool is None:
            await self._submit([], None, datetime.now(UTC))

    async def rate(
        self, entries: Sequence[StreamEntry], context: RatingContext, now: datetime
    ) -> list[Rated | Reject]:
        try:
            packed = await self._submit(entries, context, now)
        except BrokenProcessPool:
            self.close()
            packed = await self._submit(entries, context, now)
        return [
            _unpack(item, sid, fields) if isinstance(item, tuple) else item
            for item, (sid, fields) in zip(packed, entries, strict=True)
        ]

    async def _submit(
        self, entries: Sequence[StreamEntry], context: RatingContext | None, now: datetime
    ) -> list[Packed | Reject]:
        fresh = self._pool is None
        if self._pool is None:
            spawn = multiprocessing.get_context("spawn")  # never fork a running event loop
            self._pool = ProcessPoolExecutor(
                1, mp_context=spawn, initializer=_follow_parent, initargs=(os.getpid(),)
            )
            self._sent = None
        send = None if context is None or context.same_as(self._sent) else context
        loop = asyncio.get_running_loop()
        with _lean_start() if fresh else contextlib.nullcontext():  # the worker starts here
            future = loop.run_in_executor(self._pool, _rate_in_worker, send, entries, now)
        result = await future
        self._sent = context or self._sent
        return result

    def close(self) -> None:
        """Stop the worker and wait for it to end (a batch it was rating is dropped)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
