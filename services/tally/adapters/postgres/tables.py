"""SQLModel tables: the ledger's rows as Python sees them.

The DDL, with the triggers that keep the invariants, is the Alembic migration in
``migrations/``; ``tests/test_schema.py`` checks both describe the same tables.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, LargeBinary, Numeric, Text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TIMESTAMP
from sqlmodel import Field, SQLModel


def _ts(**kwargs: Any) -> Any:
    return Field(sa_column=Column(TIMESTAMP(timezone=True), **kwargs))


def _num(**kwargs: Any) -> Any:
    return Field(sa_column=Column(Numeric, **kwargs))


def _bytes(**kwargs: Any) -> Any:
    return Field(sa_column=Column(LargeBinary, **kwargs))


class RateCardRow(SQLModel, table=True):
    __tablename__ = "rate_card"
    version: str = Field(primary_key=True)
    effective_from: datetime = _ts(nullable=False)
    body: dict[str, Any] = Field(sa_column=Column(JSONB, nullable=False))
    loaded_at: datetime = _ts(nullable=False)


class Organization(SQLModel, table=True):
    __tablename__ = "organization"
    name: str = Field(primary_key=True)
    currency: str
    created_at: datetime = _ts(nullable=False)


class AccountRow(SQLModel, table=True):
    __tablename__ = "account"
    id: int | None = Field(default=None, primary_key=True)
    code: str = Field(unique=True)
    owner: str
    period: str | None = None
    unit: str
    kind: str
    feature: str | None = None


class LedgerLane(SQLModel, table=True):
    __tablename__ = "ledger_lane"
    lane: int = Field(primary_key=True)
    seq: int
    head_hash: bytes = _bytes(nullable=False)


class JournalEntry(SQLModel, table=True):
    __tablename__ = "journal_entry"
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    kind: str
    org: str | None = Field(default=None, foreign_key="organization.name")
    period: str | None = None
    rate_card_version: str | None = Field(default=None, foreign_key="rate_card.version")
    posted_at: datetime = _ts(nullable=False)
    lane: int = Field(foreign_key="ledger_lane.lane")
    seq: int
    prev_hash: bytes = _bytes(nullable=False)
    hash: bytes = _bytes(nullable=False)


class EntryLine(SQLModel, table=True):
    __tablename__ = "entry_line"
    id: int | None = Field(default=None, primary_key=True)
    entry_id: int = Field(foreign_key="journal_entry.id")
    account_id: int = Field(foreign_key="account.id")
    amount: Decimal = _num(nullable=False)


class UsageEvent(SQLModel, table=True):
    __tablename__ = "usage_event"
    source: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    type: str
    org: str
    event_time: datetime = _ts(nullable=False)
    period: str
    status: str
    meter: str | None = None
    feature: str | None = None
    quantity: Decimal = _num(nullable=False)
    rate_card_version: str
    raw: bytes = _bytes(nullable=False)
    stream: str
    stream_id: str
    received_at: datetime = _ts(nullable=False)
    entry_id: int | None = None


class LicenseUsage(SQLModel, table=True):
    __tablename__ = "license_usage"
    source: str = Field(primary_key=True)
    id: str = Field(primary_key=True)
    org: str
    period: str
    day: date
    license: str
    model: str
    users: int | None = None
    hours: Decimal | None = _num(nullable=True)


class MeterTotal(SQLModel, table=True):
    __tablename__ = "meter_total"
    org: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    feature: str = Field(primary_key=True)
    rate_card_version: str = Field(primary_key=True)
    quantity: Decimal = _num(nullable=False)


class DuplicateDelivery(SQLModel, table=True):
    __tablename__ = "duplicate_delivery"
    stream: str = Field(primary_key=True)
    stream_id: str = Field(primary_key=True)
    source: str
    id: str
    received_at: datetime = _ts(nullable=False)


class EventConflict(SQLModel, table=True):
    __tablename__ = "event_conflict"
    stream: str = Field(primary_key=True)
    stream_id: str = Field(primary_key=True)
    source: str
    id: str
    raw: bytes = _bytes(nullable=False)
    received_at: datetime = _ts(nullable=False)


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letter"
    id: int | None = Field(default=None, primary_key=True)
    stream: str
    stream_id: str
    raw: bytes = _bytes(nullable=False)
    reason: str = Field(sa_column=Column(Text, nullable=False))
    code: str
    source: str | None = None
    event_id: str | None = None
    received_at: datetime = _ts(nullable=False)
    replayed_at: datetime | None = _ts(nullable=True)
    replay_outcome: str | None = None
    original_length: int | None = None  # set when ``raw`` is only an oversized entry's start
    original_sha256: str | None = None


class Commitment(SQLModel, table=True):
    __tablename__ = "commitment"
    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(foreign_key="organization.name")
    license: str
    model: str
    quantity: Decimal = _num(nullable=False)
    from_period: str
    recorded_at: datetime = _ts(nullable=False)


class InvoiceCounter(SQLModel, table=True):
    __tablename__ = "invoice_counter"
    one: bool = Field(default=True, primary_key=True)
    last: int


class InvoiceRow(SQLModel, table=True):
    __tablename__ = "invoice"
    number: int = Field(primary_key=True)
    org: str = Field(foreign_key="organization.name")
    period: str
    currency: str
    status: str
    total: Decimal = _num(nullable=False)
    rate_card_version: str = Field(foreign_key="rate_card.version")
    issued_at: datetime = _ts(nullable=False)
    recorded_at: datetime = _ts(nullable=False)


class InvoiceLine(SQLModel, table=True):
    __tablename__ = "invoice_line"
    invoice: int = Field(primary_key=True, foreign_key="invoice.number")
    meter: str = Field(primary_key=True)
    description: str
    allocation: Decimal = _num(nullable=False)
    used: Decimal = _num(nullable=False)
    overage: Decimal = _num(nullable=False)
    expired: Decimal = _num(nullable=False)
    unit_price: Decimal = _num(nullable=False)
    amount: Decimal = _num(nullable=False)


class InvoiceFeature(SQLModel, table=True):
    __tablename__ = "invoice_feature"
    invoice: int = Field(primary_key=True, foreign_key="invoice.number")
    feature: str = Field(primary_key=True)
    tokens: Decimal = _num(nullable=False)


class InvoiceAdjustment(SQLModel, table=True):
    __tablename__ = "invoice_adjustment"
    invoice: int = Field(primary_key=True, foreign_key="invoice.number")
    original: int = Field(primary_key=True, foreign_key="invoice.number")
    period: str
    meter: str = Field(primary_key=True)
    description: str
    used: Decimal = _num(nullable=False)
    unexpired: Decimal = _num(nullable=False)
    overage: Decimal = _num(nullable=False)
    unit_price: Decimal = _num(nullable=False)
    amount: Decimal = _num(nullable=False)


class BilledEntry(SQLModel, table=True):
    __tablename__ = "billed_entry"
    entry_id: int = Field(primary_key=True, foreign_key="journal_entry.id")
    invoice: int = Field(foreign_key="invoice.number")
    meter: str
    original: int | None = Field(default=None, foreign_key="invoice.number")


class PeriodClose(SQLModel, table=True):
    __tablename__ = "period_close"
    period: str = Field(primary_key=True)
    as_of: datetime = _ts(nullable=False)
    closed_at: datetime = _ts(nullable=False)


class StreamIncident(SQLModel, table=True):
    """Entries removed from the stream before the group read them (lost revenue)."""

    __tablename__ = "stream_incident"
    stream: str = Field(primary_key=True)
    incident_id: str = Field(primary_key=True)
    group_name: str
    lost: int
    after_id: str
    before_id: str
    detected_at: datetime = _ts(nullable=False)
    recorded_at: datetime = _ts(nullable=False)


class StreamTrim(SQLModel, table=True):
    """A trim Tally made: entries below ``min_id`` were acknowledged and stored."""

    __tablename__ = "stream_trim"
    id: int | None = Field(default=None, primary_key=True)
    stream: str
    min_id: str
    removed: int
    trimmed_at: datetime = _ts(nullable=False)


class DeliveryLane(SQLModel, table=True):
    __tablename__ = "delivery_lane"
    lane: int = Field(primary_key=True)
    seq: int
    head_hash: bytes = _bytes(nullable=False)


class DeliveryTally(SQLModel, table=True):
    __tablename__ = "delivery_tally"
    lane: int = Field(primary_key=True, foreign_key="delivery_lane.lane")
    seq: int = Field(primary_key=True)
    stream: str
    events: int
    duplicates: int
    conflicts: int
    dead_letters: int
    replayed: int
    recorded_at: datetime = _ts(nullable=False)
    prev_hash: bytes = _bytes(nullable=False)
    hash: bytes = _bytes(nullable=False)


class ProducerSource(SQLModel, table=True):
    """One version of a source's permissions; the newest per name counts."""

    __tablename__ = "producer_source"
    id: int | None = Field(default=None, primary_key=True)
    name: str
    enabled: bool
    any_org: bool
    orgs: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    recorded_at: datetime = _ts(nullable=False)


class TokenPurchase(SQLModel, table=True):
    """AI tokens bought for a period: added to its allocation, billed on its invoice."""

    __tablename__ = "token_purchase"
    id: int | None = Field(default=None, primary_key=True)
    org: str = Field(foreign_key="organization.name")
    period: str
    tokens: Decimal = _num(nullable=False)
    recorded_at: datetime = _ts(nullable=False)
    note: str | None = None
