"""Reproducible invoices: an invoice recomputed from the stored raw events alone, through the
close's own rules, and its input digest. Pure.

- **The input digest** (docs: the month close, "Reproducible invoices") is a SHA-256 over
  the invoice's header (number, organization, period, currency, rate card version and the
  SHA-256 of the card's canonical body) and its *parts*: per line and adjustment the events
  it bills (key, SHA-256 of the raw bytes, sign), the license reports, the commitments and
  the token purchases. Every value is a *field*: its bytes (text in UTF-8) after their
  length as 4 bytes big-endian, so no value can pass for two. A part's SHA-256 is over its
  records sorted bytewise; the digest names each part with its item count, so a difference
  points at the part that changed.
- **Reproducing** rates each billed event again from its raw bytes, adds them up per meter
  and feature as metering posted them (AI tokens: the conversion of the running quantity
  after, less before, per feature), rebuilds the close's input and lets ``close_org`` draw
  the invoice again; its figures, in the canonical JSON below, must be the stored ones
  byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, cast

from tally.domain.allocation import LicenseDay, Seat
from tally.domain.invoicing import (
    METERS,
    Billed,
    CloseInput,
    InvoiceDraft,
    InvoiceMeter,
    LateUsage,
    Usage,
    invoice_number,
    quantity,
)
from tally.domain.ledger import API_REQUEST
from tally.domain.ratecard import LicenseModel, LicenseName, RateCard, RateCardBook
from tally.domain.rating import AS_STORED, EVENT_FIELD_BYTES, Rated, rate

FORM: Final = "tally invoice input 1"  # the digest's first field: its byte form's version
LICENSE_PART: Final = "license reports"
NOT_BILLED_PART: Final = "not billed"  # the period's requests of a client kind not billable
COMMITMENT_PART: Final = "commitments"
PURCHASE_PART: Final = "token purchases"


def field(value: str | bytes) -> bytes:
    """One value of the byte form: its length (4 bytes, big-endian), then its bytes."""
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(4, "big") + data


def number_text(value: Decimal) -> str:
    """A decimal as the digest and the canonical JSON write it: plain digits, no exponent."""
    return format(value, "f")


def line_part(meter: str) -> str:
    return f"line {meter}"


def adjustment_part(original: int, meter: str) -> str:
    return f"adjustment {invoice_number(original)} {meter}"


FIXED_PARTS: Final = (
    *(line_part(meter) for meter in METERS),
    LICENSE_PART,
    NOT_BILLED_PART,
    COMMITMENT_PART,
    PURCHASE_PART,
)


@dataclass(frozen=True)
class Part:
    """What one part of the digest covers: its name, how many records, their SHA-256."""

    name: str
    items: int
    sha256: bytes


def part(name: str, records: Iterable[bytes]) -> Part:
    ordered = sorted(records)
    return Part(name, len(ordered), hashlib.sha256(b"".join(ordered)).digest())


def every_part(parts: Iterable[Part]) -> list[Part]:
    """The parts by name, with the fixed ones (both lines, license reports, the requests not
    billed, commitments, purchases) present even when empty."""
    named = {p.name: p for p in parts}
    for name in FIXED_PARTS:
        named.setdefault(name, part(name, ()))
    return [named[name] for name in sorted(named)]


@dataclass(frozen=True)
class Header:
    number: int
    org: str
    period: str
    currency: str
    rate_card_version: str
    card_sha256: bytes  # of the card's canonical body (``card_sha256``)


def card_sha256(body: str) -> bytes:
    """SHA-256 of a rate card's canonical body: its stored JSON with sorted keys, no
    spaces, non-ASCII as is (UTF-8)."""
    canonical = json.dumps(
        json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode()).digest()


def input_digest(header: Header, parts: Iterable[Part]) -> bytes:
    data = b"".join(
        field(value)
        for value in (
            FORM,
            invoice_number(header.number),
            header.org,
            header.period,
            header.currency,
            header.rate_card_version,
            header.card_sha256,
        )
    )
    for each in every_part(parts):
        data += field(each.name) + field(str(each.items)) + field(each.sha256)
    return hashlib.sha256(data).digest()


@dataclass(frozen=True)
class RawEvent:
    """A stored event as reproduce reads it: its key, its exact bytes, where it is billed
    and what metering recorded of it (only to name an event whose bytes changed)."""

    source: str
    id: str
    raw: bytes
    received_at: datetime
    invoice: int = 0  # the invoice whose line or adjustment bills it (0: a license report)
    meter: str = ""  # that line's or adjustment's meter
    original: int | None = None  # set: billed by an adjustment of that invoice
    sign: int = 1  # -1: the event is taken back (carried by a reversal)
    entry_id: int | None = None
    rate_card_version: str | None = None  # the card that metered it (a billed event)
    recorded: tuple[str | None, str | None, Decimal] | None = None  # meter, feature, quantity

    @property
    def key(self) -> str:
        return f"({self.source}, {self.id})"


def event_record(event: RawEvent) -> bytes:
    return (
        field(event.source)
        + field(event.id)
        + field(hashlib.sha256(event.raw).digest())
        + field(str(event.sign))
    )


def raw_record(event: RawEvent) -> bytes:
    """An event by its key and raw bytes (a license report, a request not billed)."""
    return field(event.source) + field(event.id) + field(hashlib.sha256(event.raw).digest())


@dataclass(frozen=True)
class Commitment:
    id: int
    license: str
    model: str
    quantity: Decimal
    from_period: str


def commitment_record(commitment: Commitment) -> bytes:
    return b"".join(
        field(value)
        for value in (
            str(commitment.id),
            commitment.license,
            commitment.model,
            number_text(commitment.quantity),
            commitment.from_period,
        )
    )


@dataclass(frozen=True)
class Purchase:
    id: int
    tokens: Decimal


def purchase_record(purchase: Purchase) -> bytes:
    return field(str(purchase.id)) + field(number_text(purchase.tokens))


@dataclass(frozen=True)
class LineFigures:
    meter: str
    description: str
    allocation: Decimal
    used: Decimal
    overage: Decimal
    expired: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class AdjustmentFigures:
    period: str
    original: int
    meter: str
    description: str
    used: Decimal
    unexpired: Decimal
    overage: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass(frozen=True)
class InvoiceFigures:
    """What an invoice says: everything reproduce compares (not its seal, not its status)."""

    number: int
    org: str
    period: str
    currency: str
    rate_card_version: str
    lines: tuple[LineFigures, ...]
    adjustments: tuple[AdjustmentFigures, ...]
    features: Mapping[str, Decimal]
    total: Decimal


def figures(draft: InvoiceDraft, number: int) -> InvoiceFigures:
    return InvoiceFigures(
        number,
        draft.org,
        draft.period,
        draft.currency,
        draft.rate_card_version,
        tuple(
            LineFigures(
                line.meter,
                line.description,
                line.priced.allocation,
                line.priced.used,
                line.priced.overage,
                line.priced.expired,
                line.priced.unit_price,
                line.priced.amount,
            )
            for line in draft.lines
        ),
        tuple(
            AdjustmentFigures(
                a.period,
                a.original,
                a.meter,
                a.description,
                a.used,
                a.unexpired,
                a.overage,
                a.unit_price,
                a.amount,
            )
            for a in draft.adjustments
        ),
        dict(draft.features),
        draft.total,
    )


def _quantity(value: Decimal) -> str:
    """Units as the invoice's JSON shows them: without the scale's trailing zeros."""
    return number_text(value.normalize()) if value else "0"


LINE_ORDER: Final = {"api_requests": 0, "ai_tokens": 1}  # then the purchased tokens' line


def canonical(figured: InvoiceFigures) -> dict[str, object]:
    """The invoice as JSON: decimals as strings (units without trailing zeros, money at its
    stored scale), lines as ``tally invoice show`` orders them, adjustments by period and
    meter, features by name."""
    lines = sorted(figured.lines, key=lambda line: LINE_ORDER.get(line.meter, 2))
    adjustments = sorted(figured.adjustments, key=lambda a: (a.period, a.meter))
    return {
        "number": invoice_number(figured.number),
        "org": figured.org,
        "period": figured.period,
        "currency": figured.currency,
        "rate_card_version": figured.rate_card_version,
        "lines": [
            {
                "meter": line.meter,
                "description": line.description,
                "allocation": _quantity(line.allocation),
                "used": _quantity(line.used),
                "overage": _quantity(line.overage),
                "expired": _quantity(line.expired),
                "unit_price": number_text(line.unit_price),
                "amount": number_text(line.amount),
            }
            for line in lines
        ],
        "adjustments": [
            {
                "period": a.period,
                "invoice": invoice_number(a.original),
                "meter": a.meter,
                "description": a.description,
                "used": _quantity(a.used),
                "unexpired": _quantity(a.unexpired),
                "overage": _quantity(a.overage),
                "unit_price": number_text(a.unit_price),
                "amount": number_text(a.amount),
            }
            for a in adjustments
        ],
        "features": {name: _quantity(figured.features[name]) for name in sorted(figured.features)},
        "total": number_text(figured.total),
    }


def canonical_json(figured: InvoiceFigures) -> bytes:
    return json.dumps(canonical(figured), separators=(",", ":"), ensure_ascii=False).encode()


Row = dict[str, str]


def differences(stored: InvoiceFigures, reproduced: InvoiceFigures) -> list[str]:
    """Each field that differs, named: which line or adjustment, stored vs reproduced."""
    ours, theirs = canonical(stored), canonical(reproduced)
    found = [
        f"{name}: stored {ours[name]}, reproduced {theirs[name]}"
        for name in ("number", "org", "period", "currency", "rate_card_version", "total")
        if ours[name] != theirs[name]
    ]
    for kind, rows, key in (
        ("line", "lines", ("meter",)),
        ("adjustment", "adjustments", ("invoice", "meter")),
    ):
        found += _rows(kind, key, cast(list[Row], ours[rows]), cast(list[Row], theirs[rows]))
    features = [cast(Row, ours["features"])], [cast(Row, theirs["features"])]
    return found + _rows("feature", (), *features)


def _rows(kind: str, key: tuple[str, ...], stored: list[Row], reproduced: list[Row]) -> list[str]:
    """The fields that differ of the rows matched by ``key`` (none: one row)."""

    def keyed(rows: list[Row]) -> dict[str, Row]:
        return {" ".join((kind, *(row[name] for name in key))): row for row in rows}

    ours, theirs = keyed(stored), keyed(reproduced)
    found = []
    for label in sorted(set(ours) | set(theirs)):
        if label not in theirs:
            found.append(f"{label}: stored, not reproduced")
        elif label not in ours:
            found.append(f"{label}: reproduced, not stored")
        else:
            for column in sorted(set(ours[label]) | set(theirs[label])):
                was, now = ours[label].get(column, "-"), theirs[label].get(column, "-")
                if was != now:
                    found.append(f"{label} {column}: stored {was}, reproduced {now}")
    return found


@dataclass(frozen=True)
class StoredInvoice:
    """An invoice and everything reproduce reads for it, as stored."""

    figures: InvoiceFigures
    recorded_at: datetime  # when the close wrote it (the database's clock)
    card_body: str  # the rate card's stored JSON
    digest: bytes | None  # None: issued before invoices carried one (migration 0021)
    parts: tuple[Part, ...]  # what the digest covered
    billed: tuple[RawEvent, ...]  # the events its lines and adjustments bill
    earlier: tuple[RawEvent, ...]  # per adjustment: what its period's meter billed before
    license_reports: tuple[RawEvent, ...]
    not_billed: tuple[RawEvent, ...]  # the period's requests of a kind not billable
    commitments: tuple[Commitment, ...]  # recorded before the invoice, from its period on
    in_force: Mapping[Seat, Decimal]  # of them, what the close counts (newest per seat)
    purchases: tuple[Purchase, ...]
    billed_before: Mapping[tuple[int, InvoiceMeter], Billed]  # per adjustment, as it was


def header(stored: StoredInvoice) -> Header:
    f = stored.figures
    return Header(
        f.number, f.org, f.period, f.currency, f.rate_card_version, card_sha256(stored.card_body)
    )


def parts_of(stored: StoredInvoice) -> list[Part]:
    """The digest's parts recomputed from the stored raw bytes and records."""
    grouped: dict[str, list[bytes]] = defaultdict(list)
    for event in stored.billed:
        name = (
            line_part(event.meter)
            if event.original is None
            else adjustment_part(event.original, event.meter)
        )
        grouped[name].append(event_record(event))
    grouped[LICENSE_PART] = [raw_record(e) for e in stored.license_reports]
    grouped[NOT_BILLED_PART] = [raw_record(e) for e in stored.not_billed]
    grouped[COMMITMENT_PART] = [commitment_record(c) for c in stored.commitments]
    grouped[PURCHASE_PART] = [purchase_record(p) for p in stored.purchases]
    return every_part(part(name, records) for name, records in grouped.items())


