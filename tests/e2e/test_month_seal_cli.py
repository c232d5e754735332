"""The month seal as an auditor and a customer meet it: the root on the invoice in every
format, `tally ledger prove --json` checked by the documented script (stdlib only),
`tally ledger verify --period`, and clear answers for entries no seal covers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from support.cli import tally, tally_all, xadd_like_an_integration
from support.close_support import license_day
from support.ledger_support import api
from support.seal_support import check, readme_script
from tally.config import Settings

SEP = "2026-09"
SEPT = {"time": "2026-09-15T12:00:00Z"}


async def test_an_invoice_prints_its_seal_and_the_readme_script_checks_a_proof(
    settings: Settings, tmp_path: Path
) -> None:
    assert (await tally(settings, "migrate")).code == 0
    assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
    for payload in (
        license_day("lic", "gc2", "named", 20, org="acme", day="2026-09-02"),
        *(api(f"r{n}", count=1_000_000, **SEPT) for n in range(3)),
    ):
        await xadd_like_an_integration(settings, payload)
    assert (await tally(settings, "consume", "--until-idle")).code == 0
    closed = await tally(settings, "close", "--period", SEP, "--as-of", "2026-10-02T00:00:00Z")
    assert closed.code == 0, closed

    shown, as_csv, as_html, as_table, story = await tally_all(
        settings,
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "json"],
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "csv"],
        ["invoice", "show", "--org", "acme", "--period", SEP, "--format", "html"],
        ["invoice", "show", "--org", "acme", "--period", SEP],
        ["events", "show", "test", "r1", "--format", "json"],
    )
    seal = shown.json()["seal"]
    # the usage entry, two grants, the AI tokens' expiry and the API overage
    assert (seal["sequence"], seal["entries"]) == (1, 5)
    root = seal["root"]
    assert len(root) == 64
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert rows[-1]["kind"] == "seal" and root in rows[-1]["description"]
    assert root in as_html.stdout and root in as_table.said

    entry = story.json()["entry"]["id"]
    proved, as_text, nothing = await tally_all(
        settings,
        ["ledger", "prove", str(entry), "--json"],
        ["ledger", "prove", str(entry)],
        ["ledger", "prove", "999999"],
    )
    proof = proved.json()
    assert (proof["entry_id"], proof["period"], proof["sequence"], proof["root"]) == (
        entry,
        SEP,
        1,
        root,
    )
    assert f"seal 1 of {SEP}" in as_text.said and root in as_text.said
    assert nothing.code == 1 and "there is no entry 999999" in nothing.said

    script = tmp_path / "check_proof.py"
    script.write_text(readme_script())
    code, said = await check(script, proved.stdout, root)
    assert (code, said.strip()) == (0, f"entry {entry} is in seal 1 of {SEP}")
    forged = json.loads(proved.stdout)
    forged["leaf"] = "00" * 32
    code, said = await check(script, json.dumps(forged), root)
    assert code == 1 and said.startswith("NOT PROVEN")
    code, said = await check(script, proved.stdout, "ab" * 32)  # not the invoice's root
    assert code == 1 and said.startswith("NOT PROVEN")

    verified = await tally(settings, "ledger", "verify", "--period", SEP, "--format", "json")
    assert verified.json()["ok"] is True and verified.json()["seals"] == 1

    await xadd_like_an_integration(settings, api("late", count=10, **SEPT))
    assert (await tally(settings, "consume", "--until-idle")).code == 0
    late = (await tally(settings, "events", "show", "test", "late", "--format", "json")).json()
    unsealed = await tally(settings, "ledger", "prove", str(late["entry"]["id"]))
    assert unsealed.code == 1 and "is in no seal yet" in unsealed.said, unsealed
