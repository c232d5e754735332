"""The API usage report , read from the rollups (whole months and month-weeks from
the spans, other days from the daily rows, and the deltas not compacted yet), equals an
independent computation from the raw events, for every section, preset, custom range and
cross-filter; today's events never count."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from support.ledger_support import event
from tally.adapters.postgres import rollups
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.usage_reports import api_usage_report
from tally.domain.api_usage import SECTIONS, DayRange, Preset, day_range, section_rows
from tally.service_layer.metering import MeteringService

CLIENTS = ("crm", "wfm", "bot", "etl", "bi", "sync", "ghost")
URLS = (("GET", "/api/v2/users"), ("POST", "/api/v2/conversations"),
        ("GET", "/api/v2/queues"), ("PUT", "/api/v2/users/{id}"),
        ("DELETE", "/api/v2/x/{id}"), ("PATCH", "/api/v2/y"))  # fmt: skip
STATUSES = (200, 201, 204, 101, 301, 304, 400, 401, 404, 429, 500, 503)
KINDS = ("integration", "appfoundry", "data_action", "embeddable_framework", "ui", "chrome")
BILLABLE = frozenset(KINDS[:4])
SIDES = ("client", "url")


def _mix(today: date) -> list[dict[str, object]]:
    """Events over about four months before today, on day boundaries too, and today."""
    rng = random.Random(10)
    midnight = datetime(today.year, today.month, today.day, tzinfo=UTC)
    times = [midnight - timedelta(seconds=rng.randrange(1, 120 * 86400)) for _ in range(500)]
    times += [midnight, midnight - timedelta(seconds=1), midnight - timedelta(days=7)]
    events = []
    for n, at in enumerate(times):
        method, uri = rng.choice(URLS)
        events.append(
            {
                "id": f"e{n}",
                "time": at,
                # some with an offset: the UTC day decides, not the producer's local day
                "wire_time": at.astimezone(
                    UTC if n % 3 else datetime.fromisoformat("2000-01-01T00:00:00+05:30").tzinfo
                ).isoformat(),
                "client": rng.choice(CLIENTS[:6]) if n % 50 else "ghost",
                "method": method,
                "uri": uri,
                "status": rng.choice(STATUSES),
                "kind": rng.choice(KINDS),
                "count": rng.randint(1, 40),
            }
        )
    events.append({**events[0], "id": "today", "time": midnight, "wire_time": midnight.isoformat(),
                   "client": "today-only", "kind": "integration"})  # fmt: skip
    return events


def _bucket(status: int) -> str:
    if status == 429:
        return "429"
    return {1: "200", 2: "200", 3: "300", 4: "400", 5: "500"}[status // 100]


def _month(day: date, back: int) -> date:
    months = day.year * 12 + day.month - 1 - back
    return date(months // 12, months % 12 + 1, 1)


def _range(preset: Preset, today: date) -> tuple[date, date]:
    yesterday = today - timedelta(days=1)
    return {
        Preset.previous_7_days: (today - timedelta(days=7), yesterday),
        Preset.previous_30_days: (today - timedelta(days=30), yesterday),
        Preset.this_month: (today.replace(day=1), yesterday),
        Preset.last_month: (_month(today, 1), _month(today, 0) - timedelta(days=1)),
        Preset.previous_3_months: (_month(today, 3), _month(today, 0) - timedelta(days=1)),
        Preset.custom: (today - timedelta(days=45), yesterday),  # asked up to today + 5
    }[preset]


def _pct(part: int, whole: int) -> Decimal:
    if whole == 0:
        return Decimal(0)
    share = round(Fraction(part * 100, whole), 2)
    return (Decimal(share.numerator) / Decimal(share.denominator)).quantize(Decimal("0.01"))


def _expected(
    events: list[dict[str, object]], first: date, last: date, client: str | None, url: str | None
) -> dict[str, list[dict[str, object]]]:
    """Every section, computed straight from the events (not from rollup rows)."""
    chosen = [
        e for e in events
        if e["kind"] in BILLABLE and first <= e["time"].date() <= last
    ]  # fmt: skip
    buckets = ("200", "300", "400", "429", "500")
    per: dict[str, dict[str, Counter[str]]] = {
        "client": defaultdict(Counter),
        "url": defaultdict(Counter),
    }
    pairs: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    filtered: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for e in chosen:
        name = {"client": str(e["client"]), "url": f"{e['method']} {e['uri']}"}
        b, n = _bucket(int(e["status"])), int(e["count"])
        total[b] += n
        per["client"][name["client"]][b] += n
        per["url"][name["url"]][b] += n
        pairs[(name["client"], name["url"])][b] += n
        if client is not None and name["client"] == client:
            filtered[name["url"]] += n
        if url is not None and name["url"] == url:
            filtered[name["client"]] += n
    all_requests = sum(total.values())

    def ok(c: Counter[str]) -> int:
        return c["200"] + c["300"]

    def ranked(side: str, shown: bool) -> list[dict[str, object]]:
        order = sorted(per[side].items(), key=lambda i: (-sum(i[1].values()), i[0]))
        return [
            {"rank": rank, side: name, "requests": sum(c.values()), "successful": ok(c),
             "failed": sum(c.values()) - ok(c), **{f"status {b}": c[b] for b in buckets},
             "share %": _pct(sum(c.values()), all_requests),
             "filtered share %": _pct(filtered[name], sum(filtered.values())) if shown else None}
            for rank, (name, c) in enumerate(order, start=1)
        ]  # fmt: skip

    clients = ranked("client", url is not None)
    urls = ranked("url", client is not None)
    client_rank = {row["client"]: row["rank"] for row in clients}
    pair_order = sorted(
        pairs.items(), key=lambda i: (client_rank[i[0][0]], -sum(i[1].values()), i[0][1])
    )
    return {
        "top-clients": clients[:5],
        "statuses": [{"status": b, "requests": total[b], "share %": _pct(total[b], all_requests)}
                     for b in buckets],
        "top-urls": urls[:5],
        "clients": clients,
        "client-statuses": [{"client": r["client"],
                             **{f"status {b}": r[f"status {b}"] for b in buckets}}
                            for r in clients],
        "client-urls": [{"client": c, "url": u, "requests": sum(n.values()), "successful": ok(n),
                         "failed": sum(n.values()) - ok(n)} for (c, u), n in pair_order],
        "urls": urls,
        "totals": [{"requests": all_requests, "successful": ok(total),
                    "failed": all_requests - ok(total),
                    "successful %": _pct(ok(total), all_requests),
                    "failed %": _pct(all_requests - ok(total), all_requests),
                    "clients": len(clients), "urls": len(urls)}],
    }  # fmt: skip


@pytest.fixture
async def metered(engine: AsyncEngine, service: MeteringService) -> list[dict[str, object]]:
    events = _mix(datetime.now(UTC).date())
    raws = [
        event("api.request", str(e["id"]), {"oauth_client_id": e["client"], "method": e["method"],
              "template_uri": e["uri"], "status": e["status"], "client_kind": e["kind"],
              "count": e["count"]}, time=str(e["wire_time"]))
        for e in events
    ]  # fmt: skip
    for start in range(0, len(raws), 97):
        chunk = raws[start : start + 97]
        await service.process("s", [(f"{start + i}-0", {b"event": r}) for i, r in enumerate(chunk)])
        if start == 97 * 3:  # half compacted (daily rows, spans), half still in the deltas
            async with raw_connection(engine) as conn, conn.transaction():
                assert await rollups.compact(conn) > 0
    return events


@pytest.mark.parametrize("preset", list(Preset))
@pytest.mark.parametrize("cross", [None, ("client", "crm"), ("url", "GET /api/v2/users")])
async def test_every_section_equals_the_raw_events(
    engine: AsyncEngine,
    metered: list[dict[str, object]],
    preset: Preset,
    cross: tuple[str, str] | None,
) -> None:
    today = datetime.now(UTC).date()
    first, last = _range(preset, today)
    days = day_range(preset, today, today - timedelta(days=45), today + timedelta(days=5))
    assert (days.first, days.last) == (first, last)
    client = cross[1] if cross and cross[0] == "client" else None
    url = cross[1] if cross and cross[0] == "url" else None
    async with raw_connection(engine) as conn:
        got = await api_usage_report(conn, "acme", days, client, url)
    expected = _expected(metered, first, last, client, url)
    for section in SECTIONS:
        assert section_rows(got, section) == expected[section], section
    assert "today-only" not in {row.name for row in got.clients}


@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
@given(first=st.integers(0, 125), length=st.integers(1, 100))
async def test_any_range_equals_the_raw_events(
    engine: AsyncEngine, metered: list[dict[str, object]], first: int, length: int
) -> None:
    """Ranges that start and end anywhere: across months and month-weeks, on edge days."""
    last = datetime.now(UTC).date() - timedelta(days=1 + first)
    days = DayRange(last - timedelta(days=length - 1), last)
    async with raw_connection(engine) as conn:
        got = await api_usage_report(conn, "acme", days, None, None)
    expected = _expected(metered, days.first, days.last, None, None)
    for section in ("client-urls", "urls", "totals"):
        assert section_rows(got, section) == expected[section], section