def part_differences(stored: Sequence[Part], now: Sequence[Part]) -> list[str]:
    """The parts whose records changed since the close: their names and item counts."""
    before, after = {p.name: p for p in stored}, {p.name: p for p in now}
    found = []
    for name in sorted(set(before) | set(after)):
        was, is_now = before.get(name), after.get(name)
        if was is None:
            found.append(f"{name}: not covered by the recorded digest")
        elif is_now is None:
            found.append(f"{name}: covered by the recorded digest, absent now")
        elif was != is_now:
            found.append(f"{name} changed ({was.items} at the close, {is_now.items} now)")
    return found


@dataclass(frozen=True)
class Rebuilt:
    """The close's input rebuilt from raw bytes, and what did not rate as it was metered."""

    given: CloseInput
    events: int  # billed events rated again
    event_notes: tuple[str, ...]


def rebuild(stored: StoredInvoice, book: RateCardBook) -> Rebuilt:
    """The close's input for this invoice, from the raw bytes of its events and reports."""
    f = stored.figures
    cards = {card.version: card for card in book.cards}
    notes: list[str] = []

    def rated(events: Iterable[RawEvent], period: str) -> list[tuple[RawEvent, Rated]]:
        return _rated(events, (f.org, f.currency, period), book, notes)

    periods = {(o, m): b.period for (o, m), b in stored.billed_before.items()}
    own = [e for e in stored.billed if e.original is None]
    late_events = [e for e in stored.billed if e.original is not None]
    usage = {
        meter: _usage(meter, rated([e for e in own if e.meter == meter], f.period), [], cards)
        for meter in METERS
    }
    late = []
    for (original, meter), billed in sorted(stored.billed_before.items()):
        period = periods[(original, meter)]
        now = rated([e for e in late_events if (e.original, e.meter) == (original, meter)], period)
        before = rated(
            [e for e in stored.earlier if (e.original or e.invoice, e.meter) == (original, meter)],
            period,
        )
        used = _usage(meter, now, before, cards)
        late.append(LateUsage(meter, billed, used.amount, used.entries))
    days = [
        LicenseDay(
            cast(LicenseName, r.license.license),
            cast(LicenseModel, r.license.model),
            r.day,
            r.license.users,
            r.license.hours,
        )
        for _, r in rated(stored.license_reports, f.period)
        if r.license is not None
    ]
    rated(stored.not_billed, f.period)  # each still rates as not billable, or is named
    given = CloseInput(
        org=f.org,
        currency=f.currency,
        period=f.period,
        card=cards[f.rate_card_version],
        days=days,
        commitments=stored.in_force,
        usage=usage,
        late=late,
        purchased=sum((p.tokens for p in stored.purchases), Decimal(0)),
    )
    return Rebuilt(given, len(stored.billed), tuple(notes))


