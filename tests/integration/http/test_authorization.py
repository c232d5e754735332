"""The authorization matrix, generated from the OpenAPI document: every operation by every
kind of caller → the status its declared scope and organization binding imply. A route
that declares nothing, or a path parameter this test cannot fill, fails the test."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import (
    OTHER,
    OWN,
    Ledger,
    bearer,
    expired_key,
    fill,
    make_key,
    revoked_key,
)
from tally.adapters.asyncapi import asyncapi_document
from tally.adapters.postgres import sources
from tally.adapters.postgres.connection import raw_connection
from tally.domain.access import PRESETS, SECRET_PATTERN, Role, Scope
from tally.entrypoints.http.app import create_app
from tally.entrypoints.http.routes.ingest import EXAMPLE

PRODUCER_SOURCE = EXAMPLE["source"]  # the source of the body the matrix sends


@dataclass(frozen=True)
class Caller:
    name: str
    headers: dict[str, str]
    scopes: frozenset[Scope] | None  # None: not a valid key (401)
    org: str | None = None  # the organization the caller asks about (own or other)
    bound: bool = False  # an org-bound key


async def callers(engine: AsyncEngine, owner: AsyncEngine) -> list[Caller]:
    viewer = await make_key(engine, Role.org_viewer, OWN)
    await sources.add(engine, PRODUCER_SOURCE, None)
    producer = await make_key(engine, Role.producer, source=PRODUCER_SOURCE)
    return [
        Caller("no key", {}, None),
        Caller("malformed", {"Authorization": "Bearer not-a-tally-key"}, None),
        Caller("not bearer", {"Authorization": "Basic dGFsbHk6dGFsbHk="}, None),
        Caller("expired", bearer(await expired_key(owner)), None),
        Caller("revoked", bearer(await revoked_key(engine)), None),
        *[
            Caller(role, bearer(await make_key(engine, role)), PRESETS[role].scopes)
            for role in (Role.auditor, Role.finance)
        ],
        Caller("org_viewer, own org", bearer(viewer), PRESETS[Role.org_viewer].scopes, OWN, True),
        Caller(
            "org_viewer, other org", bearer(viewer), PRESETS[Role.org_viewer].scopes, OTHER, True
        ),
        Caller("producer", bearer(producer), PRESETS[Role.producer].scopes),
    ]


def success(operation: dict[str, Any]) -> int:
    """The status an operation answers when it may: its documented 2xx."""
    return min(int(code) for code in operation["responses"] if code.startswith("2"))


def sample_body(operation: dict[str, Any]) -> tuple[bytes | None, dict[str, str]]:
    """The request body an operation documents first, from its example (none for a read)."""
    if "requestBody" not in operation:
        return None, {}
    media, content = next(iter(operation["requestBody"]["content"].items()))
    return json.dumps(content["example"]).encode(), {"content-type": media}


def expected(operation: dict[str, Any], caller: Caller) -> int:
    scope = operation["x-tally-scope"]
    if scope == "public":
        return success(operation)
    if caller.scopes is None:
        return 401
    if Scope(scope) not in caller.scopes:
        return 403
    if caller.bound and caller.org != OWN:
        return {"query": 403, "path": 403, "row": 404}.get(
            operation.get("x-tally-org"), success(operation)
        )
    return success(operation)


async def test_every_operation_answers_every_caller_as_its_declaration_says(
    client: httpx.AsyncClient,
    ledger: Ledger,
    engine: AsyncEngine,
    owner: AsyncEngine,
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = (await client.get("/openapi.json")).json()
    everyone = await callers(engine, owner)
    seen = []
    caplog.set_level(logging.INFO, logger="tally.api")
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            assert "x-tally-scope" in operation, f"{method} {path} declares no scope"
            for caller in everyone:
                url, query = fill(path, operation, ledger, caller.org or OWN)
                body, content_type = sample_body(operation)
                response = await client.request(
                    method, url, params=query, content=body, headers=caller.headers | content_type
                )
                want = expected(operation, caller)
                assert response.status_code == want, (method, path, caller.name, response.text)
                if want >= 300:
                    assert (
                        response.json()["code"]
                        == {401: "unauthorized", 403: "forbidden", 404: "not_found"}[want]
                    )
                seen.append((path, caller.name))
    operations = sum(len(methods) for methods in document["paths"].values())
    assert operations >= 19 and len(seen) == len(everyone) * operations  # every one was tried
    secrets_sent = [c.headers["Authorization"].split()[-1] for c in everyone if c.headers]
    assert not any(secret in caplog.text for secret in secrets_sent)  # ids only, in the log
    assert re.search(r"GET /v1/verify 200 key=[0-9a-f]{12} ", caplog.text)


async def test_an_org_bound_key_cannot_tell_whether_another_org_exists(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    viewer = bearer(await make_key(engine, Role.org_viewer, OWN))
    answers = [
        await client.get("/v1/invoices", params={"org": org}, headers=viewer)
        for org in (OTHER, "no-such-org")
    ]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json() == answers[1].json()
    other = await client.get(f"/v1/invoices/{ledger.invoices[OTHER]}", headers=viewer)
    missing = await client.get("/v1/invoices/INV-999999", headers=viewer)
    assert other.status_code == missing.status_code == 404
    assert other.json()["code"] == missing.json()["code"] == "not_found"
    own = await client.get("/v1/invoices", headers=viewer)  # no ?org: its own only
    assert {item["org"] for item in own.json()["items"]} == {OWN}


def test_a_route_without_a_declared_scope_cannot_be_served(reader: AsyncEngine) -> None:
    from fastapi import APIRouter

    from tally.entrypoints.http import app as app_module

    undeclared = APIRouter()

    @undeclared.get("/v1/undeclared")
    async def route() -> dict[str, str]:
        return {}

    routers = app_module.ROUTERS
    app_module.ROUTERS = (*routers, undeclared)
    try:
        with pytest.raises(RuntimeError, match="declares no x-tally-scope"):
            create_app(reader)
    finally:
        app_module.ROUTERS = routers


async def test_keys_are_stored_as_hashes_only(engine: AsyncEngine, owner: AsyncEngine) -> None:
    secret = await make_key(engine, Role.finance)
    async with raw_connection(owner) as conn:
        stored = [dict(row) for row in await conn.fetch("SELECT * FROM api_key")]
    assert secret.startswith("tally_") and len(secret) == len("tally_") + 12 + 1 + 43
    assert secret not in repr(stored)
    # The random part, whole: URL-safe base64 may hold "_", so split("_")[-1] was now and
    # then a letter or two, found in any row (about 1 run in 100).
    found = SECRET_PATTERN.fullmatch(secret)
    assert found and found[2] not in repr(stored)


async def test_the_streams_asyncapi_document_is_public(client: httpx.AsyncClient) -> None:
    for _ in range(2):  # built once, then served as built
        response = await client.get("/asyncapi.json")
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        assert response.json() == asyncapi_document()
