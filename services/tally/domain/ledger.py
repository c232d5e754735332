"""Ledger vocabulary and posting rules.

Vocabulary (used the same way everywhere):

- **unit**: what an amount counts: ``api_request``, ``ai_token``, or a currency code.
- **account**: a named balance in one unit, owned by an organization or the platform,
  usually for one billing **period** (``YYYY-MM``).
- **entry**: one journal entry, a set of **lines** (account, signed amount). Positive is
  a debit, negative a credit.
- **lane**: one of a few hash chains entries are appended to; writers take any free lane,
  so the chain is tamper-evident without serialising every writer into one queue.
- **usage reversal**: a void's entry, taking back one metered event's usage in its period.
- **allowance**: what an organization may use in a period; usage draws it, the close's
  **grant** fills it with the **allocation**, **expiry** removes what is left unused (no
  carryover) and **overage** sells what was used beyond it, into a **receivable**.

Invariants (kept by PostgreSQL, checked again by ``tally ledger verify``):

1. Every entry's lines sum to zero per unit.
2. Posted entries, lines and metered events are never updated or deleted.
3. An idempotency key posts at most one entry.
4. Each entry's hash covers its lane predecessor's hash, its own fields, its lines and
   the events it carries: a changed, removed or inserted row breaks the chain.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Final, Literal

PLATFORM = "platform"
# An organization's name is a segment of its account codes: no '/', and never "platform".
ORG_NAME = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
API_REQUEST: Final = "api_request"
AI_TOKEN: Final = "ai_token"
Meter = Literal["api_request", "ai_token"]
GENESIS_HASH = bytes(32)


@dataclass(frozen=True, order=True)
class Account:
    """An account, named by its code ``owner/period/unit/kind[/feature]``."""

    owner: str
    period: str | None
    unit: str
    kind: str
    feature: str | None = None

    @property
    def code(self) -> str:
        parts = [
            "org/" + self.owner if self.owner != PLATFORM else PLATFORM,
            self.period,
            self.unit,
            self.kind,
            self.feature,
        ]
        return "/".join(part for part in parts if part)


def allowance(org: str, period: str, unit: str) -> Account:
    """What the organization may still use this period: granted at close, drawn by usage."""
    return Account(org, period, unit, "allowance")


def usage(org: str, period: str, unit: str, feature: str | None = None) -> Account:
    """What the organization used this period (AI tokens per feature)."""
    return Account(org, period, unit, "usage", feature)


@dataclass(frozen=True)
class Line:
    account: Account
    amount: Decimal


@dataclass(frozen=True)
class Entry:
    key: str  # idempotency key
    kind: str
    org: str | None
    period: str | None
    rate_card_version: str | None
    lines: tuple[Line, ...]


class UnbalancedEntry(ValueError):
    pass


def imbalance(lines: Iterable[Line]) -> dict[str, Decimal]:
    """Per unit, what the lines fail to sum to zero by (empty when balanced)."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for line in lines:
        totals[line.account.unit] += line.amount
    return {unit: total for unit, total in totals.items() if total != 0}


def usage_entry(
    key: str,
    org: str,
    period: str,
    meter: Meter,
    amounts: dict[str | None, Decimal],
    rate_card_version: str,
) -> Entry:
    """Usage draws the allowance: debit usage (per AI feature), credit the allowance."""
    return _usage_lines(key, "usage", org, period, meter, amounts, rate_card_version)


def usage_reversal_entry(
    key: str,
    org: str,
    period: str,
    meter: Meter,
    amounts: dict[str | None, Decimal],
    rate_card_version: str,
) -> Entry:
    """A void takes usage back (``amounts`` are negative): credit usage, refill the
    allowance, in the voided event's period."""
    return _usage_lines(key, "usage_reversal", org, period, meter, amounts, rate_card_version)


def _usage_lines(
    key: str,
    kind: str,
    org: str,
    period: str,
    meter: Meter,
    amounts: dict[str | None, Decimal],
    rate_card_version: str,
) -> Entry:
    lines = [
        Line(usage(org, period, meter, feature), amount) for feature, amount in amounts.items()
    ]
    lines.append(Line(allowance(org, period, meter), -sum(amounts.values(), Decimal(0))))
    return _balanced(Entry(key, kind, org, period, rate_card_version, tuple(lines)))


def _balanced(entry: Entry) -> Entry:
    if imbalance(entry.lines):
        raise UnbalancedEntry(f"{entry.key}: {imbalance(entry.lines)}")
    return entry


def _entry(key: str, kind: str, org: str, period: str, version: str, lines: list[Line]) -> Entry:
    """A close entry; lines of zero (no rounding, say) are left out."""
    kept = tuple(line for line in lines if line.amount != 0)
    return _balanced(Entry(key, kind, org, period, version, kept))


