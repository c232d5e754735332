"""Metering rules: from a stream entry to a rated event or a reject, and from a batch of
new events to the usage entries that carry them. Pure: the caller supplies what the
database knows (organizations, keys already stored, running AI totals).
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, NamedTuple

from tally.domain.events import (
    EVENT_FIELD,
    AiUsageEvent,
    AnyEvent,
    ApiRequestEvent,
    InvalidEvent,
    VoidEvent,
    decode_json,
    parse_event,
    storable_text,
)
from tally.domain.ledger import AI_TOKEN, API_REQUEST, CarriedEvent, Entry, Meter, usage_entry
from tally.domain.period import period_of
from tally.domain.ratecard import RateCardBook

EVENT_FIELD_BYTES = EVENT_FIELD.encode()  # the wire's field name as Redis gives it
Status = Literal["metered", "non_billable", "recorded", "correction"]
EventKey = tuple[str, str]  # (source, id): the idempotency key, forever


@dataclass(frozen=True)
class OversizedEntry:
    """A stream entry over the size limit, as the reader keeps it: never whole in memory
    for long, never whole in PostgreSQL. ``size`` is the whole entry (field names and
    values); ``sha256`` and ``length`` are those of the bytes a dead letter would keep
    (the ``event`` value, or the fields flattened), of which ``head`` is the beginning."""

    size: int
    length: int
    sha256: str
    head: bytes

    @classmethod
    def of(cls, fields: Sequence[tuple[bytes, bytes]], limit: int) -> OversizedEntry:
        single = len(fields) == 1 and fields[0][0] == EVENT_FIELD_BYTES
        whole = fields[0][1] if single else _kept_pairs(fields)
        size = sum(len(name) + len(value) for name, value in fields)
        return cls(size, len(whole), hashlib.sha256(whole).hexdigest(), whole[:limit])


# A stream entry's fields: (name, value) pairs in the order Redis returned them, repeats
# included (a mapping, which cannot hold a repeat, is read as its items); or, for an entry
# over the size limit, what the reader kept of it.
Fields = Mapping[bytes, bytes] | Sequence[tuple[bytes, bytes]] | OversizedEntry
StreamEntry = tuple[str, Fields]  # (stream id, its fields in Redis's order)


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int
    max_future_skew: timedelta


# A stored event rated again as it was metered (verify, voids): no size or clock limit now.
AS_STORED = Limits(max_event_bytes=2**31, max_future_skew=timedelta(days=365_000))


@dataclass(frozen=True)
class Reject:
    """A stream entry that cannot be metered, kept as a dead letter."""

    stream_id: str
    raw: bytes
    reason: str
    code: str
    source: str | None = None
    event_id: str | None = None
    unknown_org: str | None = None  # set when only the organization was missing
    original: OversizedEntry | None = None  # set when ``raw`` is only the entry's beginning


class ApiCall(NamedTuple):
    """What an API request is rolled up by, beside its organization and day."""

    oauth_client_id: str
    template_uri: str
    method: str
    status: int
    requests: int  # the event's count


class VoidAsk(NamedTuple):
    """What a ``tally.void`` event asks: take back ``target`` (an event of its own source)."""

    target: EventKey
    reason: str


class LicenseUse(NamedTuple):
    """A license report: users (named, concurrent) or hours (hourly) of one license model."""

    license: str
    model: str
    users: int | None
    hours: Decimal | None


@dataclass(slots=True)
class Rated:
    """A valid event with what it counts for."""

    source: str
    id: str
    type: str
    org: str
    time: datetime
    period: str
    status: Status
    meter: Meter | None
    feature: str | None
    quantity: Decimal  # requests, the feature's own unit, or license users/hours
    rate_card_version: str
    raw: bytes
    stream_id: str
    license: LicenseUse | None = None
    api: ApiCall | None = None  # an API request's client, URL and status (rollups)
    traceparent: str | None = None  # the producer's trace (W3C), for the batch span's links
    void: VoidAsk | None = None  # set for a ``tally.void`` correction (status correction)
    key: EventKey = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.source, self.id)

    @property
    def day(self) -> date:
        return self.time.date()


@dataclass(frozen=True)
class SourceGrant:
    """What a registered producer source may bill: any organization, or the ones named."""

    any_org: bool
    orgs: frozenset[str]


def check_source(sources: Mapping[str, SourceGrant], source: str, org: str) -> None:
    """Only a registered source bills, and only its organizations: a CloudEvents ``source``
    is self-declared, so the registry is what ties it to the organizations it may bill."""
    grant = sources.get(source)
    if grant is None:
        raise InvalidEvent(
            "unknown_source",
            f"unknown source {source!r}: register it with "
            f"`tally source add {shlex.quote(source)} --orgs {shlex.quote(org)}` "
            "(or --any-org), then `tally dlq replay --all`",
        )
    if not grant.any_org and org not in grant.orgs:
        allowed = ",".join(sorted(grant.orgs | {org}))
        raise InvalidEvent(
            "organization_not_allowed",
            f"source {source!r} may not bill organization {org!r} "
            f"(it may bill {', '.join(sorted(grant.orgs))}): allow it with "
            f"`tally source add {shlex.quote(source)} --orgs {shlex.quote(allowed)}`, "
            "then `tally dlq replay --all`",
        )


def same_payload(raw: bytes, other: bytes) -> bool:
    """Same payload means the same JSON document, whatever the key order or spacing.

    Byte-equal payloads (a producer's retry) are decided without parsing; only a real
    collision on a key pays for the canonical comparison.
    """
    return raw == other or _canonical(raw) == _canonical(other)


def _canonical(raw: bytes) -> str:
    return json.dumps(decode_json(raw), sort_keys=True, separators=(",", ":"), default=str)


def claimed_key(raw: bytes) -> tuple[str | None, str | None]:
    """The (source, id) a reject claims, when they are text worth indexing."""
    try:
        body = decode_json(raw)
    except InvalidEvent:
        return None, None

    def usable(value: Any) -> str | None:
        if not isinstance(value, str) or len(value) > 256:
            return None
        try:
            return storable_text(value)
        except ValueError:
            return None

    return usable(body.get("source")), usable(body.get("id"))


def rate(
    stream_id: str,
    fields: Fields,
    orgs: Mapping[str, str],
    book: RateCardBook,
    limits: Limits,
    now: datetime,
    sources: Mapping[str, SourceGrant] | None = None,
) -> Rated | Reject:
    """Validate one stream entry against the wire contract, the organizations and the card;
    ``sources`` (the producer registry; None: not checked) against who may bill whom.

    The entry is exactly one field, ``event``: a repeated field or another field beside it
    would be read by one consumer and ignored by another, so either is refused. That is
    checked before the size (which counts the whole entry, names and values), so a
    reject's code tells ``stream_fields`` how its bytes were kept.
    """
    if isinstance(fields, OversizedEntry):
        reason = (
            f"oversized entry: {fields.size} bytes, limit {limits.max_event_bytes}; kept its "
            f"first {len(fields.head)} of {fields.length} bytes (SHA-256 {fields.sha256})"
        )
        return Reject(stream_id, fields.head, reason, "oversized", original=fields)
    pairs = tuple(fields.items()) if isinstance(fields, Mapping) else fields
    if not pairs:
        reason = "the entry was deleted from the stream (XDEL or trimming) before it was metered"
        return Reject(stream_id, b"", reason, "deleted_from_stream")
    if len(pairs) != 1 or pairs[0][0] != EVENT_FIELD_BYTES:
        return _refuse_shape(stream_id, pairs)
    raw = pairs[0][1]
    size = len(EVENT_FIELD_BYTES) + len(raw)
    if size > limits.max_event_bytes:
        return Reject(
            stream_id,
            raw,
            f"oversized entry: {size} bytes, limit {limits.max_event_bytes}",
            "oversized",
        )
    try:
        event = parse_event(raw)
        time = event.utc_time
        period = period_of(time)
        if time > now + limits.max_future_skew:
            raise InvalidEvent(
                "future_time",
                f"time {event.time.isoformat()} is more than "
                f"{int(limits.max_future_skew.total_seconds())}s in the future",
            )
        if event.subject not in orgs:
            reason = f"unknown organization {event.subject!r}: add it with `tally org add`"
            return Reject(
                stream_id,
                raw,
                reason,
                "unknown_organization",
                event.source,
                event.id,
                event.subject,
            )
        if sources is not None:
            check_source(sources, event.source, event.subject)
        card = book.in_effect(time)
        if card is None:
            raise InvalidEvent("no_rate_card", f"no rate card in effect at {time.isoformat()}")
        status: Status = "metered"
        meter: Meter | None = None
        feature: str | None = None
        license_use: LicenseUse | None = None
        api_call: ApiCall | None = None
        void: VoidAsk | None = None
        if isinstance(event, VoidEvent):
            status, quantity, void = "correction", Decimal(0), _void_ask(event)
        elif isinstance(event, ApiRequestEvent):
            data = event.data
            api_call = ApiCall(
                data.oauth_client_id, data.template_uri, data.method, data.status, data.count
            )
            kind = data.client_kind
            if kind in card.api.billable_client_kinds:
                meter = API_REQUEST
            elif kind in card.api.non_billable_client_kinds:
                status = "non_billable"
            else:
                raise InvalidEvent(
                    "unknown_client_kind",
                    f"unknown client_kind {kind!r} (rate card {card.version})",
                )
            quantity = Decimal(event.data.count)
        elif isinstance(event, AiUsageEvent):
            feature = event.data.feature
            conversion = card.ai.features.get(feature)
            if conversion is None:
                raise InvalidEvent(
                    "unknown_feature", f"unknown feature {feature!r} (rate card {card.version})"
                )
            if event.data.unit != conversion.unit:
                raise InvalidEvent(
                    "wrong_unit",
                    f"wrong unit {event.data.unit!r} for feature {feature!r}: "
                    f"expected {conversion.unit!r}",
                )
            meter, quantity = AI_TOKEN, event.data.quantity
        else:
            license_data = event.data
            if license_data.model not in card.api.allocation.get(license_data.license, {}):
                raise InvalidEvent(
                    "unknown_license_model",
                    f"license {license_data.license!r} has no {license_data.model!r} model "
                    f"(rate card {card.version})",
                )
            status = "recorded"
            quantity = Decimal(
                license_data.users if license_data.users is not None else license_data.hours or 0
            )
            license_use = LicenseUse(
                license_data.license, license_data.model, license_data.users, license_data.hours
            )
    except InvalidEvent as exc:
        return Reject(stream_id, raw, exc.reason, exc.code, *claimed_key(raw))
    except Exception as exc:  # a rule's own failure must not stall the stream
        reason = f"cannot be rated: {type(exc).__name__}: {exc}"
        return Reject(stream_id, raw, reason, "unratable", *claimed_key(raw))
    return Rated(
        source=event.source,
        id=event.id,
        type=event.type,
        org=event.subject,
        time=time,
        period=period,
        status=status,
        meter=meter,
        feature=feature,
        quantity=quantity,
        rate_card_version=card.version,
        raw=raw,
        stream_id=stream_id,
        license=license_use,
        api=api_call,
        traceparent=_traceparent(event),
        void=void,
    )


def _void_ask(event: VoidEvent) -> VoidAsk:
    """A correction speaks only for its own source's events, and never for itself."""
    target = (event.data.source, event.data.id)
    if event.data.source != event.source:
        raise InvalidEvent(
            "void_other_source",
            f"a tally.void from source {event.source!r} cannot void an event of source "
            f"{event.data.source!r}: only the event's own source may void it",
        )
    if target == (event.source, event.id):
        raise InvalidEvent("void_of_itself", "a tally.void cannot void itself (data.id is its id)")
    return VoidAsk(target, event.data.reason)


def _traceparent(event: AnyEvent) -> str | None:
    extra = event.model_extra
    value = extra.get("traceparent") if extra else None
    return value if isinstance(value, str) else None


# The codes of rejects kept as the entry's field pairs; every other reject keeps the bytes
# of its single ``event`` field (or nothing, for a deleted entry).
_WHOLE_ENTRY_CODES = frozenset({"repeated_field", "missing_event_field", "unexpected_field"})


def _refuse_shape(stream_id: str, pairs: Sequence[tuple[bytes, bytes]]) -> Reject:
    """An entry that is not exactly one ``event`` field, kept whole (repeats included)."""
    times = Counter(name for name, _ in pairs)
    listed = ", ".join(_shown(name) for name, _ in pairs)
    if repeated := sorted(name for name, n in times.items() if n > 1):
        code = "repeated_field"
        reason = (
            f"stream entry with the field {_quoted(repeated)} more than once: "
            f"which value is meant is ambiguous (fields: {listed})"
        )
    elif EVENT_FIELD_BYTES not in times:
        code = "missing_event_field"
        reason = f"stream entry without the 'event' field (fields: {listed})"
    else:
        others = _quoted(sorted(name for name in times if name != EVENT_FIELD_BYTES))
        code = "unexpected_field"
        reason = f"stream entry with fields beside 'event': {others} (an entry has only 'event')"
    return Reject(stream_id, _kept_pairs(pairs), reason, code)


def _shown(name: bytes) -> str:
    return name.decode(errors="replace")


def _quoted(names: Iterable[bytes]) -> str:
    return ", ".join(repr(_shown(name)) for name in names)


def _kept_pairs(pairs: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The entry's fields as a JSON array of [name, value] pairs, byte-exact: bytes that are
    not UTF-8 travel as surrogate escapes and come back unchanged."""
    return json.dumps(
        [[_text(name), _text(value)] for name, value in pairs], separators=(",", ":")
    ).encode()


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def stream_fields(raw: bytes, code: str) -> list[tuple[bytes, bytes]]:
    """The stream entry a dead letter was made from, for replaying it, repeats included.

    Letters written before pairs were kept hold a JSON object of the fields (``{...}``).
    """
    if code not in _WHOLE_ENTRY_CODES:
        return [(EVENT_FIELD_BYTES, raw)]
    kept = json.loads(raw)
    items = kept.items() if isinstance(kept, dict) else kept
    return [(_bytes(name), _bytes(value)) for name, value in items]


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@dataclass
class Deliveries:
    """A batch's valid events, sorted against what is already stored."""

    new: list[Rated]
    duplicates: list[Rated]  # same key, same payload: counted once, delivery recorded
    conflicts: list[Rated]  # same key, different payload: recorded, never metered


def sort_deliveries(
    stream: str, rated: Iterable[Rated], stored: Mapping[EventKey, tuple[bytes, str]]
) -> Deliveries:
    """``stored`` maps keys already in the ledger to (raw payload, ``stream/stream id``).

    The very same stream entry seen again (a redelivery after a crash between commit and
    XACK) is dropped silently: it was already handled.
    """
    seen: dict[EventKey, tuple[bytes, str]] = dict(stored)
    out = Deliveries([], [], [])
    for event in rated:
        earlier = seen.get(event.key)
        if earlier is None:
            seen[event.key] = (event.raw, f"{stream}/{event.stream_id}")
            out.new.append(event)
        elif earlier[1] == f"{stream}/{event.stream_id}":
            continue
        elif same_payload(earlier[0], event.raw):
            out.duplicates.append(event)
        else:
            out.conflicts.append(event)
    return out


TotalKey = tuple[str, str, str, str]  # (org, period, feature, rate card version)


def ai_quantities(events: Iterable[Rated]) -> dict[TotalKey, Decimal]:
    """This batch's AI quantity per feature, in the feature's own unit."""
    totals: dict[TotalKey, Decimal] = defaultdict(Decimal)
    for event in events:
        if event.meter == AI_TOKEN and event.feature is not None:
            totals[(event.org, event.period, event.feature, event.rate_card_version)] += (
                event.quantity
            )
    return dict(totals)


@dataclass(frozen=True)
class Posting:
    entry: Entry
    events: tuple[Rated, ...]

    def carried(self) -> list[CarriedEvent]:
        """What the entry's hash covers of its events: keys and exact bytes."""
        return [(e.source, e.id, hashlib.sha256(e.raw).digest()) for e in self.events]


def usage_postings(
    new: Iterable[Rated],
    book: RateCardBook,
    batch: Mapping[TotalKey, Decimal],
    totals_after: Mapping[TotalKey, Decimal],
) -> list[Posting]:
    """One usage entry per (org, period, meter, rate card) for the batch's new metered events.

    AI tokens per feature are the difference of the conversion of the running quantity
    after and before this batch (``batch``: the batch's own quantities, ``ai_quantities``;
    ``totals_after`` includes them).
    """
    cards = {card.version: card for card in book.cards}
    groups: dict[tuple[str, str, Meter, str], list[Rated]] = defaultdict(list)
    for event in new:
        if event.meter is not None:
            groups[(event.org, event.period, event.meter, event.rate_card_version)].append(event)
    postings = []
    for (org, period, meter, version), events in sorted(groups.items()):
        amounts: dict[str | None, Decimal] = defaultdict(Decimal)
        if meter == API_REQUEST:
            amounts[None] = sum((event.quantity for event in events), Decimal(0))
        else:
            card = cards[version]
            for feature in sorted({event.feature for event in events if event.feature}):
                after = totals_after[(org, period, feature, version)]
                before = after - batch[(org, period, feature, version)]
                amounts[feature] = card.tokens(feature, after) - card.tokens(feature, before)
        keys = tuple(sorted(event.key for event in events))
        digest = hashlib.sha256("\x1e".join(f"{s}\x1f{i}" for s, i in keys).encode()).hexdigest()
        key = f"usage/{org}/{period}/{meter}/{digest[:32]}"
        entry = usage_entry(key, org, period, meter, amounts, version)
        postings.append(Posting(entry, tuple(events)))
    return postings
