"""Closing a period for one organization: its invoice and the entries that post it. Pure.

The close reads the ledger (usage entries per meter), the licensing system's reports and
the commitments, and decides, per meter:

- **grant**: the pooled allocation goes into the period's allowance account;
- **expiry**: what the usage left of it expires (no carryover);
- **overage**: what the usage took beyond it is sold, at the organization's currency price.

Tokens purchased for the period (the AI token pricing page's "purchase additional tokens")
add to the AI allocation of that period only: a **purchase** entry puts them into the
allowance beside the grant and sells them at the organization's token price, on a line of
their own; what usage leaves of them expires with the rest (no carryover).

After these entries the allowance account of the period is exactly zero.

Late usage (usage entries of an already invoiced period that no invoice bills yet) is
rated against that period's allocation: first it takes back what had expired, then it is
overage at that period's unit price. It becomes an adjustment line on this invoice that
references the original one; the original is never rewritten. Voided usage of such a period
(usage reversals, negative) is the same rule run backwards: it gives back overage first,
then expires again, and the adjustment is a credit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Final, Literal

from tally.domain.allocation import (
    ZERO,
    LicenseDay,
    MeterPrice,
    Money,
    Seat,
    allocation,
    billable_users,
    billed_units,
    money,
    price_meter,
    with_commitments,
    with_purchased,
)
from tally.domain.ledger import (
    AI_TOKEN,
    API_REQUEST,
    Charge,
    Entry,
    expiry_entry,
    grant_entry,
    overage_entry,
    purchase_entry,
)
from tally.domain.ratecard import RateCard

InvoiceMeter = Literal["api_requests", "ai_tokens"]
PURCHASED: Final = "ai_tokens_purchased"  # the line of the tokens bought for the period
LineMeter = Literal["api_requests", "ai_tokens", "ai_tokens_purchased"]
METERS: Final[dict[InvoiceMeter, str]] = {"api_requests": API_REQUEST, "ai_tokens": AI_TOKEN}
CLOSE_CHUNK = 500  # organizations a close invoices per transaction (TALLY_CLOSE_CHUNK)
FEATURES_USED = "; used: "  # in the AI line's description, before the tokens per feature


@dataclass(frozen=True)
class Usage:
    """A meter's usage entries for the period, as the ledger holds them."""

    amount: Decimal = ZERO
    entries: tuple[int, ...] = ()
    features: Mapping[str, Decimal] = field(default_factory=dict)  # AI tokens per feature


@dataclass(frozen=True)
class Billed:
    """What invoices already billed for one meter of a closed period."""

    invoice: int
    period: str
    allocation: Decimal
    used: Decimal
    overage: Decimal  # billed units, the original line's and every adjustment's
    unit_price: Decimal
    amount: Decimal  # money billed so far, the original line's and every adjustment's


@dataclass(frozen=True)
class LateUsage:
    meter: InvoiceMeter
    billed: Billed
    amount: Decimal
    entries: tuple[int, ...]


@dataclass(frozen=True)
class CloseInput:
    org: str
    currency: str
    period: str
    card: RateCard
    days: Sequence[LicenseDay]
    commitments: Mapping[Seat, Decimal]
    usage: Mapping[InvoiceMeter, Usage]
    late: Sequence[LateUsage] = ()
    purchased: Decimal = ZERO  # AI tokens bought for the period


@dataclass(frozen=True)
class InvoiceLine:
    meter: LineMeter
    description: str
    priced: MeterPrice
    entries: tuple[int, ...]  # the usage entries this line bills


@dataclass(frozen=True)
class Adjustment:
    """Late usage of an earlier period, billed on this invoice."""

    period: str
    original: int  # the invoice of that period
    meter: InvoiceMeter
    description: str
    used: Decimal  # late units
    unexpired: Decimal  # of them, taken from what had expired
    overage: Decimal  # billed units
    unit_price: Decimal
    amount: Decimal
    entries: tuple[int, ...]  # the late usage entries this adjustment bills


