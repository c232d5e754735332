"""The month close: every organization's invoice for a period, posted to the ledger.

Safe to run again, at once from two places, or after a crash:
- one close at a time (a PostgreSQL advisory lock; a second close waits, then finds the
  work done and returns the same invoices);
- organizations are closed in chunks, each chunk in one transaction, so an organization
  is invoiced whole or not at all and a rerun carries on where a crash stopped;
- an organization that has its invoice for the period is never closed again;
- the transaction that records a period closed also seals it (and any closed period with
  entries posted since its last seal, such as the entries of late usage).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import localcontext

import asyncpg

from tally.adapters.ports.ledger import Journal
from tally.adapters.ports.unit_of_work import Database
from tally.adapters.telemetry import metrics, tracing
from tally.domain.invoicing import CLOSE_CHUNK, CloseInput, InvoiceDraft, close_org
from tally.domain.period import period_bounds
from tally.service_layer.unit_of_work import RETRIES, retrying

Progress = Callable[[int, int], None]  # (organizations closed, organizations to close)
CLOCK_SKEW = timedelta(minutes=5)  # how far --as-of may run ahead of the real clock
# a chunk that met a consumer's transaction in a deadlock is simply run again
RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)


class CloseRefused(ValueError):
    """The period cannot be closed yet (or at all): the message says why and when."""


@dataclass(frozen=True)
class CloseReport:
    period: str
    as_of: datetime
    issued: int  # invoices this run issued
    invoices: int  # invoices the period has now
    waited: bool  # another close held the lock first


async def close_period(
    db: Database,
    period: str,
    as_of: datetime,
    grace: timedelta,
    progress: Progress | None = None,
    chunk: int = CLOSE_CHUNK,
    now: datetime | None = None,
) -> CloseReport:
    """Close ``period`` at the clock ``as_of``; ``now`` (the real time) bounds that clock."""
    real = now or datetime.now(UTC)
    if as_of > real + CLOCK_SKEW:
        raise CloseRefused(
            f"the close's clock ({as_of.astimezone(UTC):%Y-%m-%dT%H:%MZ}) is ahead of the real "
            f"one ({real:%Y-%m-%dT%H:%MZ}): a period is closed once it is over, never ahead"
        )
    end = period_bounds(period)[1]
    if as_of < end + grace:
        hours = grace.total_seconds() / 3600
        raise CloseRefused(
            f"period {period} ends {end:%Y-%m-%dT%H:%MZ}; with a grace of {hours:g} h it can be "
            f"closed from {end + grace:%Y-%m-%dT%H:%MZ} (the close's clock says "
            f"{as_of.astimezone(UTC):%Y-%m-%dT%H:%MZ}; --as-of sets it)"
        )
    started = time.perf_counter()
    with tracing.tracer.start_as_current_span("close", attributes={"tally.period": period}) as span:
        async with db.connection() as session:
            waited = await db.close.lock(session)
            try:
                # usage posted for an organization after its period closed without it (it was
                # added later, its dead letters replayed): that period's invoice comes first
                issued = 0
                for earlier in await db.close.closed_periods_missing_invoices(session, period):
                    issued += await _close(db, session, earlier, as_of, None, chunk)
                issued += await _close(db, session, period, as_of, progress, chunk)
                total = await db.close.invoice_count(session, period)
            finally:
                await db.close.unlock(session)
        span.set_attributes({"tally.invoices_issued": issued, "tally.waited": waited})
    metrics.CLOSE_DURATION.observe(time.perf_counter() - started)
    metrics.INVOICES_ISSUED.inc(issued)
    return CloseReport(period, as_of, issued, total, waited)


async def _close(
    db: Database,
    session: asyncpg.Connection,
    period: str,
    as_of: datetime,
    progress: Progress | None,
    chunk: int,
) -> int:
    """Invoice every organization the period still owes an invoice; returns how many."""
    start, end = period_bounds(period)
    card = (await db.metering.load_rate_cards(session)).in_effect(start)
    if card is None:
        raise CloseRefused(f"no rate card is in effect at the start of {period}")
    # Organizations are read a chunk at a time, by name (keyset): memory stays flat in
    # their number. A chunk's organizations all get their invoice when it commits, so the
    # next page starts after the last name of the previous one.
    total = await db.close.count_orgs_to_close(session, period, end)
    done, issued, after = 0, 0, None
    if progress:
        progress(0, total)
    while part := await db.close.orgs_to_close(session, period, end, after, chunk):
        journal = db.journal()  # per chunk: its account cache stays one chunk's size

        async def close_chunk(
            part: list[tuple[str, str]] = part, journal: Journal = journal
        ) -> int:
            async with db.transaction() as conn:
                inputs = await db.close.close_inputs(conn, part, period, card)
                drafts = [draft_invoice(given) for given in inputs]
                return len(await db.close.write_invoices(conn, journal, drafts, as_of))

        issued += await retrying(close_chunk, journal, RETRYABLE, RETRIES, "close chunk")
        after, done = part[-1][0], done + len(part)
        if progress:
            progress(done, max(total, done))
    async with session.transaction():  # closed and sealed at once: never one without the other
        await db.close.record_closed(session, period, as_of)
        await db.close.seal_due_periods(session)
    return issued


def draft_invoice(given: CloseInput) -> InvoiceDraft:
    """One organization's invoice; a rule the rate card cannot apply names the organization."""
    try:
        with localcontext() as exact:  # room for any quantity the wire contract admits
            exact.prec = 80
            return close_org(given)
    except (KeyError, ValueError) as exc:
        detail = f"it prices nothing for {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CloseRefused(
            f"cannot close {given.period} for {given.org} with rate card {given.card.version}: "
            f"{detail}"
        ) from exc
