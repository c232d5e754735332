"""Billing through the CLI, as a finance user runs it: commit, close, invoices in every
format, late usage, and clear refusals."""

from __future__ import annotations

import csv
import io

from support.cli import tally, tally_all, xadd_like_an_integration
from support.close_support import license_day
from support.ledger_support import api
from tally.config import Settings

SEP = "2026-09"
SEPT = {"time": "2026-09-15T12:00:00Z"}


async def test_closing_a_month_and_reading_its_invoices(settings: Settings) -> None:
    assert (await tally(settings, "migrate")).code == 0
    added = await tally_all(
        settings,
        ["org", "add", "acme", "--currency", "USD"],
        ["org", "add", "globex", "--currency", "JPY"],
    )
    assert all(run.code == 0 for run in added), added
    commit, wrong_model, wrong_unit, tiny = await tally_all(
        settings,
        ["org", "commit", "globex", "--license", "gc2", "--model", "named", "--users", "20"],
        ["org", "commit", "globex", "--license", "communicate", "--model", "hourly",
         "--hours", "5"],
        ["org", "commit", "globex", "--license", "gc2", "--model", "named", "--hours", "5"],
        ["org", "commit", "globex", "--license", "gc2", "--model", "hourly", "--hours",
         "1e-20000"],
    )  # fmt: skip
    assert commit.code == 0, commit
    assert wrong_model.code == 2 and "no allocation for communicate hourly" in wrong_model.said
    assert wrong_unit.code == 2 and "--users for named or concurrent" in wrong_unit.said
    assert tiny.code == 2 and "at most 6 decimal places" in tiny.said, tiny

    for payload in (
        license_day("lic", "gc2", "named", 20, org="acme", day="2026-09-02"),
        *(api(f"r{n}", count=1_000_000, **SEPT) for n in range(3)),
        api("g1", count=3_000_000, org="globex", **SEPT),  # no license: the commitment counts
    ):
        await xadd_like_an_integration(settings, payload)
    assert (await tally(settings, "consume", "--until-idle")).code == 0

    early, ahead, far, closed, missing = await tally_all(
        settings,
        ["close", "--period", SEP, "--as-of", "2026-10-01T20:00:00Z"],
        ["close", "--period", SEP, "--as-of", "2099-01-01T00:00:00Z"],
        ["close", "--period", "9999-12"],
        ["close", "--period", SEP, "--as-of", "2026-10-02T00:00:00Z", "--format", "json"],
        ["invoice", "show", "--org", "acme", "--period", "2026-08"],
    )
    assert early.code == 1 and "can be closed from 2026-10-02T00:00Z" in early.said, early
    assert ahead.code == 1 and "ahead of the real one" in ahead.said, ahead
    assert far.code == 2 and "is not a period" in far.said, far
    assert all("Traceback" not in run.stderr for run in (early, ahead, far))
    assert missing.code == 1 and "no invoice for acme in 2026-08" in missing.said, missing
    report = closed.json()
    assert report["issued"] == 2
    assert [(i["org"], i["total"]) for i in report["invoices"]] == [
        ("acme", "80.00"),
        ("globex", "9600"),  # 3,000,000 - 2,200,000 committed, at JPY 0.012
    ]

    again, shown, as_csv, as_html, listed = await tally_all(
        settings,
        ["close", "--period", SEP, "--as-of", "2026-10-03T00:00:00Z", "--format", "json"],
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "json"],
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "csv"],
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "html"],
        ["invoice", "show", "--org", "acme", "--period", SEP],
    )
    assert again.json()["issued"] == 0 and again.json()["invoices"] == report["invoices"]
    doc = shown.json()
    assert set(doc.pop("seal")) == {"root", "sequence", "sealed_at", "entries"}  # the month seal
    assert doc.pop("seal_signature") is None  # no seal key: not signed
    assert doc == {
        "number": "INV-000001",
        "org": "acme",
        "period": SEP,
        "currency": "USD",
        "status": "finalized",
        "lines": [
            {
                "meter": "api_requests",
                "description": "API requests beyond the allocation (gc2 named 20 x 110,000)",
                "allocation": "2200000",
                "used": "3000000",
                "overage": "800000",
                "unit_price": "0.0001",
                "amount": "80.00",
            },
            {
                "meter": "ai_tokens",
                "description": "AI Experience tokens beyond the allocation (gc2 named 20 x 250)",
                "allocation": "5000",
                "used": "0",
                "overage": "0",
                "unit_price": "1.00",
                "amount": "0.00",
            },
        ],
        "adjustments": [],
        "total": "80.00",
    }
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(row["kind"], row["meter"], row["amount"]) for row in table] == [
        ("line", "api_requests", "80.00"),
        ("line", "ai_tokens", "0.00"),
        ("total", "", "80.00"),
        ("seal", "", ""),
    ]
    assert as_html.stdout.startswith("<!doctype html>") and "INV-000001" in as_html.stdout
    assert "80.00" in listed.stdout and "bills entries" in listed.said

    # a late request for September: metered, reported late, billed on October's invoice
    await xadd_like_an_integration(settings, api("late", count=10_000, **SEPT))
    assert (await tally(settings, "consume", "--until-idle")).code == 0
    story = (await tally(settings, "events", "show", "test", "late", "--format", "json")).json()
    assert story["billing"]["late"] is True
    october = (
        await tally(settings, "close", "--period", "2026-10", "--as-of", "2026-11-02T00:00:00Z",
                    "--format", "json")
    ).json()  # fmt: skip
    acme = next(i for i in october["invoices"] if i["org"] == "acme")
    assert (acme["total"], acme["adjustments"]) == ("1.00", 1)
    shown_again = await tally(settings, "invoice", "show", "--org", "acme", "--period", SEP,
                              "--format", "json")  # fmt: skip
    assert shown_again.json() == shown.json()  # September's invoice is never rewritten

    # every invoice recomputes from its raw events alone, byte for byte, digest included
    every, one, missing_invoice, neither = await tally_all(
        settings,
        ["invoice", "reproduce", "--all", "--json"],
        ["invoice", "reproduce", "INV-000001"],
        ["invoice", "reproduce", "INV-000999"],
        ["invoice", "reproduce"],
    )
    assert every.code == 0, every
    reproduced = every.json()
    assert [r["number"] for r in reproduced] == [f"INV-{n:06d}" for n in range(1, 4)]
    assert all(r["reproduced"] and r["digest"] == r["digest_now"] for r in reproduced)
    assert one.code == 0 and "INV-000001 (acme 2026-09, USD 80.00): reproduced" in one.said
    assert missing_invoice.code == 2 and "no invoice INV-000999" in missing_invoice.said
    assert neither.code == 2 and "NUMBER" in neither.said
