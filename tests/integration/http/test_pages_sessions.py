"""The pages' sign-in as a browser (and an attacker) sees it: the cookie holds a session id,
never the key; sign-out and revoking the key end the session; only the server's own
pages may post the forms, with their CSRF token; redirects never follow the Host header."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import bearer, make_key, sign_in, token_of
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings
from tally.domain.access import Role, key_id_of
from tally.domain.sessions import session_hash
from tally.entrypoints.http.app import create_app

BASE = "http://tally"
HOME = "/ui/"
SIGN_IN = "/ui/sign-in"


def pages_client(reader: AsyncEngine, settings: Settings, base: str = BASE) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_app(reader, settings))
    return httpx.AsyncClient(transport=transport, base_url=base)


@pytest.fixture
async def browser(reader: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with pages_client(reader, settings) as client:
        yield client


async def sign_out(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> httpx.Response:
    """Post the sign-out form of a page (its token), from our own origin unless told."""
    page = await client.get("/ui/estimate")
    assert page.status_code == 200, page.text
    return await client.post(
        "/ui/sign-out", data={"csrf": token_of(page.text)}, headers=headers or {"Origin": BASE}
    )


def set_cookie(response: httpx.Response, name: str) -> str:
    return next(h for h in response.headers.get_list("set-cookie") if h.startswith(name + "="))


async def test_the_cookie_holds_a_session_id_and_never_the_key(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    secret = await make_key(engine, Role.finance)
    signed = await sign_in(browser, secret)
    assert signed.status_code == 303 and signed.headers["location"] == HOME
    cookie = set_cookie(signed, "tally_session")
    assert secret not in str(signed.headers) and secret not in cookie
    assert all(flag in cookie for flag in ("HttpOnly", "SameSite=strict", "Path=/ui/"))
    assert "Secure" not in cookie  # plain http, no TALLY_PUBLIC_URL
    session = browser.cookies["tally_session"]
    async with raw_connection(engine) as conn:  # stored as its hash, for the key's id
        row = await conn.fetchrow("SELECT * FROM ui_session")
    assert row["id_hash"] == session_hash(session) and row["key_id"] == key_id_of(secret)
    assert (await browser.get(HOME)).status_code == 200


async def test_an_old_cookie_is_refused_after_sign_out(
    browser: httpx.AsyncClient, engine: AsyncEngine, reader: AsyncEngine, settings: Settings
) -> None:
    await sign_in(browser, await make_key(engine, Role.finance))
    stolen = browser.cookies["tally_session"]
    signed_out = await sign_out(browser)
    assert signed_out.status_code == 303 and signed_out.headers["location"] == SIGN_IN
    assert signed_out.headers["clear-site-data"] == '"storage"'
    async with pages_client(reader, settings) as thief:
        thief.cookies.set("tally_session", stolen)
        replayed = await thief.get(HOME)
    assert replayed.status_code == 303 and replayed.headers["location"] == SIGN_IN


async def test_signing_in_again_ends_the_previous_session(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    await sign_in(browser, await make_key(engine, Role.finance))
    first = browser.cookies["tally_session"]
    await sign_in(browser, await make_key(engine, Role.auditor))
    assert browser.cookies["tally_session"] != first
    async with raw_connection(engine) as conn:
        revoked = await conn.fetchval(
            "SELECT revoked_at IS NOT NULL FROM ui_session WHERE id_hash = $1", session_hash(first)
        )
    assert revoked


async def test_revoking_the_key_ends_its_sessions(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    secret = await make_key(engine, Role.finance)
    await sign_in(browser, secret)
    assert (await browser.get(HOME)).status_code == 200
    key_id = key_id_of(secret)
    assert key_id is not None
    assert await bootstrap.api_key_store(engine).revoke(key_id) == "revoked"
    after = await browser.get(HOME)
    assert after.status_code == 303 and after.headers["location"] == SIGN_IN


async def test_an_expired_session_is_refused(
    browser: httpx.AsyncClient, engine: AsyncEngine, owner: AsyncEngine
) -> None:
    secret = await make_key(engine, Role.finance)
    async with raw_connection(owner) as conn:  # a session that ended an hour ago
        await conn.execute(
            """INSERT INTO ui_session (id_hash, key_id, created_at, expires_at)
               VALUES ($1, $2, now() - interval '9 hours', now() - interval '1 hour')""",
            session_hash("old-session"),
            key_id_of(secret),
        )
    browser.cookies.set("tally_session", "old-session")
    assert (await browser.get(HOME)).headers["location"] == SIGN_IN


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Referer": "https://evil.example/login-csrf.html"},  # no Origin: the Referer counts
    ],
)
async def test_the_forms_are_refused_from_another_origin(
    browser: httpx.AsyncClient, engine: AsyncEngine, headers: dict[str, str]
) -> None:
    secret = await make_key(engine, Role.finance)
    page = await browser.get(SIGN_IN)
    form = {"key": secret, "csrf": token_of(page.text)}
    refused = await browser.post(SIGN_IN, data=form, headers=headers)
    assert refused.status_code == 403 and "tally_session" not in browser.cookies
    await sign_in(browser, secret)  # from its own origin: signed in
    forged = await sign_out(browser, headers)
    assert forged.status_code == 403
    assert (await browser.get(HOME)).status_code == 200  # still signed in


@pytest.mark.parametrize("form", [{"csrf": ""}, {"csrf": "0" * 64}, {"csrf": "é" * 64}])
async def test_the_forms_are_refused_without_their_csrf_token(
    browser: httpx.AsyncClient, engine: AsyncEngine, form: dict[str, str]
) -> None:
    secret = await make_key(engine, Role.finance)
    assert (await sign_in(browser, secret, **form)).status_code == 403
    assert "tally_session" not in browser.cookies
    assert (await sign_in(browser, secret)).status_code == 303
    forged = await browser.post("/ui/sign-out", data=form, headers={"Origin": BASE})
    assert forged.status_code == 403
    assert (await browser.get(HOME)).status_code == 200


async def test_redirects_and_links_never_follow_the_host_header(
    browser: httpx.AsyncClient, engine: AsyncEngine, reader: AsyncEngine, settings: Settings
) -> None:
    evil = {"Host": "evil.example"}
    redirected = await browser.get(HOME, headers=evil)
    assert redirected.status_code == 303 and redirected.headers["location"] == SIGN_IN
    form = await browser.get(SIGN_IN, headers=evil)
    assert "evil.example" not in form.text
    await sign_in(browser, await make_key(engine, Role.finance))
    assert "evil.example" not in (await browser.get(HOME, headers=evil)).text
    # With TALLY_PUBLIC_URL, only that origin may post the forms, whatever the Host says.
    public = settings.model_copy(update={"public_url": "https://tally.example.com"})
    async with pages_client(reader, public, "http://evil.example") as spoofed:
        page = await spoofed.get(SIGN_IN)
        data = {"key": await make_key(engine, Role.finance), "csrf": token_of(page.text)}
        posted = await spoofed.post(SIGN_IN, data=data, headers={"Origin": "http://evil.example"})
        assert posted.status_code == 403


async def test_htmx_keeps_no_page_in_the_browser_s_storage(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """htmx's history cache (sessionStorage) would keep signed-in pages after sign-out."""
    await sign_in(browser, await make_key(engine, Role.finance))
    page = await browser.get("/ui/estimate")
    config = re.search(r'<meta name="htmx-config" content=\'([^\']*)\'>', page.text)
    assert config and json.loads(config[1])["historyCacheSize"] == 0