@dataclass(frozen=True)
class ClosePosting:
    """An entry the close posts, and the invoice line (or adjustment) it belongs to."""

    entry: Entry
    meter: LineMeter
    original: int | None = None  # set for an adjustment: the invoice it adjusts


@dataclass(frozen=True)
class InvoiceDraft:
    org: str
    period: str
    currency: str
    rate_card_version: str
    lines: tuple[InvoiceLine, ...]
    adjustments: tuple[Adjustment, ...]
    features: Mapping[str, Decimal]
    postings: tuple[ClosePosting, ...]

    @property
    def total(self) -> Decimal:
        return sum((line.priced.amount for line in self.lines), ZERO) + sum(
            (adjustment.amount for adjustment in self.adjustments), ZERO
        )


def invoice_number(number: int) -> str:
    """How people (and the invoice's JSON) name invoice 42: ``INV-000042``."""
    return f"INV-{number:06d}"


def quantity(value: Decimal) -> str:
    """A quantity for people: thousands separated, no exponent, no trailing zeros."""
    value = value.normalize()
    return f"{value:,.0f}" if value == value.to_integral_value() else f"{value:,f}"


def close_org(given: CloseInput) -> InvoiceDraft:
    """The invoice of one organization for one period, and the entries that post it."""
    card, org, period = given.card, given.org, given.period
    seats = with_commitments(billable_users(given.days), given.commitments)
    seated = allocation(seats, card)
    allocated = with_purchased(seated, given.purchased)
    minor = card.currencies[given.currency]
    lines, postings = [], []
    for meter, unit in METERS.items():
        usage = given.usage.get(meter, Usage())
        if meter == "api_requests":
            granted, allowed = seated.api_requests, allocated.api_requests
            price, whole = card.api.price, "none"
            per = {seat: Decimal(card.api.allocation[seat[0]][seat[1]]) for seat in seats}
            label, bought = "API requests", ""
        else:
            granted, allowed = seated.ai_tokens, allocated.ai_tokens
            price, whole = card.ai.price, card.ai.overage_whole_tokens
            per = {seat: Decimal(card.ai.allocation.get(seat[1], 0)) for seat in seats}
            label = "AI Experience tokens"
            bought = f"; purchased {quantity(given.purchased)}" if given.purchased else ""
        priced = price_meter(allowed, usage.amount, price[given.currency], minor, whole)
        description = f"{label} beyond the allocation ({_seats(seats, per)}{bought})"
        if meter == "ai_tokens" and usage.features:
            used = ", ".join(f"{f} {quantity(t)}" for f, t in sorted(usage.features.items()))
            description += FEATURES_USED + used
        lines.append(InvoiceLine(meter, description, priced, usage.entries))
        key = f"close/{org}/{period}/{unit}"
        if granted:
            entry = grant_entry(f"{key}/grant", org, period, unit, granted, card.version)
            postings.append(ClosePosting(entry, meter))
        if bought:
            line, posting = _purchase(given, minor)
            lines.append(line)
            postings.append(posting)
        if priced.expired:
            entry = expiry_entry(f"{key}/expiry", org, period, unit, priced.expired, card.version)
            postings.append(ClosePosting(entry, meter))
        if priced.deficit:
            charge = Charge(given.currency, period, priced.money.exact, priced.amount)
            entry = overage_entry(
                f"{key}/overage",
                org,
                period,
                unit,
                priced.deficit,
                priced.overage,
                charge,
                card.version,
            )
            postings.append(ClosePosting(entry, meter))
    adjustments = []
    for late in sorted(given.late, key=lambda item: (item.billed.period, item.meter)):
        adjustment, entries = _adjust(given, late, minor)
        adjustments.append(adjustment)
        postings.extend(ClosePosting(entry, late.meter, late.billed.invoice) for entry in entries)
    features = given.usage.get("ai_tokens", Usage()).features
    return InvoiceDraft(
        org,
        period,
        given.currency,
        card.version,
        tuple(lines),
        tuple(adjustments),
        dict(features),
        tuple(postings),
    )


