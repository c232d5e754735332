"""Signed seals and statements over the API: the public keys at their well-known place
(no key needed), and an org_viewer's statement, byte for byte the CLI's export, which
checks offline."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OCT, OWN, Ledger, bearer, make_key, sign_in
from support.statement_support import export
from tally import bootstrap
from tally.domain.access import Role
from tally.domain.seal_signature import CANONICAL
from tally.domain.statement import MEDIA_TYPE, check, published_keys
from tally.service_layer.seal_signing import load_private_key, new_key_pair, publish, sign_seals


async def test_the_keys_are_public_and_a_viewers_statement_checks(
    client: httpx.AsyncClient,
    ledger: Ledger,
    engine: AsyncEngine,
    owner: AsyncEngine,
    tmp_path: Path,
) -> None:
    none_yet = await client.get("/.well-known/tally-seal-keys.json")
    assert none_yet.status_code == 200 and none_yet.json()["keys"] == []
    store = bootstrap.seal_signing_store(engine)
    pair = new_key_pair()
    valid_from = await publish(bootstrap.seal_signing_store(owner), pair)  # as keygen does
    assert [s.period for s in await sign_seals(store, load_private_key(pair.private_pem, "k"))]

    published = (await client.get("/.well-known/tally-seal-keys.json")).json()
    assert published == {
        "algorithm": "Ed25519",
        "signed": CANONICAL,
        "keys": [
            {
                "key_id": pair.key_id,
                "algorithm": "Ed25519",
                "public_key": pair.public_key.hex(),
                "valid_from": valid_from.isoformat().replace("+00:00", "Z"),
                "valid_until": None,
            }
        ],
    }

    secret = await make_key(engine, Role.org_viewer, OWN)
    viewer = bearer(secret)
    answer = await client.get(f"/v1/orgs/{OWN}/statement", params={"period": OCT}, headers=viewer)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith(MEDIA_TYPE)
    exported = tmp_path / "exported.jsonl"
    lines = await export(engine, OWN, OCT, exported)
    assert answer.text == exported.read_text()
    assert lines[0]["invoice"] == ledger.invoices[OWN]
    assert lines[0]["seals"][0]["signature"]["key_id"] == pair.key_id
    known = published_keys(json.dumps(published).encode())  # what the customer saved
    assert check(answer.content.splitlines(), known) == []

    invoice = (await client.get(f"/v1/invoices/{ledger.invoices[OWN]}", headers=viewer)).json()
    assert invoice["seal_signature"]["key_id"] == pair.key_id
    assert invoice["seal_signature"]["signature"] == lines[0]["seals"][0]["signature"]["signature"]

    assert (await sign_in(client, secret)).status_code == 303
    page = await client.get(f"/ui/orgs/{OWN}/invoices/{OCT}")  # the printable document
    assert page.status_code == 200
    assert invoice["seal_signature"]["signature"] in page.text and pair.key_id in page.text

    later = await client.get(
        f"/v1/orgs/{OWN}/statement", params={"period": "2026-11"}, headers=viewer
    )
    assert (later.status_code, later.json()["code"]) == (404, "not_found")
    assert "no invoice for 2026-11" in later.json()["message"]
    nonsense = await client.get(
        f"/v1/orgs/{OWN}/statement", params={"period": "2026-13"}, headers=viewer
    )
    assert (nonsense.status_code, nonsense.json()["code"]) == (422, "invalid_request")
