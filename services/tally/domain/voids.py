"""Voids: taking back a metered event. Pure.

A void never removes anything. It posts a **usage reversal**: an entry in the voided event's
own period that credits the usage the event drew and gives the allowance back. In an open
period the close then bills the net usage; in a closed period the reversal is late usage
like any other (negative), and the next close credits it as an adjustment of the period's
invoice. Either way the event is still there, with status ``voided``, and the reversal
carries its key (an auditor walks from the event to both entries).

Rules (the database keeps the first three again, migration 0020):

1. Only a metered event is voided: a non-billable request, a license report or a correction
   was never metered, so there is nothing to take back.
2. An event is voided at most once, forever.
3. A ``tally.void`` event voids only events of its own source (checked when it is rated)
   and of the organization it names (``subject``).
4. AI tokens are taken back as the running total's conversion changes: the tokens of a
   feature are always the conversion of what is used (voided events left out), whatever
   order events and voids came in.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal

from tally.domain.ledger import API_REQUEST, Meter, usage_reversal_entry
from tally.domain.ratecard import RateCardBook
from tally.domain.rating import (
    AS_STORED,
    EVENT_FIELD_BYTES,
    EventKey,
    Posting,
    Rated,
    TotalKey,
    rate,
)


@dataclass(frozen=True)
class VoidRequest:
    """Someone asks to void ``target``: a ``tally.void`` event (``asked_by``, naming the
    organization ``org``) or a person at the CLI (``org`` None: the event says it)."""

    target: EventKey
    reason: str
    requested_by: str
    org: str | None = None
    asked_by: EventKey | None = None


@dataclass(frozen=True)
class Target:
    """What the ledger holds of an event someone asks to void (``raw`` and what rated it:
    the void takes back exactly what the event counted)."""

    key: EventKey
    status: str
    org: str
    period: str
    voided: bool
    raw: bytes = b""
    stream_id: str = ""
    received_at: datetime | None = None
    currency: str = ""
    rate_card_version: str = ""  # the card that metered it: the void prices by it too

    @classmethod
    def of(cls, event: Rated) -> Target:
        """An event of the same batch, not stored yet."""
        return cls(event.key, event.status, event.org, event.period, False)


class VoidRefused(ValueError):
    """A void that cannot be done: ``code`` groups it, ``reason`` says why and what to do."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def shown(key: EventKey) -> str:
    """An event's key as messages write it: ``(source, id)``."""
    return f"({key[0]}, {key[1]})"


def judge(request: VoidRequest, target: Target | None, claimed: Iterable[EventKey] = ()) -> None:
    """Refuse a void the rules forbid; ``claimed``: targets voided earlier in the same batch."""
    key = shown(request.target)
    if target is None:
        raise VoidRefused(
            "void_unknown_event",
            f"event {key} is not in the ledger: it was never metered (not received yet, or "
            "a dead letter); nothing to void. A tally.void kept as a dead letter can be "
            "replayed once the event is metered: `tally dlq replay`",
        )
    if target.status == "correction":
        raise VoidRefused("void_not_metered", f"event {key} is a tally.void: it cannot be voided")
    if target.status != "metered":
        what = "a license report" if target.status == "recorded" else "a non-billable request"
        raise VoidRefused(
            "void_not_metered",
            f"event {key} is {what} ({target.status}): it was never metered, nothing to void",
        )
    if target.voided or request.target in set(claimed):
        raise VoidRefused(
            "already_voided", f"event {key} is already voided: an event is voided once"
        )
    if request.org is not None and request.org != target.org:
        raise VoidRefused(
            "void_other_organization",
            f"event {key} is {target.org}'s, not {request.org}'s: a tally.void's subject is "
            "the voided event's organization",
        )


def rated_again(target: Target, book: RateCardBook) -> Rated:
    """The stored event as metering rated it, from its raw bytes, by the rate card that
    metered it (a card loaded since, effective earlier, never reprices a void)."""
    assert target.received_at is not None, "a stored event has its time of receipt"
    pinned = book.as_metered(target.rate_card_version)
    if pinned is None:
        raise VoidRefused(
            "void_unratable",
            f"event {shown(target.key)} was metered by rate card {target.rate_card_version!r}, "
            "which is not loaded: run `tally ledger verify`",
        )
    result = rate(
        target.stream_id,
        {EVENT_FIELD_BYTES: target.raw},
        {target.org: target.currency},
        pinned,
        AS_STORED,
        target.received_at,
    )
    if not isinstance(result, Rated) or result.rate_card_version != target.rate_card_version:
        raise VoidRefused(
            "void_unratable",
            f"event {shown(target.key)} no longer rates as it was metered: run "
            "`tally ledger verify`",
        )
    return result


def negated(event: Rated) -> Rated:
    """The event with its counts taken back: what a void subtracts from the rollups."""
    api = event.api._replace(requests=-event.api.requests) if event.api else None
    return replace(event, quantity=-event.quantity, api=api)


def reversal_postings(
    voided: Sequence[Rated], book: RateCardBook, totals_after: Mapping[TotalKey, Decimal]
) -> list[Posting]:
    """One usage reversal per voided event (in key order), carrying that event.

    ``totals_after``: each AI running total (org, period, feature, rate card) after all of
    ``voided`` were taken out of it. Walking the events from the total before, each
    reversal takes back the conversion's change, so the reversals of one batch sum to
    ``tokens(after) - tokens(before)`` and the ledger stays the conversion of what is used.
    """
    cards = {card.version: card for card in book.cards}
    running: dict[TotalKey, Decimal] = defaultdict(Decimal)
    ordered = sorted(voided, key=lambda event: event.key)
    for event in ordered:
        if event.meter != API_REQUEST and event.feature is not None:
            running[_total_key(event)] += event.quantity
    for total, taken in running.items():
        running[total] = totals_after[total] + taken  # the total before the batch's voids
    postings = []
    for event in ordered:
        meter: Meter | None = event.meter
        if meter is None:
            continue
        amounts: dict[str | None, Decimal] = {}
        if meter == API_REQUEST:
            amounts[None] = -event.quantity
        elif event.feature is not None:
            card, total = cards[event.rate_card_version], _total_key(event)
            before, after = running[total], running[total] - event.quantity
            amounts[event.feature] = card.tokens(event.feature, after) - card.tokens(
                event.feature, before
            )
            running[total] = after
        digest = hashlib.sha256(f"{event.source}\x1f{event.id}".encode()).hexdigest()
        key = f"usage_reversal/{event.org}/{event.period}/{meter}/{digest[:32]}"
        entry = usage_reversal_entry(
            key, event.org, event.period, meter, amounts, event.rate_card_version
        )
        postings.append(Posting(entry, (event,)))
    return postings


def _total_key(event: Rated) -> TotalKey:
    return (event.org, event.period, event.feature or "", event.rate_card_version)
