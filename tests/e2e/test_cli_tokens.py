"""Buying AI tokens through the CLI, as an admin does before a busy month: a purchase, the
list, the invoice line it becomes, and clear refusals."""

from __future__ import annotations

from support.cli import tally, tally_all
from tally.config import Settings

DEC = "2025-12"


async def test_buying_tokens_and_seeing_them_billed(settings: Settings) -> None:
    assert (await tally(settings, "migrate")).code == 0
    assert (await tally(settings, "org", "add", "retail", "--currency", "USD")).code == 0
    bought, more = [
        await tally(settings, "org", "tokens", "retail", "--buy", tokens, "--period", DEC,
                    "--note", note)
        for tokens, note in (("20000", "PO-7"), ("500", "PO-8"))
    ]  # fmt: skip
    assert bought.code == 0 and "retail bought 20,000 AI tokens for 2025-12" in bought.said
    assert more.code == 0, more
    listed, unknown, fraction, stray_note = await tally_all(
        settings,
        ["org", "tokens", "retail", "--period", DEC, "--format", "json"],
        ["org", "tokens", "hooli", "--buy", "5", "--period", DEC],
        ["org", "tokens", "retail", "--buy", "0.5", "--period", DEC],
        ["org", "tokens", "retail", "--note", "PO-9"],
    )
    assert [(row["tokens"], row["note"]) for row in listed.json()] == [
        ("20000", "PO-7"), ("500", "PO-8"),
    ]  # fmt: skip
    assert unknown.code == 2 and "no organization 'hooli'" in unknown.said, unknown
    assert fraction.code == 2 and "tokens are bought whole" in fraction.said, fraction
    assert stray_note.code == 2 and "--note goes with --buy" in stray_note.said, stray_note

    closed = await tally(settings, "close", "--period", DEC)
    assert closed.code == 0, closed
    shown, late, verified = await tally_all(
        settings,
        ["invoice", "show", "--org", "retail", "--period", DEC, "--format", "json"],
        ["org", "tokens", "retail", "--buy", "1", "--period", DEC],
        ["ledger", "verify"],
    )
    lines = {line["meter"]: line for line in shown.json()["lines"]}
    purchase = lines["ai_tokens_purchased"]
    assert (purchase["quantity"], purchase["amount"]) == ("20500", "20500.00")
    assert shown.json()["total"] == "20500.00"
    assert late.code == 2 and "period 2025-12 is closed for retail (invoice INV-" in late.said
    assert "Traceback" not in late.stderr
    assert verified.code == 0, verified