def grant_entry(key: str, org: str, period: str, unit: str, amount: Decimal, version: str) -> Entry:
    """The period's allocation, issued by the platform into the allowance."""
    return _entry(
        key,
        "grant",
        org,
        period,
        version,
        [
            Line(allowance(org, period, unit), amount),
            Line(Account(PLATFORM, period, unit, "granted"), -amount),
        ],
    )


def expiry_entry(
    key: str, org: str, period: str, unit: str, amount: Decimal, version: str
) -> Entry:
    """Unused allocation expires at the close (no carryover); a negative ``amount`` reverses
    an expiry, when late usage draws on what had expired."""
    return _entry(
        key,
        "expiry" if amount >= 0 else "expiry_reversal",
        org,
        period,
        version,
        [
            Line(allowance(org, period, unit), -amount),
            Line(Account(PLATFORM, period, unit, "expired"), amount),
        ],
    )


@dataclass(frozen=True)
class Charge:
    """The money of an overage: billed on the invoice of ``invoice_period``."""

    currency: str
    invoice_period: str
    exact: Decimal  # billed units * unit price
    amount: Decimal  # rounded on the invoice line


def overage_entry(
    key: str,
    org: str,
    period: str,
    unit: str,
    deficit: Decimal,
    billed: Decimal,
    charge: Charge,
    version: str,
) -> Entry:
    """Usage beyond the allocation is sold: the deficit clears the allowance, the billed
    units (whole AI tokens) are the platform's sale, and the money goes into the
    organization's receivable and the platform's revenue. What rounding adds to units or
    money goes to its own account, so every line stays exact."""
    return _entry(
        key,
        "overage",
        org,
        period,
        version,
        [
            Line(allowance(org, period, unit), deficit),
            Line(Account(PLATFORM, period, unit, "overage"), -billed),
            Line(Account(PLATFORM, period, unit, "unit_rounding"), billed - deficit),
            *_sale(org, period, unit, charge),
        ],
    )


def purchase_entry(
    key: str, org: str, period: str, tokens: Decimal, charge: Charge, version: str
) -> Entry:
    """AI tokens bought for the period: they fill the allowance beside the grant (so what
    is left of them expires at the close like the rest) and are sold like overage."""
    return _entry(
        key,
        "purchase",
        org,
        period,
        version,
        [
            Line(allowance(org, period, AI_TOKEN), tokens),
            Line(Account(PLATFORM, period, AI_TOKEN, "purchased"), -tokens),
            *_sale(org, period, AI_TOKEN, charge),
        ],
    )


def _sale(org: str, period: str, unit: str, charge: Charge) -> list[Line]:
    """The money of a sale of ``unit``: the rounded amount into the receivable of the
    invoice's period, the exact money to revenue, the difference to rounding."""
    cur, at = charge.currency, charge.invoice_period
    return [
        Line(Account(org, at, cur, "receivable"), charge.amount),
        Line(Account(PLATFORM, period, cur, "revenue", unit), -charge.exact),
        Line(Account(PLATFORM, period, cur, "rounding"), charge.exact - charge.amount),
    ]


def canonical_amount(amount: Decimal) -> str:
    """One spelling per value (``1.50`` and ``1.5`` hash the same)."""
    return format(amount.normalize(), "f") if amount else "0"


CarriedEvent = tuple[str, str, bytes]  # (source, id, sha256 of the event's raw bytes)


def events_digest(events: Iterable[CarriedEvent]) -> bytes:
    """Digest of the events an entry carries (keys and exact bytes), order-free."""
    digest = hashlib.sha256()
    for source, event_id, raw_hash in sorted(events):
        digest.update(f"{source}\x1f{event_id}\x1f".encode() + raw_hash + b"\x1e")
    return digest.digest()


def chain_hash(
    prev_hash: bytes,
    lane: int,
    seq: int,
    posted_at: datetime,
    entry: Entry,
    lines: Iterable[tuple[str, Decimal]],
    carried: bytes,
) -> bytes:
    """The entry's link in its lane: prev hash, fields, lines (account code, amount), events."""
    digest = hashlib.sha256(prev_hash)
    fields = (
        str(lane),
        str(seq),
        posted_at.isoformat(),
        entry.key,
        entry.kind,
        entry.org or "",
        entry.period or "",
        entry.rate_card_version or "",
    )
    digest.update("\x1f".join(fields).encode())
    for code, amount in sorted((code, canonical_amount(amount)) for code, amount in lines):
        digest.update(f"\x1e{code}\x1f{amount}".encode())
    digest.update(carried)
    return digest.digest()
