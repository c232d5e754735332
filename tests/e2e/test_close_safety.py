"""The close is idempotent, safe when run twice at once or killed halfway, never rewrites
an invoice, and bills late usage as adjustments on the next invoice."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import GRACE, after, balance, close, document, license_day, line, meter
from support.ledger_support import ORGS, ai, api, every_row, read, urls_of
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.reads import invoices
from tally.adapters.postgres.verification import verify
from tally.config import Settings
from tally.service_layer import organizations
from tally.service_layer.metering import MeteringService
from tally.service_layer.month_close import CloseRefused, close_period

AUG, SEP, OCT = "2026-08", "2026-09", "2026-10"
DRIVER = Path(__file__).with_name("crash_close.py")


async def usage_for_every_org(service: MeteringService) -> None:
    payloads = []
    for n, org in enumerate(ORGS):
        payloads += [
            license_day(f"{org}-lic", "gc2", "named", 10 + n, org=org, day="2026-10-03"),
            api(f"{org}-r", count=1_500_000 + 100_000 * n, org=org),
            ai(f"{org}-ai", "virtual_agent", 1_300 + 500 * n, "session", org=org),
        ]
    await meter(service, payloads)


async def all_documents(engine: AsyncEngine, period: str) -> list[dict]:
    return [await document(engine, org, period) for org in ORGS]


async def test_a_rerun_changes_nothing_and_returns_the_same_invoices(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await usage_for_every_org(service)
    first = await close(engine, OCT)
    before = await all_documents(engine, OCT)
    again = await close(engine, OCT)
    assert (first.issued, again.issued, again.invoices) == (3, 0, 3)
    assert await all_documents(engine, OCT) == before
    assert [doc["number"] for doc in before] == ["INV-000001", "INV-000002", "INV-000003"]


async def test_two_closes_at_once_produce_one_set(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await usage_for_every_org(service)
    reports = await asyncio.gather(close(engine, OCT, chunk=1), close(engine, OCT, chunk=1))
    assert sorted(report.issued for report in reports) == [0, 3]
    assert any(report.waited for report in reports)
    listed = await every_row(engine, invoices.invoice_listing(period=OCT))
    assert [row.number for row in listed] == ["INV-000001", "INV-000002", "INV-000003"]


async def test_a_close_killed_halfway_leaves_no_partial_invoice_and_reruns(
    engine: AsyncEngine, service: MeteringService, settings: Settings
) -> None:
    await usage_for_every_org(service)
    env = os.environ | {
        "TALLY_DATABASE_URL": urls_of(settings).database,
        "TALLY_REDIS_URL": urls_of(settings).redis,
        "TALLY_CLOSE_CHUNK": "1",
        "PYTHONPATH": str(DRIVER.parent),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(DRIVER),
        OCT,
        after(OCT).isoformat(),
        "2",  # dies inside the second organization's transaction, its invoice written
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == -signal.SIGKILL, stderr.decode()[-2000:]

    survived = await every_row(engine, invoices.invoice_listing(period=OCT))
    assert [row.org for row in survived] == ["acme"]  # globex's invoice rolled back whole
    async with raw_connection(engine) as conn:
        assert await conn.fetchval("SELECT count(*) FROM invoice_line") == 2
        assert await conn.fetchval("SELECT count(*) FROM journal_entry WHERE org = 'globex' "
                                   "AND kind <> 'usage'") == 0  # fmt: skip

    report = await close(engine, OCT)
    assert report.issued == 2
    listed = await every_row(engine, invoices.invoice_listing(period=OCT))
    assert [row.number for row in listed] == ["INV-000001", "INV-000002", "INV-000003"]
    for org, currency in ORGS.items():
        doc = await document(engine, org, OCT)
        assert await balance(engine, f"org/{org}/{OCT}/{currency}/receivable") == doc["total"]
        assert await balance(engine, f"org/{org}/{OCT}/api_request/allowance") == 0
    assert (await verify(engine)).ok


async def test_a_period_closes_only_after_its_grace_time(engine: AsyncEngine) -> None:
    too_early = datetime(2026, 11, 1, 12, tzinfo=UTC)
    with pytest.raises(CloseRefused, match="closed from 2026-11-02T00:00Z"):
        await close_period(bootstrap.database(engine), OCT, too_early, timedelta(hours=24))
    with pytest.raises(CloseRefused, match="closed from 2026-11-01T12:01Z"):
        await close_period(
            bootstrap.database(engine), OCT, too_early, timedelta(hours=12, minutes=1)
        )
    report = await close_period(bootstrap.database(engine), OCT, too_early, timedelta(hours=12))
    assert report.invoices == 0  # nothing to bill: ORGS were created after October


async def test_late_usage_becomes_adjustments_on_the_next_invoice(
    engine: AsyncEngine, service: MeteringService
) -> None:
    aug = {"time": "2026-08-20T12:00:00Z"}
    await meter(
        service,
        [
            license_day("lic", "gc2", "named", 20, org="acme", day="2026-08-01"),
            api("r1", count=2_000_000, **aug),  # 200,000 of 2,200,000 left: they expire
            ai("a1", "agent_copilot", 4_900, "token", **aug),  # 100 of 5,000 tokens expire
        ],
    )
    await close(engine, AUG)
    august = await document(engine, "acme", AUG)
    assert str(august["total"]) == "0.00"

    await meter(
        service,
        [
            api("late-1", count=150_000, **aug),  # within what expired
            api("late-2", count=100_000, **aug),  # 50,000 more from what expired, 50,000 over
            ai("late-3", "agent_copilot", 300, "token", **aug),  # 100 from expired, 200 over
        ],
    )
    story = await read(engine, event_reads.event_story, "test", "late-2")
    assert story is not None and story.billing.late
    assert "next close" in story.billing.detail
    assert await balance(engine, f"org/acme/{AUG}/api_request/allowance") == -250_000
    assert (await verify(engine)).ok  # late usage not yet billed is not a finding

    await close(engine, SEP)
    september = await document(engine, "acme", SEP)
    assert [(a["period"], a["invoice"], a["meter"], str(a["amount"]))
            for a in september["adjustments"]] == [
        (AUG, august["number"], "ai_tokens", "200.00"),
        (AUG, august["number"], "api_requests", "5.00"),
    ]  # fmt: skip
    assert str(september["total"]) == "205.00"
    assert await document(engine, "acme", AUG) == august  # never rewritten
    assert await balance(engine, f"org/acme/{AUG}/api_request/allowance") == 0
    assert await balance(engine, f"org/acme/{AUG}/ai_token/allowance") == 0
    assert await balance(engine, f"org/acme/{SEP}/USD/receivable") == Decimal("205.00")
    story = await read(engine, event_reads.event_story, "test", "late-2")
    assert story is not None and story.billing.invoice == september["number"]

    # later still: nothing expired is left, so it is all overage at August's price
    await meter(service, [api("late-4", count=10_000, time="2026-08-31T23:59:59Z")])
    await close(engine, OCT)
    october = await document(engine, "acme", OCT)
    assert [str(a["amount"]) for a in october["adjustments"]] == ["1.00"]
    assert "0 from the expired allocation" in october["adjustments"][0]["description"]
    assert line(october, "api_requests")["used"] == 0
    assert (await verify(engine)).ok


async def test_small_late_amounts_are_rounded_as_one_total_not_one_by_one(
    engine: AsyncEngine, service: MeteringService
) -> None:
    aug = {"time": "2026-08-20T12:00:00Z"}
    await meter(
        service,
        [
            license_day("lic", "gc2", "named", 1, org="acme", day="2026-08-01"),
            api("exact", count=110_000, **aug),  # the allocation, used exactly
        ],
    )
    await close(engine, AUG)
    amounts = []
    for n, period in enumerate((SEP, OCT)):
        await meter(service, [api(f"late-{n}", count=50, **aug)])  # USD 0.005 each time
        await close(engine, period)
        amounts += [
            str(a["amount"]) for a in (await document(engine, "acme", period))["adjustments"]
        ]
    # 50 late requests bill 0.01 (0.005 rounded up); 100 in all are 0.01, so the next bills 0
    assert amounts == ["0.01", "0.00"]
    assert await balance(engine, f"platform/{AUG}/USD/revenue/api_request") == Decimal("-0.0100")
    assert await balance(engine, f"platform/{AUG}/USD/rounding") == 0


async def test_usage_of_an_organization_added_after_the_close_gets_its_invoice(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("a", count=10, time="2026-08-10T00:00:00Z")])
    await close(engine, AUG)
    await organizations.add(
        bootstrap.database(engine), "newco", "USD"
    )  # its August events were dead letters
    await meter(service, [api("n", count=2_000_000, org="newco", time="2026-08-10T00:00:00Z")])
    story = await read(engine, event_reads.event_story, "test", "n")
    assert story is not None and story.billing.late
    await close(engine, SEP)
    newco = await document(engine, "newco", AUG)  # the close of September issued it first
    assert str(newco["total"]) == "200.00"  # no license report: no allocation
    listed = await every_row(engine, invoices.invoice_listing(period=None))
    assert [(row.number, row.org, row.period) for row in listed] == [
        ("INV-000001", "acme", AUG),
        ("INV-000002", "newco", AUG),
    ]
    assert await balance(engine, f"org/newco/{AUG}/api_request/allowance") == 0
    assert (await verify(engine)).ok


async def test_the_close_clock_never_runs_ahead_of_the_real_one(engine: AsyncEngine) -> None:
    with pytest.raises(CloseRefused, match="ahead of the real one"):
        await close_period(
            bootstrap.database(engine), OCT, after(OCT), GRACE, now=after(OCT) - timedelta(hours=1)
        )


@pytest.mark.parametrize(
    ("statement", "message"),
    [
        ("UPDATE invoice SET total = 0", "immutable"),
        ("DELETE FROM invoice_line", "immutable"),
        ("UPDATE invoice_feature SET tokens = 0", "immutable"),
        ("DELETE FROM billed_entry", "immutable"),
        ("TRUNCATE invoice CASCADE", "immutable"),
        ("UPDATE invoice_counter SET last = 0", "never goes back"),
        ("INSERT INTO invoice (number, org, period, currency, total, rate_card_version, issued_at)"
         " VALUES (9, 'acme', '2026-09', 'USD', 0, '2020-01', now())", "gap"),
        ("INSERT INTO billed_entry (entry_id, invoice, meter) SELECT entry_id, invoice, meter"
         " FROM billed_entry LIMIT 1", "duplicate key"),
    ],
)  # fmt: skip
async def test_the_database_refuses_to_change_an_issued_invoice(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, statement: str, message: str
) -> None:
    """Even the tables' owner, whom no grant limits, is refused by the triggers."""
    await usage_for_every_org(service)
    await close(engine, OCT)
    with pytest.raises(asyncpg.PostgresError, match=message):
        async with raw_transaction(owner) as conn:
            await conn.execute(statement)


