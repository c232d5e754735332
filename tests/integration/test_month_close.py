"""The month close against real PostgreSQL: invoices, allocation, overage, expiry, no
carryover, commitments, and what the ledger holds afterwards."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import balance, close, document, license_day, line, meter
from support.ledger_support import ai, api
from tally import bootstrap
from tally.adapters.postgres.verification import verify
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService

OCT = "2026-10"


def fair_use_example(org: str) -> list[bytes]:
    """gc2 named, 20 users, 3,000,000 billable requests (the fair-use policy's worked example)."""
    return [
        license_day(f"{org}-lic", "gc2", "named", 20, org=org, day="2026-10-05"),
        *(api(f"{org}-{n}", count=1_000_000, org=org) for n in range(3)),
        api(f"{org}-ui", count=5_000, kind="ui", org=org),  # not billable
    ]


async def test_fair_use_example_in_usd_eur_and_jpy(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(
        service,
        [*fair_use_example("acme"), *fair_use_example("globex"), *fair_use_example("initech")],
    )
    report = await close(engine, OCT)
    assert report.issued == 3

    acme = await document(engine, "acme", OCT)
    assert set(acme) == {
        "number", "org", "period", "currency", "status", "lines", "adjustments", "total", "seal",
        "seal_signature",
    }  # fmt: skip
    assert acme["seal_signature"] is None  # no seal key configured
    assert set(acme["seal"]) == {"root", "sequence", "sealed_at", "entries"}
    api_line = line(acme, "api_requests")
    assert (api_line["allocation"], api_line["used"], api_line["overage"]) == (
        2_200_000,
        3_000_000,
        800_000,
    )
    assert api_line["unit_price"] == Decimal("0.0001")
    assert str(api_line["amount"]) == "80.00"
    assert str(acme["total"]) == "80.00" and acme["currency"] == "USD"
    assert acme["status"] == "finalized" and acme["adjustments"] == []
    ai_line = line(acme, "ai_tokens")  # present though nothing was used
    assert (ai_line["allocation"], ai_line["used"], ai_line["amount"]) == (5_000, 0, 0)

    assert str((await document(engine, "globex", OCT))["total"]) == "64.00"
    assert str((await document(engine, "initech", OCT))["total"]) == "9600"

    for org, currency in (("acme", "USD"), ("globex", "EUR"), ("initech", "JPY")):
        for unit in ("api_request", "ai_token"):
            assert await balance(engine, f"org/{org}/{OCT}/{unit}/allowance") == 0
        doc = await document(engine, org, OCT)
        assert await balance(engine, f"org/{org}/{OCT}/{currency}/receivable") == doc["total"]
    assert (await verify(engine)).ok


@pytest.mark.parametrize(
    ("agents", "usage", "tokens"),
    [
        # the AI token pricing page's example centres: well within the allocation, no overage
        (50, {"agent_copilot": 2_500, "ai_scoring": 4_000, "messaging": 500,
              "virtual_agent": 1_000}, Decimal("4701.25")),
        (200, {"agent_copilot": 11_000, "ai_scoring": 10_000, "ai_translate": 300,
               "messaging": 5_000, "voice_bot": 5_000, "virtual_agent": 4_000},
         Decimal("19809.617648")),
        (1000, {"agent_copilot": 50_000, "ai_scoring": 40_000, "ai_translate": 3_000,
                "messaging": 50_000, "voice_bot": 20_000, "digital_bot": 10_000,
                "virtual_agent": 20_000}, Decimal("93527.549021")),
    ],
)  # fmt: skip
async def test_seed_003_centres_pay_no_ai_overage(
    engine: AsyncEngine, service: MeteringService, agents: int, usage: dict, tokens: Decimal
) -> None:
    units = {"agent_copilot": "token", "ai_scoring": "evaluation", "ai_translate": "minute",
             "messaging": "message", "voice_bot": "minute", "digital_bot": "session",
             "virtual_agent": "session"}  # fmt: skip
    await meter(
        service,
        [
            license_day("lic", "gc2", "named", agents, org="acme", day="2026-10-01"),
            *(ai(f"ai-{f}", f, q, units[f]) for f, q in usage.items()),
        ],
    )
    await close(engine, OCT)
    doc = await document(engine, "acme", OCT)
    tokens_line = line(doc, "ai_tokens")
    assert tokens_line["allocation"] == 250 * agents
    assert tokens_line["used"] == tokens
    assert tokens_line["overage"] == 0 and str(doc["total"]) == "0.00"
    expired = 250 * agents - tokens
    assert await balance(engine, f"platform/{OCT}/ai_token/expired") == expired
    assert await balance(engine, f"org/acme/{OCT}/ai_token/allowance") == 0


async def test_a_centre_over_its_tokens_pays_whole_tokens(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(
        service,
        [
            license_day("lic", "gc2", "named", 10, org="globex", day="2026-10-01"),
            ai("va", "virtual_agent", 1_300, "session", org="globex"),  # 2,600 tokens
            ai("vb", "voice_bot", 1, "minute", org="globex"),  # 0.058824 tokens
        ],
    )
    await close(engine, OCT)
    doc = await document(engine, "globex", OCT)
    tokens_line = line(doc, "ai_tokens")
    assert tokens_line["allocation"] == 2_500
    assert tokens_line["used"] == Decimal("2600.058824")
    assert tokens_line["overage"] == 101  # 100.058824 tokens, billed whole, rounded up
    assert str(tokens_line["amount"]) == "80.80"  # EUR 0.80 a token
    assert "virtual_agent 2,600" in tokens_line["description"]
    assert await balance(engine, f"org/globex/{OCT}/ai_token/allowance") == 0
    assert await balance(engine, f"platform/{OCT}/ai_token/unit_rounding") == Decimal("0.941176")
    assert await balance(engine, f"platform/{OCT}/EUR/revenue/ai_token") == Decimal("-80.80")


async def test_pooling_and_counting_by_model(engine: AsyncEngine, service: MeteringService) -> None:
    reports = [
        ("gc1", "named", 12, "2026-10-02"),
        ("gc1", "named", 15, "2026-10-03"),  # the highest day counts
        ("gc1", "named", 9, "2026-10-04"),
        ("gc2", "concurrent", 4, "2026-10-02"),
        ("gc2", "concurrent", 6, "2026-10-09"),  # the highest daily peak counts
        ("gc3", "hourly", "7.5", "2026-10-02"),
        ("gc3", "hourly", 4, "2026-10-03"),  # hours add up
        ("gc3", "hourly", 4, "2026-10-03"),  # ...but a day resent under a new id counts once
    ]
    await meter(
        service,
        [
            *(license_day(f"l{n}", lic, m, a, org="acme", day=d)
              for n, (lic, m, a, d) in enumerate(reports)),
            api("r", count=2_500_000),
        ],
    )  # fmt: skip
    await close(engine, OCT)
    doc = await document(engine, "acme", OCT)
    allowed = 15 * 75_000 + 6 * 143_000 + Decimal("11.5") * 1_261
    assert line(doc, "api_requests")["allocation"] == allowed
    assert line(doc, "api_requests")["overage"] == 2_500_000 - allowed
    assert line(doc, "ai_tokens")["allocation"] == 15 * 250 + 6 * 350  # hourly: no tokens
    assert doc["total"] == ((2_500_000 - allowed) * Decimal("0.0001")).quantize(Decimal("0.01"))


async def test_a_commitment_counts_when_higher_than_the_usage(
    engine: AsyncEngine, service: MeteringService
) -> None:
    db = bootstrap.database(engine)
    await organizations.add_commitment(db, "acme", "gc2", "named", Decimal(10), "2026-10")
    await organizations.add_commitment(db, "acme", "gc2", "named", Decimal(20), "0001-01")  # newer
    await organizations.add_commitment(db, "acme", "gc2", "named", Decimal(40), "2026-11")  # later
    await organizations.add_commitment(db, "globex", "gc2", "named", Decimal(5), "2026-01")
    await meter(
        service,
        [
            license_day("a", "gc2", "named", 14, org="acme", day="2026-10-01"),
            license_day("g", "gc2", "named", 14, org="globex", day="2026-10-01"),
            api("ra", count=3_000_000),
            api("rg", count=3_000_000, org="globex"),
        ],
    )
    await close(engine, OCT)
    acme, globex = await document(engine, "acme", OCT), await document(engine, "globex", OCT)
    # the newest commitment in effect for October counts, as it is above the usage
    assert line(acme, "api_requests")["allocation"] == 20 * 110_000
    assert str(acme["total"]) == "80.00"
    assert line(globex, "api_requests")["allocation"] == 14 * 110_000  # usage above commitment


async def test_no_carryover_into_the_next_month(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(
        service,
        [
            license_day("sep", "gc2", "named", 20, org="acme", day="2026-09-01"),
            api("sep-r", count=100, time="2026-09-10T00:00:00Z"),  # 2,199,900 left unused
            license_day("oct", "gc2", "named", 1, org="acme", day="2026-10-01"),
            api("oct-r", count=210_000),
        ],
    )
    await close(engine, "2026-09")
    await close(engine, OCT)
    september = await document(engine, "acme", "2026-09")
    october = await document(engine, "acme", OCT)
    assert str(september["total"]) == "0.00"
    assert line(september, "api_requests")["allocation"] == 2_200_000
    assert await balance(engine, "platform/2026-09/api_request/expired") == 2_199_900
    assert line(october, "api_requests")["overage"] == 100_000  # nothing carried over
    assert str(october["total"]) == "10.00"
    assert int(october["number"][4:]) == int(september["number"][4:]) + 1