def _purchase(given: CloseInput, minor: int) -> tuple[InvoiceLine, ClosePosting]:
    """The line of the tokens bought for the period, at the organization's token price,
    and the entry that puts them into the allowance and sells them."""
    tokens, card = given.purchased, given.card
    unit_price = card.ai.price[given.currency]
    sold = money(tokens, unit_price, minor)
    priced = MeterPrice(
        allocation=tokens, used=ZERO, overage=ZERO, expired=ZERO, unit_price=unit_price, money=sold
    )
    description = f"AI Experience tokens purchased for {given.period}: {quantity(tokens)}"
    charge = Charge(given.currency, given.period, sold.exact, sold.amount)
    entry = purchase_entry(
        f"close/{given.org}/{given.period}/{AI_TOKEN}/purchase",
        given.org,
        given.period,
        tokens,
        charge,
        card.version,
    )
    return InvoiceLine(PURCHASED, description, priced, ()), ClosePosting(entry, PURCHASED)


def _counted(amount: Decimal, unit: str) -> str:
    """``1 request``, ``2 requests``, ``0.5 tokens``."""
    return f"{quantity(amount)} {unit}" + ("" if amount == 1 else "s")


def _seats(seats: Mapping[Seat, Decimal], per: Mapping[Seat, Decimal]) -> str:
    shown = [
        f"{lic} {model} {quantity(count)} x {quantity(per[(lic, model)])}"
        for (lic, model), count in sorted(seats.items())
        if count and per[(lic, model)]
    ]
    return "; ".join(shown) or "no licensed users"


def _adjust(given: CloseInput, late: LateUsage, minor: int) -> tuple[Adjustment, list[Entry]]:
    """Late units take back expired allocation first, then are overage at the old price."""
    billed, unit = late.billed, METERS[late.meter]
    whole = "none" if late.meter == "api_requests" else given.card.ai.overage_whole_tokens
    before, after = billed.used, billed.used + late.amount
    unexpired = max(billed.allocation - before, ZERO) - max(billed.allocation - after, ZERO)
    deficit = max(after - billed.allocation, ZERO) - max(before - billed.allocation, ZERO)
    units = billed_units(max(after - billed.allocation, ZERO), whole) - billed.overage
    # the period's overage money is rounded once, as a whole: each adjustment bills what the
    # rounded total grew by, so a series of small late amounts never drifts from it
    total = money(billed.overage + units, billed.unit_price, minor).amount
    charge = Money(units * billed.unit_price, total - billed.amount)
    label = "request" if late.meter == "api_requests" else "token"
    if late.amount > 0:
        description = (
            f"late usage for {billed.period}: {_counted(late.amount, label)}, "
            f"{quantity(unexpired)} from the expired allocation, {quantity(units)} over"
        )
    elif late.amount < 0:  # voided usage: what it credits, then what expires again
        parts = [f"voided usage for {billed.period}: {_counted(-late.amount, label)} taken back"]
        if units:
            parts.append(f"{quantity(-units)} over credited")
        if unexpired:
            parts.append(f"{quantity(-unexpired)} expired again")
        description = ", ".join(parts)
    else:
        description = f"late usage and voids for {billed.period} cancel out: nothing to bill"
    key = f"adjust/{given.org}/{billed.period}/{unit}/on-{given.period}"
    entries = []
    if unexpired:
        entries.append(
            expiry_entry(
                f"{key}/expiry_reversal",
                given.org,
                billed.period,
                unit,
                -unexpired,
                given.card.version,
            )
        )
    if deficit:
        entries.append(
            overage_entry(
                f"{key}/overage",
                given.org,
                billed.period,
                unit,
                deficit,
                units,
                Charge(given.currency, given.period, charge.exact, charge.amount),
                given.card.version,
            )
        )
    adjustment = Adjustment(
        billed.period,
        billed.invoice,
        late.meter,
        description,
        late.amount,
        unexpired,
        units,
        billed.unit_price,
        charge.amount,
        late.entries,
    )
    return adjustment, entries