async def test_no_slash_redirect_follows_the_host_header(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Starlette's slash redirects were absolute URLs of the Host header: ``GET /ui`` went
    to http://evil.example/ui/, and a POST to /ui/sign-in/ was re-sent there, key and all."""
    evil = {"Host": "evil.example"}
    home = await browser.get("/ui", headers=evil)
    assert home.status_code == 307 and home.headers["location"] == HOME
    assert (await browser.head("/ui", headers=evil)).headers["location"] == HOME
    page = await browser.get(SIGN_IN)
    secret = await make_key(engine, Role.finance)
    posted = await browser.post(
        SIGN_IN + "/",
        data={"key": secret, "csrf": token_of(page.text)},
        headers=evil | {"Origin": BASE},
    )
    assert posted.status_code == 404 and "location" not in posted.headers
    assert "evil.example" not in posted.text
    for path in ("/v1/invoices/", "/ui/estimate/", "/ui/sign-in/"):
        answer = await browser.get(path, headers=evil | bearer(secret))
        assert answer.status_code == 404 and "location" not in answer.headers, path


@pytest.mark.parametrize(
    ("public_url", "base", "origin", "other"),
    [
        (
            "https://tally.example.com:443",
            "https://tally.example.com",
            "https://tally.example.com",
            "https://tally.example.com:8443",
        ),
        (
            "https://Tally.example.com",
            "https://tally.example.com",
            "https://tally.example.com:443",
            "http://tally.example.com:443",
        ),
        (None, "http://tally:80", "http://tally", "http://tally:8080"),
        (None, "http://tally", "http://tally:80", "https://tally:80"),
        (None, "http://[::1]:80", "http://[::1]", "http://[::2]"),
    ],
)
async def test_an_origin_with_its_default_port_is_the_same_origin(
    engine: AsyncEngine, reader: AsyncEngine, settings: Settings, public_url: str | None,
    base: str, origin: str, other: str,
) -> None:  # fmt: skip
    """Explicit default ports used to fail closed (https://host:443 is https://host)."""
    configured = settings.model_copy(update={"public_url": public_url})
    async with pages_client(reader, configured, base) as client:
        signed = await sign_in(client, await make_key(engine, Role.finance), origin)
        assert signed.status_code == 303, signed.text
        assert (
            await sign_in(client, await make_key(engine, Role.finance), other)
        ).status_code == 403


@pytest.mark.parametrize("header", ["Origin", "Referer"])
@pytest.mark.parametrize("origin", ["http://[", "http://tally:99999"])
async def test_a_malformed_origin_is_refused(
    browser: httpx.AsyncClient, header: str, origin: str
) -> None:
    page = await browser.get(SIGN_IN)
    refused = await browser.post(
        SIGN_IN, data={"key": "k", "csrf": token_of(page.text)}, headers={header: origin}
    )
    assert refused.status_code == 403


async def test_cookies_are_secure_behind_https(
    engine: AsyncEngine, reader: AsyncEngine, settings: Settings
) -> None:
    public = settings.model_copy(update={"public_url": "https://tally.example.com"})
    async with pages_client(reader, public, "https://tally.example.com") as client:
        signed = await sign_in(
            client, await make_key(engine, Role.finance), "https://tally.example.com"
        )
        assert signed.status_code == 303
        assert "Secure" in set_cookie(signed, "tally_session")
    for proxies, secure in (("127.0.0.1", True), ("", False)):  # TLS ends at a proxy
        proxied = settings.model_copy(update={"trusted_proxies": proxies})
        async with pages_client(reader, proxied) as client:
            form = await client.get(SIGN_IN, headers={"X-Forwarded-Proto": "https"})
            assert ("Secure" in set_cookie(form, "tally_form")) is secure, proxies


async def test_security_headers_on_pages_and_api(
    browser: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    secret = await make_key(engine, Role.finance)
    await sign_in(browser, secret)
    page = await browser.get(HOME)
    api = await browser.get("/v1/dead-letters", headers={"Authorization": f"Bearer {secret}"})
    unauthorized = await browser.get("/v1/dead-letters")
    static = await browser.get("/ui/static/tally.css")
    for response in (page, api, unauthorized, static):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
    for response in (page, api, unauthorized):
        assert response.headers["cache-control"] == "no-store"
    assert "no-store" not in static.headers.get("cache-control", "")
    policy = page.headers["content-security-policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ):
        assert directive in policy
    assert "unsafe" not in policy
    assert api.headers["content-security-policy"] == (  # as docs/content/operate/security.md says
        "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
