"""Property tests: the ledger equals an independent model, whatever the input and batching."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from decimal import Decimal
from fractions import Fraction
from math import ceil

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import ai, api, read
from tally import bootstrap
from tally.adapters.postgres.reads import org_balances
from tally.adapters.postgres.verification import verify
from tally.adapters.ratecard_files import bundled_cards
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService

CARD = bundled_cards()[0]
FEATURES = sorted(CARD.ai.features.items())
PERIODS = ("2026-09", "2026-10")
counter = itertools.count()

# One delivery: (key index, payload variant, org index, period index, kind, amount, feature)
delivery = st.tuples(
    st.integers(0, 7),
    st.integers(0, 1),
    st.integers(0, 1),
    st.integers(0, 1),
    st.sampled_from(["api", "api", "ui", "ai"]),
    st.integers(1, 5000),
    st.sampled_from(FEATURES),
)


def payload(run: int, d: tuple, orgs: list[str]) -> tuple[bytes, dict]:
    key, variant, org_i, period_i, kind, amount, (feature, conversion) = d
    org, time = orgs[org_i], f"{PERIODS[period_i]}-1{key}T08:00:00Z"
    event_id = f"e{key}"
    if kind == "ai":
        quantity = Decimal(amount) / (8 if variant else 1)
        raw = ai(event_id, feature, str(quantity), conversion.unit, org=org, time=time)
        effect = {
            "meter": "ai",
            "org": org,
            "period": PERIODS[period_i],
            "feature": feature,
            "quantity": Fraction(amount, 8 if variant else 1),
        }
    else:
        raw = api(
            event_id,
            count=amount + variant,
            kind="integration" if kind == "api" else "ui",
            org=org,
            time=time,
        )
        effect = {
            "meter": kind,
            "org": org,
            "period": PERIODS[period_i],
            "quantity": amount + variant,
        }
    return raw, effect | {"source": f"run{run}", "raw": raw}


def model_balances(effects: list[dict]) -> dict[tuple[str, str, str], Fraction]:
    """First delivery of a key wins; everything else changes nothing."""
    first: dict[bytes, dict] = {}
    for effect in effects:
        first.setdefault(effect["key"], effect)
    api_used: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    ai_used: dict[tuple[str, str, str], Fraction] = defaultdict(Fraction)
    for effect in first.values():
        if effect["meter"] == "api":
            api_used[(effect["org"], effect["period"])] += effect["quantity"]
        elif effect["meter"] == "ai":
            ai_used[(effect["org"], effect["period"], effect["feature"])] += effect["quantity"]
    out: dict[tuple[str, str, str], Fraction] = {}
    for (org, period), used in api_used.items():
        out[(org, period, f"org/{org}/{period}/api_request/usage")] = used
        out[(org, period, f"org/{org}/{period}/api_request/allowance")] = -used
    allowance: dict[tuple[str, str], Fraction] = defaultdict(Fraction)
    for (org, period, feature), used in ai_used.items():
        conversion = CARD.ai.features[feature]
        tokens = Fraction(ceil(used * conversion.tokens / conversion.per * 10**6), 10**6)
        out[(org, period, f"org/{org}/{period}/ai_token/usage/{feature}")] = tokens
        allowance[(org, period)] -= tokens
    for (org, period), tokens in allowance.items():
        out[(org, period, f"org/{org}/{period}/ai_token/allowance")] = tokens
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    deliveries=st.lists(delivery, min_size=1, max_size=30),
    cuts=st.lists(st.integers(1, 30), max_size=4),
    redeliver=st.booleans(),
)
async def test_random_deliveries_give_exactly_the_models_balances(
    engine: AsyncEngine,
    service: MeteringService,
    deliveries: list[tuple],
    cuts: list[int],
    redeliver: bool,
) -> None:
    run = next(counter)
    orgs = [f"p{run}-a", f"p{run}-b"]
    for org in orgs:
        await organizations.add(bootstrap.database(engine), org, "USD")
    entries, effects = [], []
    for n, d in enumerate(deliveries):
        raw, effect = payload(run, d, orgs)
        raw = raw.replace(b'"source": "test"', f'"source": "run{run}"'.encode())
        entries.append((f"{run + 1}-{n}", {b"event": raw}))
        effects.append(effect | {"key": json.loads(raw)["id"]})
    bounds = sorted({0, len(entries), *(c for c in cuts if c < len(entries))})
    for start, end in itertools.pairwise(bounds):
        await service.process("prop", entries[start:end])
        if redeliver:  # a crash between commit and XACK: the same entries come again
            await service.process("prop", entries[start:end])
    expected = model_balances(effects)
    actual = {}
    for org in orgs:
        for row in await read(engine, org_balances.balances, org, None):
            period = row.account.split("/")[2]
            actual[(org, period, row.account)] = Fraction(row.balance)
    assert actual == expected
    assert (await verify(engine)).ok
