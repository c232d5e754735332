"""A deterministic synthetic usage mix: good events, duplicates and bad entries.

Pure: no I/O besides reading the bundled rate card when none is given. The same
``(orgs, period, events, seed, duplicates, bad)`` always yields the same bytes, ids
included (ids are UUIDv7 built from each event's time and the seeded generator), so
publishing one mix twice is a re-delivery the consumer must dedupe, and a different
seed gives different ids.

    mix = LoadMix(["acme", "globex"], "2026-11", 10_000, seed=7)
    for entry in mix:
        ...  # entry.value: the ``event`` field's bytes, or a whole fields dict
    mix.summary  # expected totals, complete once the iteration ends

The mix of the good events: about 80 % ``api.request`` (mostly billable client kinds,
some ``ui``/``auth``/browser ones; ``count`` 1, or 2-199 for 5 %), about 18 % ``ai.usage``
(every feature of the card with its unit; some decimal quantities as JSON strings) and
``license.usage`` at most one per organization, day and license (about 2 % of a small
mix, less of a big one: a month has only so many days). Times are spread uniformly over
the period (UTC). Duplicates re-send an earlier good event's exact bytes. Bad entries
cycle through :data:`BAD_CLASSES`, so every class appears once ``bad`` gives 12 of them.

License sizes are set from the expected billable requests so that, in a mix of 20,000
events or more, the first organization uses about 125 % of its API allocation (on-demand
charges), the second about 60 % and the third about 80 %. Whole users, sampled days and
pre-aggregated counts make this approximate (small mixes may miss); the summary always
has the exact figures.

Generation builds JSON text directly (no model validation per event; validity comes
from construction and is checked by the tests): the fast paths give :func:`wire_json`
pieces encoded once per organization and client; 200,000 entries take one to two seconds.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple, cast

from tally.adapters.ratecard_files import bundled_cards
from tally.config import Settings
from tally.domain.period import parse_period, period_bounds
from tally.domain.ratecard import RateCard
from tally.sdk.producer import EVENT_FIELD, format_uuid7

__all__ = [
    "BAD_CLASSES",
    "NEEDS_CONTEXT",
    "LoadEntry",
    "LoadMix",
    "LoadSummary",
]

BAD_CLASSES: tuple[str, ...] = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "unknown_type",
    "unknown_org",
    "unknown_feature",
    "wrong_unit",
    "negative_quantity",
    "non_finite_quantity",
    "future_time",
    "oversized",
    "missing_event_field",
)
"""Every class of bad entry the mix produces, in the order they are cycled through."""

NEEDS_CONTEXT: frozenset[str] = frozenset(
    {"unknown_org", "unknown_feature", "wrong_unit", "future_time", "oversized"}
)
"""Bad classes whose ``event`` value passes ``parse_event``: refusing them takes the
organizations, the rate card, the clock or the size limit. (``missing_event_field`` has
no ``event`` value at all.)"""

OVERSIZED_BYTES: int = Settings.model_fields["max_event_bytes"].default + 1_024
"""Size of an ``oversized`` entry: past the default 64 KiB limit (``max_event_bytes``)."""

_API, _AI, _LICENSE, _DUP, _BAD = range(5)
_AI_SHARE = 0.18
_LICENSE_SHARE = 0.02
_BIG_COUNT = 0.05  # share of api.request events with count > 1 (pre-aggregated)
_MEAN_COUNT = (1 - _BIG_COUNT) + _BIG_COUNT * 100  # count: 1, or 2..199
_TARGETS = (1.25, 0.6, 0.8)  # billable requests / allocation of the first organizations
_DAY_MS = 86_400_000

_METHODS = ("GET",) * 12 + ("POST",) * 4 + ("PUT",) * 2 + ("PATCH",) + ("DELETE",)
_SUCCESS = {"GET": 200, "POST": 201, "PUT": 200, "PATCH": 200, "DELETE": 204}
_FAILURES = (300, 400, 400, 401, 404, 404, 409, 429, 429, 429, 500, 503)
_TEMPLATES = (
    "/api/v2/users/{userId}",
    "/api/v2/users",
    "/api/v2/users/{userId}/presences/purecloud",
    "/api/v2/conversations/{conversationId}",
    "/api/v2/conversations/calls/{conversationId}/participants/{participantId}",
    "/api/v2/analytics/conversations/details/query",
    "/api/v2/analytics/queues/observations/query",
    "/api/v2/routing/queues",
    "/api/v2/routing/queues/{queueId}/members",
    "/api/v2/routing/skills",
    "/api/v2/externalcontacts/contacts/{contactId}",
    "/api/v2/outbound/campaigns/{campaignId}",
    "/api/v2/recording/jobs",
    "/api/v2/notifications/channels",
    "/api/v2/integrations/actions/{actionId}/execute",
    "/api/v2/oauth/clients",
    "/api/v2/flows/datatables/{datatableId}/rows",
)
_BROWSERISH = ("chrome", "firefox", "salesforce", "zendesk", "data_action_external")
_LICENSE_OPTIONS: tuple[tuple[str, str], ...] = (
    ("gc1", "named"),
    ("gc1", "concurrent"),
    ("gc1", "hourly"),
    ("gc2", "named"),
    ("gc2", "concurrent"),
    ("gc2", "hourly"),
    ("gc3", "named"),
    ("gc3", "concurrent"),
    ("gc3", "hourly"),
)


class LoadEntry(NamedTuple):
    """One stream entry of the mix.

    ``value``: the bytes of the ``event`` field, or (class ``missing_event_field``) the
    whole fields dict. ``kind``: ``"event"``, ``"duplicate"`` or ``"bad"``. ``label``: the
    event type (events, duplicates) or the bad class.
    """

    value: bytes | dict[str, bytes]
    kind: str
    label: str

    @property
    def fields(self) -> dict[str, bytes]:
        """The entry as given to XADD."""
        return self.value if isinstance(self.value, dict) else {EVENT_FIELD: self.value}


@dataclass
class LoadSummary:
    """What a mix contains: what the stream gets and what the ledger should show.

    Only good events count in the totals (duplicates and bad entries never do).
    ``license_users`` applies the month-close rules (docs: concepts/close.md) (named and concurrent:
    highest daily value; hourly: sum of hours) per ``license/model``; ``api_allocation``
    and ``ai_tokens`` apply the rate card the mix was made with.
    """

    seed: int
    period: str
    orgs: list[str]
    entries: int = 0
    """Stream entries yielded: events + duplicates + bad."""
    by_type: dict[str, int] = field(default_factory=dict)
    """Distinct good events per type."""
    duplicates: int = 0
    bad: dict[str, int] = field(default_factory=dict)
    """Bad entries per class (every class listed, zeros included)."""
    billable_requests: dict[str, int] = field(default_factory=dict)
    """Per org: sum of ``count`` over api.request events of billable client kinds."""
    non_billable_requests: dict[str, int] = field(default_factory=dict)
    requests_by_client_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    ai_quantity: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """Per org, per feature: exact sum of ``quantity`` (in the feature's unit)."""
    ai_tokens: dict[str, Decimal] = field(default_factory=dict)
    """Per org: tokens, each feature's total converted and rounded up by the card."""
    license_users: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    """Per org, per ``license/model``: billable users (hourly: billable hours)."""
    api_allocation: dict[str, Decimal] = field(default_factory=dict)
    """Per org: pooled API request allocation for the period."""
    card_version: str = ""

    @property
    def good(self) -> int:
        return sum(self.by_type.values())

    @property
    def bad_total(self) -> int:
        return sum(self.bad.values())

    @property
    def api_overage(self) -> dict[str, Decimal]:
        """Per org: billable requests over the allocation (0 if within it)."""
        return {
            org: max(Decimal(0), self.billable_requests[org] - self.api_allocation[org])
            for org in self.orgs
        }

    def as_dict(self) -> dict[str, Any]:
        """Plain data (decimals stay ``Decimal``; the CLI prints them as strings)."""
        return {
            "seed": self.seed,
            "period": self.period,
            "orgs": list(self.orgs),
            "card_version": self.card_version,
            "entries": self.entries,
            "good": self.good,
            "by_type": dict(self.by_type),
            "duplicates": self.duplicates,
            "bad_total": self.bad_total,
            "bad": dict(self.bad),
            "billable_requests": dict(self.billable_requests),
            "non_billable_requests": dict(self.non_billable_requests),
            "requests_by_client_kind": {
                k: dict(v) for k, v in self.requests_by_client_kind.items()
            },
            "ai_quantity": {k: dict(v) for k, v in self.ai_quantity.items()},
            "ai_tokens": dict(self.ai_tokens),
            "license_users": {k: dict(v) for k, v in self.license_users.items()},
            "api_allocation": dict(self.api_allocation),
            "api_overage": self.api_overage,
        }


@lru_cache(maxsize=1)
def default_card() -> RateCard:
    """The newest bundled rate card: what the mix (and the benchmarks) price against."""
    return bundled_cards()[-1]


def wire_event(
    kind: str, event_id: str, source: str, org: str, time: str, data: dict[str, Any]
) -> bytes:
    """One wire-contract event as an integration XADDs it (compact JSON; a
    :class:`_RawNumber` in ``data`` is written as a bare number)."""
    return wire_json(kind, _js(event_id), _js(source), _js(org), _js(time), _data_json(data))


def wire_json(
    kind: str, id_js: str, source_js: str, org_js: str, time_js: str, data_js: str
) -> bytes:
    """The envelope of :func:`wire_event` around JSON already encoded (the mix encodes its
    organizations and clients once, not per event); ``kind`` is one of the wire's types."""
    return (
        f'{{"specversion":"1.0","id":{id_js},"source":{source_js},"type":"{kind}",'
        f'"time":{time_js},"subject":{org_js},"data":{data_js}}}'
    ).encode()


def api_request_event(
    event_id: str,
    source: str,
    org: str,
    time: str,
    count: int = 1,
    client_id: str = "loadgen-client",
    client_kind: str = "integration",
) -> bytes:
    """A successful ``GET`` by a client of ``client_kind``, ``count`` requests."""
    data = {
        "oauth_client_id": client_id,
        "method": "GET",
        "template_uri": "/api/v2/users/{userId}",
        "status": 200,
        "client_kind": client_kind,
        "count": count,
    }
    return wire_event("api.request", event_id, source, org, time, data)


def ai_usage_event(
    event_id: str, source: str, org: str, time: str, feature: str, quantity: int, unit: str
) -> bytes:
    data = {"feature": feature, "quantity": quantity, "unit": unit}
    return wire_event("ai.usage", event_id, source, org, time, data)


def license_usage_event(
    event_id: str, source: str, org: str, time: str, license: str, model: str, users: int
) -> bytes:
    """A named or concurrent license's report of the day (``users``)."""
    data = {"license": license, "model": model, "users": users}
    return wire_event("license.usage", event_id, source, org, time, data)


class _Client(NamedTuple):
    id: str
    kind: str
    billable: bool
    json: str  # '"oauth_client_id":…,"client_kind":…' pre-encoded


@dataclass
class _Org:
    name: str
    json: str  # the name as a JSON string
    clients: tuple[_Client, ...]  # repeated by weight
    billable_share: float
    users: tuple[str, ...]  # as JSON strings
    licenses: list[tuple[str, str]]  # (license, model)
    target: float  # billable requests / API allocation aimed at
    base: dict[tuple[str, str], float] = field(default_factory=dict)


class LoadMix:
    """An iterable of :class:`LoadEntry`; ``summary`` holds the expected totals.

    ``events``: stream entries in all. ``duplicates`` and ``bad``: shares of them (0-1),
    rounded to whole entries. Iterating again regenerates the same entries from the seed
    (and a fresh ``summary``, complete when the iteration ends).
    """

    def __init__(
        self,
        orgs: Sequence[str],
        period: str,
        events: int,
        *,
        seed: int = 7,
        duplicates: float = 0.01,
        bad: float = 0.01,
        source: str = "loadgen",
        card: RateCard | None = None,
    ) -> None:
        if not orgs:
            raise ValueError("at least one organization is needed")
        if len(set(orgs)) != len(orgs) or not all(orgs):
            raise ValueError("organizations must be distinct, non-empty names")
        if events < 0:
            raise ValueError("events must not be negative")
        if not (0 <= duplicates <= 1 and 0 <= bad <= 1 and duplicates + bad <= 1):
            raise ValueError("duplicates and bad are shares between 0 and 1 (together <= 1)")
        self.orgs = list(orgs)
        self.year, self.month = parse_period(period)
        self.period = f"{self.year:04d}-{self.month:02d}"
        self.events = events
        self.seed = seed
        self.duplicates = duplicates
        self.bad = bad
        self.source = source
        self.card = card or default_card()
        self.summary = self._empty_summary()

    def __len__(self) -> int:
        return self.events

    def _empty_summary(self) -> LoadSummary:
        return LoadSummary(
            seed=self.seed,
            period=self.period,
            orgs=list(self.orgs),
            card_version=self.card.version,
            by_type={"api.request": 0, "ai.usage": 0, "license.usage": 0},
            bad=dict.fromkeys(BAD_CLASSES, 0),
            billable_requests=dict.fromkeys(self.orgs, 0),
            non_billable_requests=dict.fromkeys(self.orgs, 0),
            requests_by_client_kind={org: {} for org in self.orgs},
            ai_quantity={org: {} for org in self.orgs},
            ai_tokens=dict.fromkeys(self.orgs, Decimal(0)),
            license_users={org: {} for org in self.orgs},
            api_allocation=dict.fromkeys(self.orgs, Decimal(0)),
        )

    # -- set-up, drawn from the seeded generator in a fixed order

    def _make_orgs(self, rng: random.Random) -> list[_Org]:
        billable = sorted(self.card.api.billable_client_kinds)
        non_billable = sorted(self.card.api.non_billable_client_kinds)
        extra = [kind for kind in _BROWSERISH if kind in non_billable] or non_billable
        weights = {"integration": 10, "data_action": 4, "appfoundry": 3}  # others: 2
        orgs = []
        for index, name in enumerate(self.orgs):
            kinds = [(kind, True) for kind in billable]
            kinds += [(kind, False) for kind in ("ui", "auth") if kind in non_billable]
            kinds.append((rng.choice(extra), False))
            clients: list[_Client] = []
            for kind, is_billable in kinds:
                client_id = f"c-{rng.getrandbits(32):08x}"
                encoded = f'"oauth_client_id":{_js(client_id)},"client_kind":{_js(kind)}'
                weight = weights.get(kind, 2) if is_billable else 1
                clients += [_Client(client_id, kind, is_billable, encoded)] * weight
            share = sum(client.billable for client in clients) / len(clients)
            users = tuple(_js(f"u-{rng.getrandbits(24):06x}") for _ in range(rng.randint(5, 40)))
            target = _TARGETS[index] if index < len(_TARGETS) else rng.uniform(0.5, 1.2)
            orgs.append(_Org(name, _js(name), tuple(clients), share, users, [], target))
        return orgs

    def _per_user(self, combo: tuple[str, str]) -> int:
        allocation = cast(dict[str, dict[str, int]], self.card.api.allocation)
        return allocation.get(combo[0], {}).get(combo[1], 0) or 1

    @staticmethod
    def _expected_billable(org_i: int, org: _Org, org_weights: Sequence[int], n_api: int) -> float:
        share = org_weights.count(org_i) / len(org_weights)
        return n_api * share * org.billable_share * _MEAN_COUNT

    def _pick_licenses(self, rng: random.Random, orgs: list[_Org], wanted: list[float]) -> None:
        """One to three licenses per org, each small enough for three users or more.

        Keeping every license's allocation per user under a third of the allocation the
        org should get keeps whole-user rounding within a sixth of the target.
        """
        options = [("communicate", "named"), *_LICENSE_OPTIONS]
        for org, allocation in zip(orgs, wanted, strict=True):
            fits = [c for c in options if self._per_user(c) * 3 <= allocation]
            fits = fits or [min(options, key=self._per_user)]
            for combo in rng.sample(fits, min(len(fits), rng.randint(1, 3))):
                if all(combo[0] != taken for taken, _ in org.licenses):
                    org.licenses.append(combo)

    def _size_licenses(
        self, orgs: list[_Org], org_weights: Sequence[int], n_api: int, days: Counter[Any]
    ) -> None:
        """Pick each license's daily size so the org's allocation meets its target.

        The allocation wanted is split over the licenses reported, biggest allocation per
        user first, in whole users (hourly: hundredths of hours); what a license cannot take in
        whole users is left to the next.
        """
        for org_i, org in enumerate(orgs):
            remaining = self._expected_billable(org_i, org, org_weights, n_api) / org.target
            covered = [combo for combo in org.licenses if days[(org_i, *combo)]]
            covered.sort(key=self._per_user, reverse=True)
            for index, combo in enumerate(covered):
                k = days[(org_i, *combo)]
                per_user = self._per_user(combo)
                wanted = remaining / (len(covered) - index) / per_user
                if combo[1] == "hourly":  # billable: the sum of the daily hours
                    org.base[combo] = wanted / k
                    remaining -= wanted * per_user
                    continue
                # billable: the highest daily value, about base * (0.85 + 0.3 k/(k+1))
                last = index == len(covered) - 1
                users = max(1, round(wanted) if last else int(wanted))
                org.base[combo] = users / (0.85 + 0.3 * k / (k + 1))
                remaining = max(0.0, remaining - users * per_user)

    # -- the mix

    def __iter__(self) -> Iterator[LoadEntry]:
        return self._generate()

    def _generate(self) -> Iterator[LoadEntry]:
        rng = random.Random(self.seed)
        summary = self._empty_summary()
        self.summary = summary
        orgs = self._make_orgs(rng)
        start, end = period_bounds(self.period)
        days = (end - start).days
        start_ms = int(start.timestamp() * 1000)
        span_ms = days * _DAY_MS
        prefixes = [f"{self.period}-{day + 1:02d}T" for day in range(days)]

        # exact counts per class of slot, shuffled
        n = self.events
        n_bad = round(n * self.bad)
        n_dup = round(n * self.duplicates)
        n_good = n - n_bad - n_dup
        if n_good == 0:
            n_bad, n_dup = n_bad + n_dup, 0
        org_weights = tuple(i for i in range(len(orgs)) for _ in range(len(orgs) - i))
        n_api_about = n_good * (1 - _AI_SHARE - _LICENSE_SHARE)
        self._pick_licenses(
            rng,
            orgs,
            [
                self._expected_billable(i, org, org_weights, round(n_api_about)) / org.target
                for i, org in enumerate(orgs)
            ],
        )
        plan = [
            (day, org_i, combo)
            for day in range(days)
            for org_i, org in enumerate(orgs)
            for combo in org.licenses
        ]
        n_license = min(len(plan), round(n_good * _LICENSE_SHARE))
        n_ai = round(n_good * _AI_SHARE)
        n_api = n_good - n_license - n_ai
        slots = [_API] * n_api + [_AI] * n_ai + [_LICENSE] * n_license
        slots += [_DUP] * n_dup + [_BAD] * n_bad
        rng.shuffle(slots)
        if n_dup:  # a duplicate needs an earlier good event
            first_good = next(i for i, s in enumerate(slots) if s in (_API, _AI, _LICENSE))
            first_dup = slots.index(_DUP)
            if first_dup < first_good:
                slots[first_dup], slots[first_good] = slots[first_good], slots[first_dup]
        chosen = [plan[i] for i in sorted(rng.sample(range(len(plan)), n_license))]
        self._size_licenses(
            orgs, org_weights, n_api, Counter((o, *combo) for _, o, combo in chosen)
        )
        licenses = iter(chosen)

        features = [
            (name, _js(name), conversion.unit, _js(conversion.unit))
            for name, conversion in sorted(self.card.ai.features.items())
        ]
        src_api, src_ai = _js(f"{self.source}/api"), _js(f"{self.source}/ai")
        src_license = f"{self.source}/licensing"
        rand = rng.random
        bits = rng.getrandbits
        n_orgs_w, n_features, n_methods = len(org_weights), len(features), len(_METHODS)

        def stamp() -> tuple[str, str]:
            offset = int(rand() * span_ms)
            day, rest = divmod(offset, _DAY_MS)
            hour, rest = divmod(rest, 3_600_000)
            minute, rest = divmod(rest, 60_000)
            second, milli = divmod(rest, 1000)
            eid = format_uuid7(start_ms + offset, bits(74))
            return f"{prefixes[day]}{hour:02d}:{minute:02d}:{second:02d}.{milli:03d}Z", eid

        def api_event(org: _Org) -> tuple[bytes, _Client, int]:
            client = org.clients[int(rand() * len(org.clients))]
            method = _METHODS[int(rand() * n_methods)]
            status = _SUCCESS[method] if rand() < 0.92 else _FAILURES[int(rand() * 12)]
            count = 1 if rand() >= _BIG_COUNT else 2 + int(rand() * 198)
            template = _TEMPLATES_JS[int(rand() * len(_TEMPLATES_JS))]
            when, eid = stamp()
            data = (
                f'{{{client.json},"method":"{method}","template_uri":{template},'
                f'"status":{status},"count":{count}}}'
            )
            raw = wire_json("api.request", f'"{eid}"', src_api, org.json, f'"{when}"', data)
            return raw, client, count

        def ai_event(org: _Org) -> tuple[bytes, str, Decimal, str]:
            feature, feature_js, unit, unit_js = features[int(rand() * n_features)]
            quantity, text, as_string = _quantity(rng, unit)
            user = f',"user_id":{org.users[int(rand() * len(org.users))]}' if rand() < 0.6 else ""
            when, eid = stamp()
            value = f'"{text}"' if as_string else text
            data = f'{{"feature":{feature_js},"quantity":{value},"unit":{unit_js}{user}}}'
            raw = wire_json("ai.usage", f'"{eid}"', src_ai, org.json, f'"{when}"', data)
            return raw, feature, quantity, text

        sent: list[tuple[bytes, str]] = []  # recent good events, for duplicates
        recent = 4096
        daily: dict[tuple[int, str, str], list[Decimal]] = {}
        bad_i = 0
        for slot in slots:
            if slot == _API:
                org = orgs[org_weights[int(rand() * n_orgs_w)]]
                raw, client, count = api_event(org)
                if client.billable:
                    summary.billable_requests[org.name] += count
                else:
                    summary.non_billable_requests[org.name] += count
                per_kind = summary.requests_by_client_kind[org.name]
                per_kind[client.kind] = per_kind.get(client.kind, 0) + count
                label = "api.request"
            elif slot == _AI:
                org = orgs[org_weights[int(rand() * n_orgs_w)]]
                raw, feature, quantity, _ = ai_event(org)
                per_feature = summary.ai_quantity[org.name]
                per_feature[feature] = per_feature.get(feature, Decimal(0)) + quantity
                label = "ai.usage"
            elif slot == _LICENSE:
                day, org_i, (lic, model) = next(licenses)
                raw, value = self._license_event(rng, orgs[org_i], lic, model, day, src_license)
                daily.setdefault((org_i, lic, model), []).append(value)
                label = "license.usage"
            elif slot == _DUP:
                summary.duplicates += 1
                summary.entries += 1
                dup, label = sent[int(rand() * len(sent))]
                yield LoadEntry(dup, "duplicate", label)
                continue
            else:
                bad_class = BAD_CLASSES[bad_i % len(BAD_CLASSES)]
                bad_i += 1
                org = orgs[org_weights[int(rand() * n_orgs_w)]]
                raw = ai_event(org)[0] if bad_class in _AI_BAD else api_event(org)[0]
                body = json.loads(raw, parse_float=_RawNumber)
                bad_value = _spoil(bad_class, body, rng, self.orgs)
                summary.bad[bad_class] += 1
                summary.entries += 1
                yield LoadEntry(bad_value, "bad", bad_class)
                continue
            summary.by_type[label] += 1
            summary.entries += 1
            if len(sent) < recent:
                sent.append((raw, label))
            else:
                sent[int(rand() * recent)] = (raw, label)
            yield LoadEntry(raw, "event", label)

        self._totals(summary, orgs, daily)

    def _license_event(
        self, rng: random.Random, org: _Org, lic: str, model: str, day: int, source: str
    ) -> tuple[bytes, Decimal]:
        """That day's report, sent in the day's last hour (UTC)."""
        ms = int(datetime(self.year, self.month, day + 1, 23, tzinfo=UTC).timestamp() * 1000)
        ms += rng.randrange(3_600_000)
        base = org.base[(lic, model)]
        data: dict[str, Any] = {"license": lic, "model": model}
        if model == "hourly":
            hundredths = round(base * 100 * (0.7 + 0.6 * rng.random()))
            text = f"{hundredths // 100}.{hundredths % 100:02d}"
            data["hours"] = text if rng.random() < 0.5 else _RawNumber(text)
            value = Decimal(text)
        else:
            users = round(base * (0.85 + 0.3 * rng.random()))
            data["users"] = users
            value = Decimal(users)
        event_id = format_uuid7(ms, rng.getrandbits(74))
        return wire_event("license.usage", event_id, source, org.name, _time_text(ms), data), value

    def _totals(
        self,
        summary: LoadSummary,
        orgs: list[_Org],
        daily: dict[tuple[int, str, str], list[Decimal]],
    ) -> None:
        allocation = cast(dict[str, dict[str, int]], self.card.api.allocation)
        for (org_i, lic, model), values in sorted(daily.items()):
            org = orgs[org_i].name
            billable = sum(values, Decimal(0)) if model == "hourly" else max(values)
            summary.license_users[org][f"{lic}/{model}"] = billable
            summary.api_allocation[org] += billable * allocation.get(lic, {}).get(model, 0)
        for org, quantities in summary.ai_quantity.items():
            summary.ai_tokens[org] = sum(
                (self.card.tokens(feature, total) for feature, total in quantities.items()),
                Decimal(0),
            )


_AI_BAD = frozenset({"unknown_feature", "wrong_unit", "negative_quantity", "non_finite_quantity"})


def _spoil(
    bad_class: str, body: dict[str, Any], rng: random.Random, orgs: Sequence[str]
) -> bytes | dict[str, bytes]:
    """Turn a good event's body into an entry of ``bad_class``."""
    data = body["data"]
    if bad_class in _AI_BAD:
        text = str(data["quantity"])  # the drawn quantity's exact text
        data["quantity"] = text
        if bad_class == "unknown_feature":
            data["feature"] = rng.choice(("holodeck", "agent_copilot_v9", "telepathy"))
        elif bad_class == "wrong_unit":
            units = ("token", "minute", "session", "hour", "message")
            data["unit"] = rng.choice([unit for unit in units if unit != data["unit"]])
        elif bad_class == "negative_quantity":
            data["quantity"] = "-" + text if rng.random() < 0.5 else _RawNumber("-" + text)
        else:
            data["quantity"] = rng.choice(("NaN", "Infinity", "-Infinity", "nan"))
        return _dumps(body)
    if bad_class == "malformed_json":
        raw = _dumps(body)
        return raw[: rng.randrange(1, len(raw) - 1)]  # a JSON object cut short
    if bad_class == "missing_field":
        name = rng.choice(_REQUIRED)
        if name.startswith("data."):
            del data[name[5:]]
        else:
            del body[name]
        return _dumps(body)
    if bad_class == "wrong_type":
        name, value = rng.choice(_WRONG_TYPES)
        data[name] = value
        return _dumps(body)
    if bad_class == "unknown_type":
        body["type"] = rng.choice(("api.response", "usage.unknown", "com.example.ping"))
        return _dumps(body)
    if bad_class == "unknown_org":
        name = f"unknown-{rng.getrandbits(32):08x}"
        while name in orgs:
            name = f"unknown-{rng.getrandbits(32):08x}"
        body["subject"] = name
        return _dumps(body)
    if bad_class == "future_time":
        ms = int(datetime(2999, 1, 1, tzinfo=UTC).timestamp() * 1000)
        body["time"] = _time_text(ms + rng.randrange(365 * _DAY_MS))
        return _dumps(body)
    if bad_class == "oversized":
        raw = _dumps(body)  # valid JSON padded with whitespace: only the size is wrong
        return raw[:-1] + b" " * (OVERSIZED_BYTES - len(raw)) + b"}"
    if bad_class == "missing_event_field":
        return {"payload": _dumps(body)}
    raise ValueError(f"unknown bad class {bad_class!r}")


class _RawNumber(str):
    """A string that ``_dumps`` writes as a bare JSON number (exact, never via float)."""

    __slots__ = ()


_REQUIRED = (
    "id",
    "source",
    "time",
    "subject",
    "specversion",
    "type",
    "data",
    "data.status",
    "data.method",
    "data.oauth_client_id",
)
_WRONG_TYPES: tuple[tuple[str, Any], ...] = (
    ("status", "200"),
    ("count", "7"),
    ("count", _RawNumber("2.5")),  # a JSON number with a fraction
    ("method", 1),
    ("status", True),
    ("template_uri", ["/api/v2/users"]),
)


def _dumps(body: dict[str, Any]) -> bytes:
    """Compact JSON of a whole (possibly spoiled) body; :class:`_RawNumber` values of its
    ``data`` become bare numbers."""
    data = body.get("data")
    return _raw_numbers(data if isinstance(data, dict) else {}, _compact(body)).encode()


def _data_json(data: dict[str, Any]) -> str:
    """An event's ``data`` as compact JSON, :class:`_RawNumber` values as bare numbers."""
    return _raw_numbers(data, _compact(data))


def _compact(value: dict[str, Any]) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _raw_numbers(data: dict[str, Any], text: str) -> str:
    for value in data.values():
        if isinstance(value, _RawNumber):
            text = text.replace(_js(value), str(value), 1)
    return text


def _js(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


_TEMPLATES_JS = tuple(_js(template) for template in _TEMPLATES)


def _time_text(unix_ms: int) -> str:
    seconds, ms = divmod(unix_ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def _quantity(rng: random.Random, unit: str) -> tuple[Decimal, str, bool]:
    """A plausible quantity for ``unit``: (value, exact JSON text, send as a string?)."""
    if unit == "token":  # AI Experience tokens reported by the feature: fractions
        text = f"0.{rng.randint(1, 250):03d}"  # 0.001 to 0.250
        return Decimal(text), text, rng.random() < 0.5
    if unit == "minute":
        cents = rng.randint(10, 1500)  # 0.10 to 15.00 minutes
        text = f"{cents // 100}.{cents % 100:02d}"
        return Decimal(text), text, rng.random() < 0.5
    if unit == "evaluation":
        value = rng.randint(1, 3)
    elif unit == "session":
        value = 1 if rng.random() < 0.8 else 2
    elif unit == "message":
        value = rng.randint(1, 30)
    elif unit == "post":
        value = rng.randint(1, 5)
    else:  # interaction, and units of cards yet to come
        value = 1
    return Decimal(value), str(value), rng.random() < 0.1
