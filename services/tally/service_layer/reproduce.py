"""Reproducing invoices (``tally invoice reproduce``): each invoice recomputed from the stored
raw events alone, through the close's own domain code, compared byte for byte with the
stored one, and its input digest recomputed and compared with the one the close recorded.

Nothing is written: a reproduction reads one invoice at a time on one connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from tally.adapters.ports.unit_of_work import Database
from tally.domain.invoicing import invoice_number
from tally.domain.ratecard import RateCardBook
from tally.domain.reproduction import (
    canonical_json,
    differences,
    figures,
    header,
    input_digest,
    part_differences,
    parts_of,
    rebuild,
)
from tally.service_layer.month_close import CloseRefused, draft_invoice

Progress = Callable[[int, int], None]  # (invoices reproduced, invoices to reproduce)
PAGE = 500  # invoice numbers read at a time by reproduce --all


class NoSuchInvoice(LookupError):
    """The number names no invoice."""


@dataclass(frozen=True)
class Reproduction:
    """One invoice reproduced: what differs (nothing, when it reproduces)."""

    number: str
    org: str
    period: str
    currency: str
    total: Decimal  # as stored
    events: int  # billed events rated again from their raw bytes
    identical: bool  # the recomputed invoice's canonical JSON is the stored one's, byte for byte
    differences: tuple[str, ...]  # per field of a line or adjustment: stored vs reproduced
    digest: str | None  # the input digest the close recorded (hex); None before migration 0021
    digest_now: str  # recomputed from the stored raw bytes and records
    digest_differences: tuple[str, ...]  # the parts of the inputs that changed since the close
    events_changed: tuple[str, ...]  # events whose raw bytes no longer say what was metered

    @property
    def reproduced(self) -> bool:
        """Same figures, same inputs, and every event still says what was metered (an
        invoice with no digest, issued before migration 0021, has only the last to show
        that its events are the ones it billed)."""
        return self.identical and self.digest in (None, self.digest_now) and not self.events_changed


async def reproduce(db: Database, number: int, book: RateCardBook | None = None) -> Reproduction:
    """Recompute invoice ``number`` and compare it with the stored one (``book``: the rate
    cards, when the caller loaded them already)."""
    async with db.connection() as conn:
        book = book or await db.metering.load_rate_cards(conn)
        stored = await db.reproduction.stored_invoice(conn, number)
    if stored is None:
        raise NoSuchInvoice(f"no invoice {invoice_number(number)}")
    rebuilt = rebuild(stored, book)
    found: list[str]
    try:
        again = figures(draft_invoice(rebuilt.given), number)
    except CloseRefused as exc:
        identical, found = False, [f"cannot be recomputed: {exc}"]
    else:
        identical = canonical_json(again) == canonical_json(stored.figures)
        found = differences(stored.figures, again)
    parts = parts_of(stored)
    now = input_digest(header(stored), parts)
    changed = [] if stored.digest in (None, now) else part_differences(stored.parts, parts)
    if stored.digest not in (None, now) and not changed:
        changed = [
            "every recorded part is as the close recorded it, yet the digest is not theirs: "
            "the recorded digest, or the invoice's header or rate card, changed"
        ]
    f = stored.figures
    return Reproduction(
        number=invoice_number(number),
        org=f.org,
        period=f.period,
        currency=f.currency,
        total=f.total,
        events=rebuilt.events,
        identical=identical,
        differences=tuple(found),
        digest=None if stored.digest is None else stored.digest.hex(),
        digest_now=now.hex(),
        digest_differences=tuple(changed),
        events_changed=rebuilt.event_notes,
    )


async def reproduce_all(db: Database, progress: Progress | None = None) -> list[Reproduction]:
    """Every invoice, in number order (the rate cards loaded once)."""
    async with db.connection() as conn:
        total = await db.reproduction.invoice_count(conn)
        book = await db.metering.load_rate_cards(conn)
    done: list[Reproduction] = []
    after = 0
    while True:
        async with db.connection() as conn:
            numbers = await db.reproduction.invoice_numbers(conn, after, PAGE)
        if not numbers:
            return done
        for number in numbers:
            done.append(await reproduce(db, number, book))
            if progress:
                progress(len(done), max(total, len(done)))
        after = numbers[-1]
