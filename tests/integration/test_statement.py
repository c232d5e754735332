"""A customer's statement against real PostgreSQL: two signed seals of a month (the close's
and the late usage's), every event with its proof, checked by `tally.domain.statement` and
by the docs' standalone script; one changed event, proof, signature or invoice figure is
named; a month without an invoice or a seal has no statement."""

from __future__ import annotations

import base64
import hashlib
import json
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import close, license_day, meter
from support.ledger_support import ai, api
from support.ledger_support import event as ledger_event
from support.statement_support import docs_script, export, forged, run_script
from tally import bootstrap
from tally.adapters.postgres import seals
from tally.adapters.postgres.connection import raw_connection, raw_transaction
from tally.adapters.postgres.reads.statement import NoStatement, statement_lines
from tally.adapters.postgres.verification import verify
from tally.domain import seal_signature
from tally.domain.statement import BadStatement, check, published_keys
from tally.entrypoints.plain import json_line
from tally.service_layer.metering import MeteringService
from tally.service_layer.seal_signing import load_private_key, new_key_pair, publish, sign_seals

SEP, OCT = "2026-09", "2026-10"
IN_SEP = {"time": "2026-09-15T12:00:00Z"}


async def signed_september(
    service: MeteringService, engine: AsyncEngine, owner: AsyncEngine
) -> None:
    """acme's September over its API allocation, with AI usage, a request that is not
    billable and late usage billed on October's invoice; every seal signed (the key
    published by the schema's owner, as `tally seal keygen` does)."""
    await meter(
        service,
        [
            license_day("acme-lic", "gc2", "named", 2, org="acme", day="2026-09-05"),
            api("acme-1", count=300_000, org="acme", **IN_SEP),
            ai("acme-2", "virtual_agent", 40, "session", org="acme", **IN_SEP),
            ai("acme-3", "ai_scoring", 7, "evaluation", org="acme", **IN_SEP),
            api("acme-ui", count=3, kind="ui", org="acme", **IN_SEP),
            api("globex-1", count=10, org="globex", **IN_SEP),
        ],
    )
    await meter(service, [api("acme-4", count=5, org="acme", **IN_SEP)])
    await close(engine, SEP)
    store = bootstrap.seal_signing_store(engine)
    pair = new_key_pair()
    await publish(bootstrap.seal_signing_store(owner), pair)
    key = load_private_key(pair.private_pem, "the test's key")
    await sign_seals(store, key)
    await meter(service, [api("acme-late", count=7, org="acme", **IN_SEP)])
    await close(engine, OCT)  # September's seal 2 holds the late usage
    await sign_seals(store, key)


def event(lines: list[dict[str, Any]], event_id: str) -> dict[str, Any]:
    return next(line for line in lines if line["type"] == "event" and line["id"] == event_id)


