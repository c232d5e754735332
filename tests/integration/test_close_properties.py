"""Property test of the close: for random usage, license reports and late usage, each
invoice equals an independent computation from the raw events with ``Fraction``, its total
is the receivable movement in the ledger, and the allowance accounts end at zero."""

from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from math import ceil, floor

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import balance, close, document, license_day, meter
from support.ledger_support import ai, api
from tally import bootstrap
from tally.adapters.postgres.verification import verify
from tally.adapters.ratecard_files import bundled_cards
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService

CARD = bundled_cards()[0]
P1, P2 = "2026-09", "2026-10"
SEATS = [(lic, model) for lic, models in CARD.api.allocation.items() for model in models]
FEATURES = ["agent_copilot", "voice_bot", "digital_bot", "virtual_agent", "predictive_routing"]
runs = itertools.count()

report = st.tuples(
    st.sampled_from(SEATS), st.integers(1, 28), st.integers(0, 30), st.integers(0, 80)
)
requests = st.tuples(st.integers(1, 3_000_000), st.sampled_from(["integration", "ui"]))
ai_use = st.tuples(st.sampled_from(FEATURES), st.decimals(min_value=0, max_value=5_000, places=3))


def half_up(value: Fraction, minor: int) -> Fraction:
    return Fraction(floor(value * 10**minor + Fraction(1, 2)), 10**minor)


def ceil6(value: Fraction) -> Fraction:
    return Fraction(ceil(value * 10**6), 10**6)


class Model:
    """The close computed from the raw events alone."""

    def __init__(self, currency: str, reports: list, on_time: list, late: list) -> None:
        self.currency, self.minor = currency, CARD.currencies[currency]
        per_day: dict = defaultdict(Fraction)
        for seat, day, users, tenths in reports:
            value = Fraction(tenths, 10) if seat[1] == "hourly" else Fraction(users)
            per_day[(seat, day)] = max(per_day[(seat, day)], value)
        seats: dict = defaultdict(Fraction)
        for (seat, _), value in per_day.items():
            seats[seat] = seats[seat] + value if seat[1] == "hourly" else max(seats[seat], value)
        self.allocation = {
            "api_requests": sum(n * CARD.api.allocation[s[0]][s[1]] for s, n in seats.items()),
            "ai_tokens": sum(n * CARD.ai.allocation.get(s[1], 0) for s, n in seats.items()),
        }
        self.used = self._used(on_time)
        self.used_after_late = self._used(on_time + late)

    @staticmethod
    def _used(events: list) -> dict[str, Fraction]:
        requests_ = sum(Fraction(n) for kind, n, *_ in events if kind == "integration")
        quantity: dict = defaultdict(Fraction)
        for kind, *rest in events:
            if kind == "ai":
                feature, amount = rest
                quantity[feature] += Fraction(amount)
        tokens = sum(
            ceil6(q * CARD.ai.features[f].tokens / CARD.ai.features[f].per)
            for f, q in quantity.items()
        )
        return {"api_requests": requests_, "ai_tokens": Fraction(tokens)}

    def billed(self, meter: str, used: Fraction) -> Fraction:
        over = max(used - self.allocation[meter], Fraction(0))
        return Fraction(ceil(over)) if meter == "ai_tokens" else over

    def price(self, meter: str) -> Fraction:
        card = CARD.api if meter == "api_requests" else CARD.ai
        return Fraction(card.price[self.currency])

    def amount(self, meter: str) -> Fraction:
        return half_up(self.billed(meter, self.used[meter]) * self.price(meter), self.minor)

    def adjustment(self, meter: str) -> Fraction:
        """The period's overage money is rounded as one total: an adjustment bills what the
        rounded total grew by."""
        after = self.billed(meter, self.used_after_late[meter]) * self.price(meter)
        return half_up(after, self.minor) - self.amount(meter)


def payloads(run: int, org: str, period: str, events: list) -> list[bytes]:
    out = []
    for n, (kind, *rest) in enumerate(events):
        event_id, time = f"{period}-{n}", f"{period}-15T12:00:00Z"
        if kind == "ai":
            feature, amount = rest
            unit = CARD.ai.features[feature].unit
            out.append(ai(event_id, feature, str(amount), unit, org=org, time=time))
        else:
            out.append(api(event_id, count=rest[0], kind=kind, org=org, time=time))
    return [p.replace(b'"source": "test"', f'"source": "run{run}"'.encode()) for p in out]


def as_events(requests_: list, uses: list) -> list:
    return [(kind, n) for n, kind in requests_] + [("ai", f, q) for f, q in uses]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    currency=st.sampled_from(sorted(CARD.currencies)),
    reports=st.lists(
        report, min_size=1, max_size=5
    ),  # an organization with no activity gets no invoice
    on_time=st.tuples(st.lists(requests, max_size=3), st.lists(ai_use, max_size=3)),
    late=st.tuples(st.lists(requests, max_size=2), st.lists(ai_use, max_size=2)),
)
async def test_invoices_equal_an_independent_computation(
    engine: AsyncEngine,
    service: MeteringService,
    currency: str,
    reports: list,
    on_time: tuple,
    late: tuple,
) -> None:
    run = next(runs)
    org = f"close{run}"
    await organizations.add(bootstrap.database(engine), org, currency)
    on_time_events, late_events = as_events(*on_time), as_events(*late)
    licenses = [
        license_day(
            f"lic-{n}", lic, model, f"{tenths / 10}" if model == "hourly" else users,
            org=org, day=f"{P1}-{day:02d}",
        ).replace(b'"source": "test"', f'"source": "run{run}"'.encode())
        for n, ((lic, model), day, users, tenths) in enumerate(reports)
    ]  # fmt: skip
    await meter(service, [*licenses, *payloads(run, org, P1, on_time_events)])
    await close(engine, P1)
    late_payloads = payloads(run, org, P1, late_events)
    await meter(service, [p.replace(b'"id": "', b'"id": "late-') for p in late_payloads])
    await close(engine, P2)

    model = Model(currency, reports, on_time_events, late_events)
    first = await document(engine, org, P1)
    for line in first["lines"]:
        meter_ = line["meter"]
        assert Fraction(line["allocation"]) == model.allocation[meter_]
        assert Fraction(line["used"]) == model.used[meter_]
        assert Fraction(line["overage"]) == model.billed(meter_, model.used[meter_])
        assert Fraction(line["amount"]) == model.amount(meter_)
    late_meters = {"ai_tokens" if e[0] == "ai" else "api_requests"
                   for e in late_events if e[0] != "ui"}  # fmt: skip
    documents = [(P1, first)]
    if late_meters:  # late usage alone gets the organization an invoice for P2
        second = await document(engine, org, P2)
        adjustments = {a["meter"]: Fraction(a["amount"]) for a in second["adjustments"]}
        assert set(adjustments) == late_meters
        for meter_ in late_meters:
            assert adjustments[meter_] == model.adjustment(meter_)
        documents.append((P2, second))
    for period, doc in documents:
        assert await balance(engine, f"org/{org}/{period}/{currency}/receivable") == doc["total"]
        assert doc["total"] == sum(
            (Decimal(x["amount"]) for x in [*doc["lines"], *doc["adjustments"]]), Decimal(0)
        )
    for unit in ("api_request", "ai_token"):
        assert await balance(engine, f"org/{org}/{P1}/{unit}/allowance") == 0
    if run % 8 == 0:
        assert (await verify(engine)).ok
