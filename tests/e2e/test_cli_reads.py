"""The auditor's reads through the CLI: accounts, a balance as of an instant, the trial
balance, entries, one entry, an invoice's lineage and the ADS export; and ``tally bench
api`` on a small fill (no timing is asserted: figures come from real runs)."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import make_url

from support.cli import tally, tally_all, xadd_like_an_integration
from support.close_support import license_day
from support.ledger_support import api
from tally.adapters.postgres import databases
from tally.config import Settings

OCT = {"org": "acme", "time": "2026-10-10T10:00:00Z"}


async def test_an_auditor_reads_the_ledger_from_the_cli(settings: Settings, tmp_path: Path) -> None:
    assert (await tally(settings, "migrate")).code == 0
    assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
    for payload in (
        license_day("lic", "gc2", "named", 20, org="acme", day="2026-10-02"),
        *(api(f"r{n}", count=1_000_000, **OCT) for n in range(3)),
    ):
        await xadd_like_an_integration(settings, payload)
    assert (await tally(settings, "consume", "--until-idle")).code == 0
    closed = await tally(
        settings, "close", "--period", "2026-10", "--as-of", "2026-11-02T00:00:00Z"
    )
    assert closed.code == 0, closed

    listed, tb, before, page, lineage, gl = await tally_all(
        settings,
        ["ledger", "accounts", "--org", "acme", "--unit", "api_request", "-f", "json"],
        ["ledger", "trial-balance", "--period", "2026-10", "-f", "json"],
        ["ledger", "balance", "org/acme/2026-10/api_request/usage", "--as-of",
         "2000-01-01T00:00:00Z", "-f", "json"],
        ["ledger", "entries", "--org", "acme", "--limit", "1", "-f", "json"],
        ["invoice", "lineage", "INV-000001", "-f", "json"],
        ["ledger", "export", "--period", "2026-10", "--output", str(tmp_path / "gl.csv")],
    )  # fmt: skip
    balances = {row["code"]: Decimal(row["balance"]) for row in listed.json()}
    assert balances == {
        "org/acme/2026-10/api_request/usage": Decimal(3_000_000),
        "org/acme/2026-10/api_request/allowance": Decimal(0),
    }
    assert tb.json()["balanced"] is True
    assert {total["unit"] for total in tb.json()["totals"]} == {"api_request", "ai_token", "USD"}
    assert before.json()["balance"] == "0" and before.json()["movements"]["items"] == []
    first = page.json()
    assert len(first["items"]) == 1 and first["next"]
    second = await tally(settings, "ledger", "entries", "--org", "acme", "--after",
                         first["next"], "--limit", "1", "-f", "json")  # fmt: skip
    assert second.json()["items"][0]["id"] > first["items"][0]["id"]
    events = {row["event_id"] for row in lineage.json()["items"] if row["event_id"]}
    assert events == {"r0", "r1", "r2"}
    entry_id = next(row["entry_id"] for row in lineage.json()["items"] if row["event_id"])
    entry = (await tally(settings, "ledger", "entry", str(entry_id), "--raw", "-f", "json")).json()
    assert {event["id"] for event in entry["events"]} == {"r0", "r1", "r2"}
    assert all(json.loads(event["raw"])["subject"] == "acme" for event in entry["events"])

    assert gl.code == 0, gl
    rows = list(csv.DictReader(io.StringIO((tmp_path / "gl.csv").read_text())))
    totals: dict[str, Decimal] = {}
    for row in rows:
        sign = 1 if row["amountCreditDebitIndicator"] == "D" else -1
        unit = row["amountCurrency"]
        totals[unit] = totals.get(unit, Decimal(0)) + sign * Decimal(row["amount"])
    assert set(totals) == {"api_request", "ai_token", "USD"}
    assert all(total == 0 for total in totals.values())
    streamed = await tally(settings, "ledger", "export", "--period", "2026-10", "--shape",
                           "trial-balance", "--format", "json")  # fmt: skip
    assert {row["glAccountNumber"] for row in streamed.json()} == {
        row["account"] for row in tb.json()["rows"]
    }

    missing, bad_cursor = await tally_all(
        settings,
        ["invoice", "lineage", "99"],
        ["ledger", "entries", "--after", "nonsense"],
    )
    assert missing.code == 1 and "no invoice INV-000099" in missing.said
    assert bad_cursor.code == 2 and "cursor" in bad_cursor.said


async def test_the_api_benchmark_fills_and_measures_a_small_ledger(settings: Settings) -> None:
    run = await tally(settings, "bench", "api", "--lines", "20000", "--orgs", "20",
                      "--samples", "50", "--verify", "--http", "--keep", "--json")  # fmt: skip
    figures = run.json()
    assert figures["lines"] == 20_000 and figures["entries"] == 10_000
    assert figures["accounts"] == 20 * 10 * 4
    assert figures["export_lines"] == 2_000  # one month of ten
    for figure in ("balance_as_of_p99_ms", "trial_balance_max_ms", "entries_first_page_p99_ms",
                   "export_lines_per_second", "http_export_lines_per_second",
                   "http_trial_balance_max_ms"):  # fmt: skip
        assert figures[figure] > 0
    kept = run.stderr.split("kept: --filled ")[1].split()[0]
    try:  # measured again without a fill: the same ledger, read from the database
        again = (await tally(settings, "bench", "api", "--filled", kept, "--json")).json()
        assert again["fill_seconds"] == 0
        for size in ("lines", "entries", "accounts", "orgs", "periods", "export_lines"):
            assert again[size] == figures[size]
        # the drain into a copy of it: the lanes continue where the fill left them
        template = make_url(kept).database
        assert template is not None
        drain = await tally(settings, "bench", "--events", "1000", "--template", template,
                            "--no-verify", "--json")  # fmt: skip
        drained = drain.json()
        assert drained["events"] == 1000 and drained["entries_posted"] > 0
        assert drained["findings"] == ["not verified (--no-verify)"]
        unchanged = (await tally(settings, "bench", "api", "--filled", kept, "--json")).json()
        assert unchanged["entries"] == figures["entries"]  # the copy took the postings
    finally:
        await databases.drop(kept)