async def test_a_statement_proves_every_event_and_adds_up_to_the_invoice(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, tmp_path: Path
) -> None:
    await signed_september(service, engine, owner)
    good = tmp_path / "acme.jsonl"
    lines = await export(engine, "acme", SEP, good)
    header, trailer = lines[0], lines[-1]
    assert (header["type"], header["org"], header["period"]) == ("header", "acme", SEP)
    assert [seal["sequence"] for seal in header["seals"]] == [1, 2]
    assert all(seal["signature"]["algorithm"] == "Ed25519" for seal in header["seals"])
    events = [line for line in lines if line["type"] == "event"]
    assert {line["id"] for line in events} == {
        "acme-lic", "acme-1", "acme-2", "acme-3", "acme-ui", "acme-4", "acme-late"
    }  # fmt: skip
    entries = {line["id"]: line for line in lines if line["type"] == "entry"}
    late = event(lines, "acme-late")
    assert entries[late["entry"]]["seal"] == 2
    assert entries[late["entry"]]["adjusts"] == header["invoice"]
    assert event(lines, "acme-ui")["status"] == "non_billable"
    assert event(lines, "acme-ui")["entry"] is None
    assert (trailer["type"], trailer["invoice"], trailer["events"]) == (
        "trailer",
        header["invoice"],
        7,
    )
    api_line = next(line for line in trailer["lines"] if line["meter"] == "api_requests")
    assert api_line["used"] == "300005" and api_line["overage"] == "80005"

    script = tmp_path / "check_statement.py"
    script.write_text(docs_script())
    keys = tmp_path / "keys.json"
    published = await seals.seal_keys(engine)
    keys.write_text(json.dumps({"keys": [key.model_dump(mode="json") for key in published]}))
    known = published_keys(keys.read_bytes())
    with good.open("rb") as read:
        assert check(read, known) == []
    code, said = await run_script(script, good, keys)
    assert (code, said.strip()) == (0, "every signature, proof and invoice line checks"), said

    def recount(lines: list[dict[str, Any]]) -> None:  # a changed event, its hash made to fit
        line = event(lines, "acme-1")
        raw = base64.b64decode(line["raw"]).replace(b'"count": 300000', b'"count": 200000')
        assert raw != base64.b64decode(line["raw"])
        line["raw"] = base64.b64encode(raw).decode()
        line["raw_sha256"] = hashlib.sha256(raw).hexdigest()
        line["quantity"] = "200000"

    def reroute(lines: list[dict[str, Any]]) -> None:  # one proof step changed
        step = event(lines, "acme-2")["proof"]["siblings"][0]
        step["hash"] = "00" * 32

    def resign(lines: list[dict[str, Any]]) -> None:  # one signature changed
        signed = lines[0]["seals"][0]["signature"]
        signed["signature"] = ("00" if signed["signature"][:2] != "00" else "11") + signed[
            "signature"
        ][2:]

    def rebill(lines: list[dict[str, Any]]) -> None:  # the invoice says more was used
        lines[-1]["lines"][0]["used"] = "300006"

    def self_signed(lines: list[dict[str, Any]]) -> None:  # signed by a key of the forger's
        private = Ed25519PrivateKey.generate()
        public = private.public_key().public_bytes_raw()
        for seal in lines[0]["seals"]:
            message = seal_signature.signed_bytes(
                lines[0]["period"], seal["sequence"], seal["root"], seal["entries"]
            )
            seal["signature"] |= {
                "public_key": public.hex(),
                "key_id": seal_signature.key_id(public),
                "signature": private.sign(message).hex(),
            }

    def doubled(lines: list[dict[str, Any]]) -> None:  # one entry's block listed twice
        start = next(i for i, line in enumerate(lines) if line["type"] == "entry")
        end = next(i for i in range(start + 1, len(lines)) if lines[i]["type"] != "event")
        block = json.loads(json.dumps(lines[start:end]))
        block[0]["id"] = -1
        for line in block[1:]:
            line["entry"] = -1
        lines[end:end] = block

    def relabelled(lines: list[dict[str, Any]]) -> None:  # 1 token per 20 read as 2 per 1
        event(lines, "acme-3")["feature"] = "virtual_agent"

    def reshaped(lines: list[dict[str, Any]]) -> None:  # a proof from another leaf's place
        proof = event(lines, "acme-2")["proof"]
        proof["index"] = proof["index"] ^ 1

    for change, named in [
        (recount, "entry"),
        (reroute, "proof does not lead"),
        (resign, "signature"),
        (rebill, "api_requests"),
        (self_signed, "not a published key"),
        (doubled, "listed twice"),
        (relabelled, "not its bytes'"),
        (reshaped, "proof does not lead"),
    ]:
        bad = forged(lines, tmp_path / f"{change.__name__}.jsonl", change)
        with bad.open("rb") as read:
            findings = check(read, known)
        assert findings and named in " ".join(findings), (change.__name__, findings)
        code, said = await run_script(script, bad, keys)
        assert code == 1 and said.strip(), (change.__name__, said)

    other_key = tmp_path / "other-keys.json"
    other_key.write_text(json.dumps({"keys": [{"public_key": "ab" * 32}]}))
    code, said = await run_script(script, good, other_key)
    assert code == 1 and "no valid signature by a known key" in said
    with good.open("rb") as read:
        assert check(read, published_keys(keys.read_bytes())) == []
    with good.open("rb") as read:
        unknown = check(read, published_keys(other_key.read_bytes()))
    assert len(unknown) == 2 and all("is not a published key" in f for f in unknown)
    with pytest.raises(BadStatement, match="published keys"):
        published_keys(b"[]")
    with pytest.raises(BadStatement, match="header"):
        check([b'{"type": "event"}\n'], known)
    with pytest.raises(BadStatement, match="trailer"):
        check(good.read_bytes().splitlines()[:-1], known)


async def test_no_statement_without_an_invoice_or_a_seal(
    engine: AsyncEngine, service: MeteringService
) -> None:
    await meter(service, [api("acme-1", count=1, org="acme", **IN_SEP)])
    async with raw_connection(engine) as conn:
        for org, period, why in [
            ("acme", SEP, "not closed"),
            ("nobody", SEP, "no invoice"),
        ]:
            with pytest.raises(NoStatement, match=why):
                await anext(statement_lines(conn, org, period))