def _rated(
    events: Iterable[RawEvent],
    billed: tuple[str, str, str],
    book: RateCardBook,
    notes: list[str],
) -> list[tuple[RawEvent, Rated]]:
    """Each event rated again from its raw bytes (as stored, whatever the limits said), for
    ``billed`` (organization, its currency, the period billed); what no longer rates, or
    rates as another event, organization, period or count than metered goes to ``notes``."""
    org, currency, period = billed
    # each event by the card that metered it: a card loaded since, in effect at its time
    # now, is not how it was rated (nor how the close billed it)
    out = []
    for event in events:
        # the stream id is not in the raw bytes (and not rated): any will do
        fields = {EVENT_FIELD_BYTES: event.raw}
        by = book.as_metered(event.rate_card_version or "") or book
        again = rate("0-0", fields, {org: currency}, by, AS_STORED, event.received_at)
        if not isinstance(again, Rated):
            notes.append(f"event {event.key} no longer rates: {again.reason}")
            continue
        said = (again.source, again.id, again.org, again.period)
        if said != (event.source, event.id, org, period):
            notes.append(
                f"event {event.key}: its raw bytes now say event ({again.source}, "
                f"{again.id}) of {again.org} for {again.period}"
            )
        counted = (again.meter, again.feature, again.quantity)
        if event.recorded is not None and event.recorded != counted:
            how = "metered" if event.recorded[0] is not None else "recorded"
            notes.append(
                f"event {event.key}: its raw bytes now say {_counted(*counted)}, it was "
                f"{how} as {_counted(*event.recorded)}"
            )
        out.append((event, again))
    return out


