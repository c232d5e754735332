"""The real thing: `tally serve` (uvicorn, a subprocess) answering a key that
`tally apikey create` (another subprocess) made, until `tally apikey revoke`."""

from __future__ import annotations

import asyncio

import httpx

from support.cli import tally
from tally.config import Settings


async def test_tally_serve_answers_a_key_made_by_tally_apikey_create(
    settings: Settings, served: tuple[str, asyncio.subprocess.Process]
) -> None:
    base, server = served
    assert (await tally(settings, "org", "add", "acme", "--currency", "USD")).code == 0
    made = await tally(settings, "apikey", "create", "--role", "auditor", "--expires", "90d")
    assert made.code == 0, made
    secret = made.stdout.strip().splitlines()[-1]
    assert secret.startswith("tally_")
    key_id = secret.split("_")[1]
    headers = {"Authorization": f"Bearer {secret}"}
    async with httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/v1/invoices")).json()["code"] == "unauthorized"
        listed = await client.get("/v1/invoices", headers=headers)
        assert listed.status_code == 200 and listed.json() == {"items": [], "next": None}
        csv = await client.get("/v1/invoices?format=csv", headers=headers)
        assert csv.text.splitlines()[0].startswith("number,org,period")
        assert (await client.get("/v1/verify", headers=headers)).json()["ok"] is True
        trial = await client.get("/v1/trial-balance?period=2026-11", headers=headers)
        assert trial.json()["rows"] == [] and trial.json()["balanced"] is True
        export = await client.get("/v1/gl-export?period=2026-11&format=csv", headers=headers)
        assert export.text.startswith("journalId,journalIdLineNumber,")  # streamed, a header
        code = "org/acme/2026-11/api_request/usage"  # '/' in a path parameter, through uvicorn
        balance = await client.get(f"/v1/accounts/{code}/balance", headers=headers)
        assert (balance.status_code, balance.json()["message"]) == (404, f"no account {code!r}")
        assert (await client.get("/openapi.json")).json()["info"]["title"] == "Tally"
        assert (await client.get("/asyncapi.json")).json()["asyncapi"] == "3.0.0"

        keys = await tally(settings, "apikey", "list", "--format", "json")
        assert [k["id"] for k in keys.json()] == [key_id] and secret not in keys.stdout
        assert (await tally(settings, "apikey", "revoke", key_id)).code == 0
        assert (await client.get("/v1/invoices", headers=headers)).status_code == 401

    server.terminate()
    _, log = await server.communicate()
    assert f"GET /v1/invoices 200 key={key_id}" in log.decode()
    assert "GET /v1/invoices 401 key=-" in log.decode()
    assert secret not in log.decode()


async def test_apikey_create_refuses_what_a_role_cannot_be(settings: Settings) -> None:
    assert (await tally(settings, "migrate")).code == 0
    viewer = await tally(settings, "apikey", "create", "--role", "org_viewer")
    assert viewer.code == 2 and "--org" in viewer.said
    unknown = await tally(settings, "apikey", "create", "--role", "org_viewer", "--org", "hooli")
    assert unknown.code == 2 and "no organization 'hooli'" in unknown.said
    bad = await tally(settings, "apikey", "create", "--role", "finance", "--expires", "90")
    assert bad.code == 2 and "90d" in bad.said
    assert (await tally(settings, "apikey", "revoke", "000000000000")).code == 1