async def peak_export(engine: AsyncEngine, org: str, out: Path) -> int:
    """The most memory Python held while the statement streamed into ``out``."""
    tracemalloc.start()
    try:
        with out.open("w") as target:
            async with raw_connection(engine) as conn:
                async for line in statement_lines(conn, org, SEP):
                    target.write(json_line(line))
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_a_statement_streams_in_flat_memory(
    engine: AsyncEngine, service: MeteringService, tmp_path: Path
) -> None:
    for org, events in (("globex", 3_000), ("acme", 30_000)):
        await meter(service, [api(f"{org}-{n}", org=org, **IN_SEP) for n in range(events)])
    await close(engine, SEP)
    small = await peak_export(engine, "globex", tmp_path / "small.jsonl")
    large = await peak_export(engine, "acme", tmp_path / "large.jsonl")
    assert (tmp_path / "large.jsonl").stat().st_size > 9 * (tmp_path / "small.jsonl").stat().st_size
    assert large < 1.5 * small, (small, large)  # 10 times the events, not the memory


async def test_verify_names_a_signature_changed_after_signing(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService
) -> None:
    await signed_september(service, engine, owner)
    assert (await verify(engine)).ok
    async with raw_transaction(owner) as conn:  # as the superuser, triggers off
        await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute(
            "UPDATE seal_signature SET signature = $1 WHERE period = $2 AND sequence = 1",
            bytes(64),
            SEP,
        )
    checked = await verify(engine, period=SEP)
    assert [f.detail for f in checked.findings if f.check == "seal"] == [
        f"seal 1 of {SEP}: its signature by key "
        f"{(await seals.seal_keys(engine))[0].key_id} does not verify: the signature or the "
        "seal was changed after signing"
    ]


async def test_voided_events_are_listed_under_their_reversal_and_count_negatively(
    engine: AsyncEngine, owner: AsyncEngine, service: MeteringService, tmp_path: Path
) -> None:
    """Two events voided before the close (an API request and AI minutes that round): the
    statement lists each under its usage entry and under its reversal, both checkers add
    up to the net invoice line, and a reversal passed off as usage is caught."""
    await meter(
        service,
        [
            license_day("acme-lic", "gc2", "named", 2, org="acme", day="2026-09-05"),
            api("acme-1", count=300_000, org="acme", **IN_SEP),
            api("acme-2", count=50_000, org="acme", **IN_SEP),
            ai("acme-3", "voice_bot", 40, "minute", org="acme", **IN_SEP),
            ai("acme-4", "voice_bot", 9, "minute", org="acme", **IN_SEP),
        ],
    )
    reason = {"reason": "sent twice"}
    await meter(
        service,
        [
            ledger_event(
                "tally.void", "v-2", {"source": "test", "id": "acme-2", **reason}, **IN_SEP
            ),
            ledger_event(
                "tally.void", "v-4", {"source": "test", "id": "acme-4", **reason}, **IN_SEP
            ),
        ],
    )
    await close(engine, SEP)
    pair = new_key_pair()
    await publish(bootstrap.seal_signing_store(owner), pair)
    await sign_seals(bootstrap.seal_signing_store(engine), load_private_key(pair.private_pem, "k"))
    good = tmp_path / "acme.jsonl"
    lines = await export(engine, "acme", SEP, good)
    entries = {line["id"]: line for line in lines if line["type"] == "entry"}
    listed = [
        (line["id"], line["status"], entries[line["entry"]]["kind"])
        for line in lines
        if line["type"] == "event" and line["id"] in {"acme-2", "acme-4"}
    ]
    assert sorted(listed) == [
        ("acme-2", "voided", "usage"), ("acme-2", "voided", "usage_reversal"),
        ("acme-4", "voided", "usage"), ("acme-4", "voided", "usage_reversal"),
    ]  # fmt: skip
    api_line = next(line for line in lines[-1]["lines"] if line["meter"] == "api_requests")
    assert api_line["used"] == "300000"
    keys = tmp_path / "keys.json"
    published = await seals.seal_keys(engine)
    keys.write_text(json.dumps({"keys": [key.model_dump(mode="json") for key in published]}))
    known = published_keys(keys.read_bytes())
    with good.open("rb") as read:
        assert check(read, known) == []
    script = tmp_path / "check_statement.py"
    script.write_text(docs_script())
    code, said = await run_script(script, good, keys)
    assert (code, said.strip()) == (0, "every signature, proof and invoice line checks"), said

    def unvoided(lines: list[dict[str, Any]]) -> None:  # a reversal passed off as usage
        for line in lines:
            if line["type"] == "entry" and line["kind"] == "usage_reversal":
                line["kind"] = "usage"

    bad = forged(lines, tmp_path / "unvoided.jsonl", unvoided)
    with bad.open("rb") as read:
        assert any("do not hash to its leaf" in f for f in check(read, known))
    code, said = await run_script(script, bad, keys)
    assert code == 1, said
