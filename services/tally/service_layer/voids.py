"""Voiding metered events: from the consumer (``tally.void`` events, in a batch's
transaction) and from ``tally events void`` (a transaction of its own).

Everything a void changes commits with it: the reversing entry, the void's record, the
AI running total, the rollups' negative deltas and the usage total the alerts read. So
every surface (ledger, reports, dashboard, alerts, close) follows the void at once, and
``tally ledger verify`` recomputes each from the events with the voided ones left out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from tally.adapters.ports.ledger import Journal
from tally.adapters.ports.metering import MeteringStore
from tally.adapters.ports.unit_of_work import Database
from tally.domain.alerts import batch_usage
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import Posting, Rated, Reject, ai_quantities
from tally.domain.voids import (
    Target,
    VoidRefused,
    VoidRequest,
    judge,
    negated,
    rated_again,
    reversal_postings,
)
from tally.service_layer.unit_of_work import RETRIES, retrying

Voiding = list[tuple[VoidRequest, Rated]]  # each void with the event it takes back


async def judge_batch(
    store: MeteringStore,
    conn: asyncpg.Connection,
    new: Sequence[Rated],
    book: RateCardBook,
) -> tuple[Voiding, list[Reject]]:
    """The batch's new ``tally.void`` events: the voids to apply, and the refused ones as
    dead letters (replayable: a void that came before its event is metered later). An event
    of the same batch may be voided: it is stored first, in the same transaction."""
    asking = [event for event in new if event.void is not None]
    if not asking:
        return [], []
    stored = await store.void_targets(conn, [event.void.target for event in asking if event.void])
    in_batch = {event.key: event for event in new}  # a tally.void is refused as a target
    voiding: Voiding = []
    refused: list[Reject] = []
    for event in asking:
        assert event.void is not None
        target_key = event.void.target
        request = VoidRequest(
            target_key, event.void.reason, f"source {event.source}", event.org, event.key
        )
        batch_event = in_batch.get(target_key)
        target = Target.of(batch_event) if batch_event else stored.get(target_key)
        try:
            judge(request, target, (done.target for done, _ in voiding))
            assert target is not None
            voiding.append((request, batch_event or rated_again(target, book)))
        except VoidRefused as refusal:
            refused.append(
                Reject(event.stream_id, event.raw, refusal.reason, refusal.code, *event.key)
            )
    return voiding, refused


async def apply(
    store: MeteringStore,
    journal: Journal,
    conn: asyncpg.Connection,
    voiding: Voiding,
    book: RateCardBook,
    at: datetime,
) -> list[tuple[Posting, int]]:
    """Post each void's reversal and record it, in the caller's transaction; returns each
    reversal with its entry's id.

    The running totals are locked in key order, but after the batch's own: two batches that
    meter and void each other's organizations can deadlock, and the loser is retried whole
    (as any deadlock of a batch is)."""
    if not voiding:
        return []
    originals = [event for _, event in voiding]
    taken_back = [negated(event) for event in originals]
    taken_ai = ai_quantities(taken_back)
    totals = await store.ai_totals(conn, sorted(taken_ai))  # locked until the commit
    totals_after = {total: totals[total] + taken for total, taken in taken_ai.items()}
    postings = reversal_postings(originals, book, totals_after)
    entry_ids = await journal.post(
        conn, [p.entry for p in postings], {p.entry.key: p.carried() for p in postings}
    )
    reversed_by = {p.events[0].key: entry_ids[p.entry.key] for p in postings}
    await store.write_voids(conn, voiding, reversed_by, at)
    # the totals shrink after the voids are recorded: the database allows it only then
    await store.take_back_ai_quantities(conn, taken_ai)
    await store.take_back_usage(conn, batch_usage(p.entry for p in postings))
    await store.add_rollups(conn, taken_back)
    return [(p, entry_ids[p.entry.key]) for p in postings]


@dataclass(frozen=True)
class Voided:
    """What ``tally events void`` did: the reversing entry and what it took back."""

    org: str
    period: str
    meter: str
    taken_back: Decimal  # requests or AI tokens (a negative amount)
    entry_id: int
    entry_key: str
    invoice: int | None  # the period's invoice, when it is closed: the next close credits it


async def void_event(
    db: Database,
    request: VoidRequest,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Voided:
    """Void one event now (``VoidRefused`` says why not); retried when it races a consumer
    metering the same organization, or another void of the same event (then refused)."""
    journal = db.journal()

    async def attempt() -> Voided:
        async with db.transaction() as conn:
            book = await db.metering.load_rate_cards(conn)
            target = (await db.metering.void_targets(conn, [request.target])).get(request.target)
            judge(request, target)
            assert target is not None
            posting, entry_id = (
                await apply(
                    db.metering,
                    journal,
                    conn,
                    [(request, rated_again(target, book))],
                    book,
                    clock(),
                )
            )[0]
            entry = posting.entry
            line = next(line for line in entry.lines if line.account.kind == "usage")
            return Voided(
                target.org,
                target.period,
                line.account.unit,
                sum((ln.amount for ln in entry.lines if ln.account.kind == "usage"), Decimal(0)),
                entry_id,
                entry.key,
                await db.metering.invoice_of(conn, target.org, target.period),
            )

    return await retrying(
        attempt,
        journal,
        (asyncpg.UniqueViolationError, asyncpg.DeadlockDetectedError),
        RETRIES,
        "void",
    )