async def test_the_database_refuses_an_incomplete_invoice(engine: AsyncEngine) -> None:
    with pytest.raises(asyncpg.PostgresError, match="meter lines, not 2"):
        async with raw_transaction(engine) as conn:
            await conn.execute(
                "INSERT INTO invoice (number, org, period, currency, total, rate_card_version,"
                " issued_at) VALUES (1, 'acme', '2026-09', 'USD', 0, '2020-01', now())"
            )


@pytest.mark.parametrize(
    ("tamper", "check"),
    [
        ("UPDATE invoice SET total = total + 1 WHERE org = 'acme'", "invoice"),
        ("UPDATE invoice_line SET used = used - 1 WHERE meter = 'api_requests'", "invoice"),
        ("DELETE FROM billed_entry WHERE entry_id = (SELECT min(entry_id) FROM billed_entry)",
         "allowance"),
    ],
)  # fmt: skip
async def test_verify_names_an_invoice_that_no_longer_matches_the_ledger(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, tamper: str, check: str
) -> None:
    await usage_for_every_org(service)
    await close(engine, OCT)
    assert (await verify(engine)).ok
    async with raw_transaction(owner) as conn:  # what only a superuser could do
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(tamper)
    findings = (await verify(engine)).findings
    assert check in {finding.check for finding in findings}, findings