def _counted(meter: str | None, feature: str | None, amount: Decimal) -> str:
    """What an event counts, for people: ``1,500,000 requests``, ``3.5 voice_bot``, ``20 not
    billed (...)``: a request not billable and a license report meter nothing."""
    if meter == API_REQUEST:
        return f"{quantity(amount)} requests"
    if feature is not None:
        return f"{quantity(amount)} {feature}"
    return f"{quantity(amount)}, not billed (a request not billable, or a license report)"


def _usage(
    meter: InvoiceMeter,
    events: Sequence[tuple[RawEvent, Rated]],
    before: Sequence[tuple[RawEvent, Rated]],
    cards: Mapping[str, RateCard],
) -> Usage:
    """What ``events`` add to a meter, as metering posted them: API requests their counts;
    AI tokens per feature the conversion of the running quantity after them less before
    them (``before``: what earlier invoices billed of the same period), taken back events
    (sign -1) counting negatively."""
    entries = tuple(sorted({e.entry_id for e, _ in events if e.entry_id is not None}))
    unit = METERS[meter]
    if unit == API_REQUEST:
        amount = sum((e.sign * r.quantity for e, r in events if r.meter == unit), Decimal(0))
        return Usage(amount, entries)
    quantities: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [Decimal(0), Decimal(0)])
    for index, group in enumerate((before, events)):
        for event, again in group:
            if again.meter == unit and again.feature is not None:
                # converted by the card that metered it, as its entry was (a card loaded
                # since may be in effect at its time now)
                version = event.rate_card_version or again.rate_card_version
                quantities[(again.feature, version)][index] += event.sign * again.quantity
    features: dict[str, Decimal] = defaultdict(Decimal)
    for (feature, version), (earlier, added) in sorted(quantities.items()):
        if not any(r.feature == feature for _, r in events):
            continue
        card = cards[version]
        features[feature] += card.tokens(feature, earlier + added) - card.tokens(feature, earlier)
    return Usage(sum(features.values(), Decimal(0)), entries, dict(features))
