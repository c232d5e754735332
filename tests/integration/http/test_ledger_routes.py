"""The ledger's read side over the API, against what an auditor already trusts: a balance
as of any instant equals the CLI's and the lines', the ADS export read back balances and
equals the trial balance, a proof checks with the documented script, late usage is not
sealed yet, lineage reaches the events."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OCT, OTHER, OWN, Ledger, bearer, make_key
from support.ads_support import assert_round_trips, trial_balance_accounts
from support.cli import tally_all
from support.close_support import meter
from support.ledger_support import api
from support.seal_support import check, readme_script
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import lineage
from tally.config import Settings
from tally.domain.access import Role
from tally.entrypoints.plain import plain
from tally.service_layer.metering import MeteringService


async def auditor(engine: AsyncEngine) -> dict[str, str]:
    return bearer(await make_key(engine, Role.auditor))


async def test_an_as_of_balance_over_the_api_equals_the_clis_and_the_lines(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine, settings: Settings
) -> None:
    key = await auditor(engine)
    async with raw_connection(engine) as conn:
        lines = await conn.fetch(
            """SELECT e.posted_at, l.amount FROM entry_line l
                 JOIN journal_entry e ON e.id = l.entry_id
                 JOIN account a ON a.id = l.account_id
                WHERE a.code = $1 ORDER BY e.posted_at""",
            ledger.account,
        )
    posted = sorted({line["posted_at"] for line in lines})
    assert len(posted) >= 2  # usage, then the close
    instants = (posted[0] - timedelta(microseconds=1), posted[0], posted[-1])
    clis = await tally_all(settings, *(
        ["ledger", "balance", ledger.account, "--as-of", instant.isoformat(), "--limit", "2",
         "--format", "json"]
        for instant in instants
    ))  # fmt: skip
    for instant, cli in zip(instants, clis, strict=True):
        as_of = instant.isoformat()
        url = f"/v1/accounts/{ledger.account}/balance"
        answer = await client.get(url, params={"as_of": as_of, "limit": 2}, headers=key)
        assert answer.status_code == 200, answer.text
        found = answer.json()
        assert found == cli.json()
        amounts = [line["amount"] for line in lines if line["posted_at"] <= instant]
        assert Decimal(found["balance"]) == sum(amounts, Decimal(0))
        assert Decimal(found["debits"]) == sum((a for a in amounts if a > 0), Decimal(0))
        movements = found["movements"]["items"]
        while found["movements"]["next"]:
            params = {"as_of": as_of, "limit": 2, "cursor": found["movements"]["next"]}
            found = (await client.get(url, params=params, headers=key)).json()
            movements += found["movements"]["items"]
        assert sorted(Decimal(m["amount"]) for m in movements) == sorted(amounts)
    missing = await client.get("/v1/accounts/org/nobody/usage/balance", headers=key)
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    as_csv = await client.get(f"/v1/accounts/{ledger.account}/balance?format=csv", headers=key)
    assert (as_csv.status_code, as_csv.json()["code"]) == (406, "not_acceptable")


async def test_the_gl_export_over_the_api_round_trips_to_the_trial_balance(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = await auditor(engine)

    async def exported(shape: str) -> list[dict[str, str]]:
        params = {"period": OCT, "standard": "ads", "shape": shape, "format": "csv"}
        answer = await client.get("/v1/gl-export", params=params, headers=key)
        assert answer.headers["content-type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(answer.text)))

    balance = (await client.get("/v1/trial-balance", params={"period": OCT}, headers=key)).json()
    assert balance["balanced"] is True
    assert all(t["debits"] == t["credits"] and t["balanced"] for t in balance["totals"])
    accounts = trial_balance_accounts(balance["rows"])
    units = assert_round_trips(
        await exported("gl-detail"), await exported("trial-balance"), OCT, accounts
    )
    assert "api_request" in units  # the allocation granted and used, every line exported
    as_json = await client.get("/v1/gl-export", params={"period": OCT}, headers=key)
    assert len(as_json.json()) == len(await exported("gl-detail"))
    one_unit = await client.get(
        "/v1/trial-balance", params={"period": OCT, "unit": "api_request"}, headers=key
    )
    assert {row["unit"] for row in one_unit.json()["rows"]} == {"api_request"}
    empty = await client.get(
        "/v1/gl-export", params={"period": "2026-01", "format": "csv"}, headers=key
    )
    assert empty.text == "journalId," + empty.text.split(",", 1)[1] and empty.text.count("\n") == 1


async def test_a_proof_over_the_api_checks_with_the_readmes_script_against_the_invoice(
    client: httpx.AsyncClient,
    ledger: Ledger,
    engine: AsyncEngine,
    service: MeteringService,
    tmp_path: Path,
) -> None:
    key = await auditor(engine)
    invoice = (await client.get(f"/v1/invoices/{ledger.invoices[OWN]}", headers=key)).json()
    seals = (await client.get("/v1/seals", params={"period": OCT}, headers=key)).json()
    assert [seal["root"] for seal in seals["items"]] == [invoice["seal"]["root"]]
    assert seals["items"][0]["entries"] > 0 and seals["items"][0]["lanes"]
    script = tmp_path / "check_proof.py"
    script.write_text(readme_script())
    proof = await client.get(f"/v1/entries/{ledger.entry}/proof", headers=key)
    assert proof.status_code == 200, proof.text
    code, said = await check(script, proof.text, invoice["seal"]["root"])
    assert code == 0, said

    await meter(service, [api("late-1", org=OWN)])  # October usage after the close
    async with raw_connection(engine) as conn:
        late = await conn.fetchval("SELECT entry_id FROM usage_event WHERE id = 'late-1'")
    unsealed = await client.get(f"/v1/entries/{late}/proof", headers=key)
    assert (unsealed.status_code, unsealed.json()["code"]) == (404, "not_sealed")
    assert "no seal yet" in unsealed.json()["message"]
    nowhere = await client.get("/v1/entries/999999999/proof", headers=key)
    assert (nowhere.status_code, nowhere.json()["code"]) == (404, "not_found")
    none_yet = await client.get("/v1/seals", params={"period": "2026-11"}, headers=key)
    assert none_yet.json() == {"items": [], "next": None}


async def test_an_entry_shows_its_events_and_their_raw_bytes_on_request(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = await auditor(engine)
    story = await client.get(f"/v1/events/{ledger.event[0]}/{ledger.event[1]}", headers=key)
    entry_id = story.json()["entry"]["id"]
    plain_entry = (await client.get(f"/v1/entries/{entry_id}", headers=key)).json()
    with_raw = (await client.get(f"/v1/entries/{entry_id}?raw=true", headers=key)).json()
    assert [e["raw"] for e in plain_entry["events"]] == [None] * len(plain_entry["events"])
    carried = {(e["source"], e["id"]): e for e in with_raw["events"]}
    assert f'"id": "{ledger.event[1]}"' in carried[ledger.event]["raw"]
    assert plain_entry["chain"]["hash"] == with_raw["chain"]["hash"]
    assert sum(Decimal(line["amount"]) for line in plain_entry["lines"]) == 0
    listed = await client.get(
        "/v1/entries", params={"org": OWN, "period": OCT, "account": ledger.account}, headers=key
    )
    assert entry_id in [item["id"] for item in listed.json()["items"]]
    assert {item["org"] for item in listed.json()["items"]} == {OWN}


async def test_lineage_over_the_api_pages_through_what_the_cli_prints(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    viewer = bearer(await make_key(engine, Role.org_viewer, OWN))
    number = ledger.invoices[OWN]
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = (
            await client.get(f"/v1/invoices/{number}/lineage", params=params, headers=viewer)
        ).json()
        rows += body["items"]
        if body["next"] is None:
            break
        params["cursor"] = body["next"]
    async with raw_connection(engine) as conn:
        expected = [
            plain(row.model_dump())
            async for row in lineage.lineage_listing(int(number[4:])).iter_rows(conn)
        ]
    assert rows == expected
    assert {row["invoice"] for row in rows} == {number}
    assert (ledger.event[0], ledger.event[1]) in {(row["source"], row["event_id"]) for row in rows}
    other = await client.get(f"/v1/invoices/{ledger.invoices[OTHER]}/lineage", headers=viewer)
    assert (other.status_code, other.json()["code"]) == (404, "not_found")
