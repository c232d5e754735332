"""The metering service: one batch of stream entries into one PostgreSQL transaction.

Everything a batch changes (events, usage entries, duplicates, conflicts, dead letters,
replayed dead letters, and the tally of what it stored) commits together or not at all,
so the caller may XACK exactly the entries of a committed batch and redeliver the rest.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg

from tally.adapters.ports.metering import LetterToReplay
from tally.adapters.ports.unit_of_work import Database
from tally.domain.alerts import batch_usage
from tally.domain.deliveries import DeliveryCounts
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    Fields,
    Limits,
    OversizedEntry,
    Rated,
    Reject,
    SourceGrant,
    StreamEntry,
    ai_quantities,
    rate,
    sort_deliveries,
    stream_fields,
    usage_postings,
)
from tally.service_layer import voids
from tally.service_layer.rating_process import RatingContext, RatingProcess
from tally.service_layer.unit_of_work import RETRIES, retrying

log = logging.getLogger(__name__)
# What PostgreSQL (or the encoding of a value for it) refuses because of an entry's content;
# connection failures are not among them: those batches wait and are retried whole.
UNSTORABLE = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, ArithmeticError)


@dataclass
class BatchReport:
    counts: Counter[str] = field(default_factory=Counter)  # entries per outcome
    outcomes: dict[str, str] = field(default_factory=dict)  # stream id -> what became of it
    rejected: Counter[str] = field(default_factory=Counter)  # dead letters per code
    postings: int = 0  # usage entries posted to the ledger
    alerts: int = 0  # threshold alerts the batch's usage crossed

    def add(self, other: BatchReport) -> None:
        self.counts.update(other.counts)
        self.outcomes.update(other.outcomes)
        self.rejected.update(other.rejected)
        self.postings += other.postings
        self.alerts += other.alerts


@dataclass
class RatedBatch:
    stream: str
    stream_ids: list[str]  # every entry of the batch: what is XACKed after the commit
    rated: list[Rated]
    rejects: list[Reject]


class MeteringService:
    def __init__(
        self,
        db: Database,
        limits: Limits,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        require_known_sources: bool = False,
        rating: RatingProcess | None = None,
    ) -> None:
        """``require_known_sources``: only registered producers may bill (the consumer and
        ``tally dlq replay`` pass ``TALLY_REQUIRE_KNOWN_SOURCES``). ``rating``: a worker
        process that rates batches (the consumer's); None rates in this process."""
        self.db = db
        self.rating = rating
        self.store = db.metering
        self.limits = limits
        self.clock = clock
        self.require_known_sources = require_known_sources
        self.journal = db.journal()
        self._orgs: dict[str, str] = {}
        self._book: RateCardBook | None = None
        self._book_loaded: tuple[int, datetime | None] = (0, None)
        self._sources: dict[str, SourceGrant] = {}
        self._sources_loaded = -1

    async def book(self) -> RateCardBook:
        """The rate cards, reloaded when ``tally migrate`` loaded a new one (one cheap query
        per batch), so a long-running consumer prices like a fresh one."""
        async with self.db.connection() as conn:
            loaded = await self.store.rate_cards_loaded(conn)
            if self._book is None or loaded != self._book_loaded:
                self._book = await self.store.load_rate_cards(conn)
                self._book_loaded = loaded
        return self._book

    async def sources(self) -> dict[str, SourceGrant] | None:
        """The producer registry when sources are checked (None: not checked), reloaded
        when ``tally source add`` or ``remove`` appended a version (one cheap count per
        batch), so a running consumer applies a change at its next batch."""
        if not self.require_known_sources:
            return None
        async with self.db.connection() as conn:
            loaded = await self.store.sources_loaded(conn)
            if loaded != self._sources_loaded:
                self._sources = await self.store.load_sources(conn)
                self._sources_loaded = loaded
        return self._sources

    async def _rate(self, entries: Sequence[StreamEntry]) -> list[Rated | Reject]:
        book, sources, now = await self.book(), await self.sources(), self.clock()
        if self.rating is None:
            results = [
                rate(sid, fields, self._orgs, book, self.limits, now, sources)
                for sid, fields in entries
            ]
        else:
            context = RatingContext(self._orgs, book, self.limits, sources)
            results = await self.rating.rate(entries, context, now)
        unknown = {r.unknown_org for r in results if isinstance(r, Reject) and r.unknown_org}
        if unknown:
            async with self.db.connection() as conn:
                found = await self.store.organizations(conn, unknown)
            if found:
                self._orgs = {**self._orgs, **found}  # a new object: the worker gets it
                results = [
                    rate(sid, fields, self._orgs, book, self.limits, now, sources)
                    if isinstance(result, Reject) and result.unknown_org in found
                    else result
                    for (sid, fields), result in zip(entries, results, strict=True)
                ]
        return results

    async def start(self) -> None:
        """Start the rating worker, if there is one (it takes a second to import)."""
        if self.rating is not None:
            await self.rating.start()

    def close(self) -> None:
        """Stop the rating worker, if there is one."""
        if self.rating is not None:
            self.rating.close()

    async def compact_rollups(self) -> int:
        """Fold the rollup deltas the batches appended into the daily rows, in one
        transaction of its own (never a batch's: metering only appends); retried when it
        deadlocks with a rebuild."""

        async def compact() -> int:
            async with self.db.transaction() as conn:
                return await self.store.compact_rollups(conn)

        return await retrying(
            compact, self.journal, (asyncpg.DeadlockDetectedError,), RETRIES, "compaction"
        )

    async def rate_batch(self, stream: str, entries: Sequence[StreamEntry]) -> RatedBatch:
        """The CPU half of a batch (no transaction): a consumer overlaps it with a commit."""
        results = await self._rate(entries)
        return RatedBatch(
            stream,
            [sid for sid, _ in entries],
            [r for r in results if isinstance(r, Rated)],
            [r for r in results if isinstance(r, Reject)],
        )

    async def process(
        self,
        stream: str,
        entries: Sequence[StreamEntry],
        replaying: Mapping[str, int] | None = None,
    ) -> BatchReport:
        """Meter a batch; ``replaying`` maps stream ids to the dead letters they replay."""
        return await self.commit(await self.rate_batch(stream, entries), replaying)

    async def commit(
        self, batch: RatedBatch, replaying: Mapping[str, int] | None = None
    ) -> BatchReport:
        """The batch's one transaction; an entry PostgreSQL cannot store is isolated."""
        try:
            return await self._commit_retrying(batch.stream, batch.rated, batch.rejects, replaying)
        except UNSTORABLE as exc:
            log.warning("batch refused by PostgreSQL (%s); isolating the entry at fault", exc)
            return await self._isolate(batch.stream, [*batch.rated, *batch.rejects], replaying, exc)

    async def _isolate(
        self,
        stream: str,
        items: list[Rated | Reject],
        replaying: Mapping[str, int] | None,
        error: Exception,
    ) -> BatchReport:
        """Commit the halves of a refused batch apart, down to the one entry at fault, which
        becomes an ``unstorable`` dead letter: one poison entry never stalls the stream."""
        if len(items) == 1:
            item = items[0]
            reason = f"cannot be stored: {type(error).__name__}: {error}"
            kept = Reject(item.stream_id, item.raw, reason, "unstorable")
            return await self._commit_retrying(stream, [], [kept], replaying)
        report = BatchReport()
        middle = len(items) // 2
        for half in (items[:middle], items[middle:]):
            rated = [item for item in half if isinstance(item, Rated)]
            rejects = [item for item in half if isinstance(item, Reject)]
            try:
                report.add(await self._commit_retrying(stream, rated, rejects, replaying))
            except UNSTORABLE as exc:
                report.add(await self._isolate(stream, half, replaying, exc))
        return report

    async def _commit_retrying(
        self,
        stream: str,
        rated: list[Rated],
        rejects: list[Reject],
        replaying: Mapping[str, int] | None,
    ) -> BatchReport:
        """One transaction, retried when another consumer raced it on a key."""
        book = self._book if self._book is not None else await self.book()
        return await retrying(
            lambda: self._commit(stream, rated, rejects, book, replaying or {}),
            self.journal,
            (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError),
            RETRIES,
            "batch",
        )

    async def _commit(
        self,
        stream: str,
        rated: list[Rated],
        rejects: list[Reject],
        book: RateCardBook,
        replaying: Mapping[str, int],
    ) -> BatchReport:
        received_at = self.clock()
        report = BatchReport()
        async with self.db.transaction() as conn:
            stored = await self.store.stored_keys(conn, [event.key for event in rated])
            deliveries = sort_deliveries(stream, rated, stored)
            voiding, refused = await voids.judge_batch(self.store, conn, deliveries.new, book)
            if refused:  # a void the ledger refuses is a dead letter, its event not stored
                gone = {reject.stream_id for reject in refused}
                deliveries.new = [e for e in deliveries.new if e.stream_id not in gone]
                rated = [e for e in rated if e.stream_id not in gone]
                rejects = [*rejects, *refused]
            batch_ai = ai_quantities(deliveries.new)
            totals_after = await self.store.add_ai_quantities(conn, batch_ai)
            postings = usage_postings(deliveries.new, book, batch_ai, totals_after)
            entry_ids = await self.journal.post(
                conn, [p.entry for p in postings], {p.entry.key: p.carried() for p in postings}
            )
            counts = await self.store.write_events(
                conn, stream, received_at, deliveries, postings, entry_ids
            )
            await self.store.add_rollups(conn, deliveries.new)  # new events only: counted once
            added = batch_usage(p.entry for p in postings)
            report.alerts = await self.store.record_alert_crossings(conn, added, book, received_at)
            reversals = await voids.apply(
                self.store, self.journal, conn, voiding, book, received_at
            )
            counts += DeliveryCounts(
                dead_letters=await self.store.write_rejects(conn, stream, received_at, rejects)
            )
            for event in deliveries.new:
                report.outcomes[event.stream_id] = event.status
            for event in deliveries.duplicates:
                report.outcomes[event.stream_id] = "duplicate"
            for event in deliveries.conflicts:
                report.outcomes[event.stream_id] = "conflict"
            for event in rated:
                report.outcomes.setdefault(event.stream_id, "already stored")
            for reject in rejects:
                report.outcomes[reject.stream_id] = "rejected: " + reject.reason
            report.counts.update(report.outcomes[e.stream_id] for e in rated)
            if rejects:
                report.counts.update(rejected=len(rejects))
                report.rejected.update(reject.code for reject in rejects)
            report.postings = len(postings) + len(reversals)
            if replaying:
                closed = await self.store.record_replays(
                    conn, replaying, report.outcomes, received_at
                )
                counts += DeliveryCounts(replayed=closed)
            if counts:  # what the batch stored, in the same transaction (verify re-sums it)
                await self.store.record_tally(conn, stream, received_at, counts)
        return report


def _letter_fields(letter: LetterToReplay) -> Fields:
    """The stream entry a dead letter keeps; an oversized one only by its start and digest
    (so replaying it gives the same answer, never a half event)."""
    if letter.original_length is not None and letter.original_sha256 is not None:
        length = letter.original_length  # the two are recorded together
        return OversizedEntry(length, length, letter.original_sha256, letter.raw)
    return stream_fields(letter.raw, letter.code)


async def replay_dead_letters(
    service: MeteringService,
    ids: list[int] | None,
    batch_size: int,
    on_batch: Callable[[int], None] | None = None,
) -> dict[int, str]:
    """Meter open dead letters again (after a fix); returns what became of each.

    Idempotent: a replayed letter is closed, and its event is then stored, so replaying
    again finds nothing to do.
    """
    outcomes: dict[int, str] = {}
    after = 0
    while letters := await service.db.dead_letters.open_dead_letters(
        service.db.engine, ids, after, batch_size
    ):
        after = letters[-1].id
        for stream in sorted({letter.stream for letter in letters}):
            chosen = [letter for letter in letters if letter.stream == stream]
            entries = [(letter.stream_id, _letter_fields(letter)) for letter in chosen]
            report = await service.process(
                stream, entries, {letter.stream_id: letter.id for letter in chosen}
            )
            outcomes.update({letter.id: report.outcomes[letter.stream_id] for letter in chosen})
        if on_batch:
            on_batch(len(letters))
    return outcomes
