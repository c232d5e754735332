"""The pages' authorization matrix, generated from the pages' own routes: each page declares
its scope and organization binding as the API's routes do (``auth.scoped``), and every page
answers every kind of signed-in viewer (and a signed-out browser) as that declaration says.
A page that declares nothing, or a path parameter this test cannot fill, fails the test."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OCT, OTHER, OWN, Ledger, make_key, sign_in
from integration.http.test_pages_sessions import pages_client
from tally.config import Settings
from tally.domain.access import PRESETS, Role, Scope
from tally.entrypoints.http.auth import OrgBinding, declaration
from tally.entrypoints.pages.app import ROUTERS

SIGNED_OUT = "signed out"


def page_routes() -> list[tuple[str, Scope | None, OrgBinding | None]]:
    """Every GET page under /ui with its declaration (a route without one fails here)."""
    return [
        ("/ui" + route.path, *declaration(route))
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods
    ]


def filled(path: str, ledger: Ledger, org: str) -> str:
    values = {
        "org": org,
        "period": OCT,
        "meter": "api_requests",
        "letter_id": str(ledger.dead_letter),
    }
    for name in re.findall(r"{(\w+)}", path):
        assert name in values, f"{path}: no sample value for the path parameter {name}"
        path = path.replace(f"{{{name}}}", values[name])
    return path


def expected(
    path: str, scope: Scope | None, binding: OrgBinding | None, viewer: str, org: str
) -> int:
    if viewer == SIGNED_OUT:
        return 303  # to the sign-in form, which returns here
    if path == "/ui/" and viewer == "org_viewer":
        return 303  # home is its own organization's dashboard
    if scope is None:
        return 200
    role = Role.org_viewer if viewer.startswith("org_viewer") else Role(viewer)
    if scope not in PRESETS[role].scopes:
        return 403
    if role is Role.org_viewer and binding is OrgBinding.path and org != OWN:
        return 403
    return 200


async def test_every_page_answers_every_viewer_as_its_declaration_says(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings, ledger: Ledger
) -> None:
    routes = page_routes()
    assert {path for path, *_ in routes} >= {"/ui/orgs/{org}", "/ui/dead-letters/{letter_id}"}
    viewers: dict[str, httpx.AsyncClient | None] = {SIGNED_OUT: None}
    clients = []
    for name, role, org in [
        ("auditor", Role.auditor, None),
        ("finance", Role.finance, None),
        ("org_viewer", Role.org_viewer, OWN),
    ]:
        client = pages_client(reader, settings)
        clients.append(client)
        signed = await sign_in(client, await make_key(engine, role, org))
        assert signed.status_code == 303, signed.text
        viewers[name] = client
    anonymous = pages_client(reader, settings)
    clients.append(anonymous)
    wrong = []
    try:
        for path, scope, binding in routes:
            if path in ("/ui/sign-in",):
                continue  # the form itself: open to anyone
            for org in (OWN, OTHER) if "{org}" in path else (OWN,):
                url = filled(path, ledger, org)
                for viewer, client in viewers.items():
                    answer = await (client or anonymous).get(url)
                    want = expected(path, scope, binding, viewer, org)
                    if answer.status_code != want:
                        wrong.append(f"{viewer} GET {url}: {answer.status_code}, not {want}")
    finally:
        for client in clients:
            await client.aclose()
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ["/ui/estimate", "/ui/orgs/acme"])
async def test_a_page_names_what_the_key_lacks(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings, ledger: Ledger, path: str
) -> None:
    """An org_viewer key asking another organization's page is told why, on a page."""
    async with pages_client(reader, settings) as client:
        await sign_in(client, await make_key(engine, Role.org_viewer, OTHER))
        answer = await client.get(path)
    if path == "/ui/estimate":
        assert answer.status_code == 200
    else:
        assert answer.status_code == 403 and "only its own organization" in answer.text
