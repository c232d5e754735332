"""Failed authentications are limited: after N wrong keys from one address (or for one key
id) the API and the sign-in form answer 429 with Retry-After, while another client's
right key still works."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import bearer, make_key
from integration.http.test_pages_sessions import BASE, sign_in
from tally.config import Settings
from tally.domain.access import Role, key_id_of
from tally.entrypoints.http.app import create_app

LIMIT = 3
WRONG = "tally_000000000000_" + "x" * 43


def client_at(app: object, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url=BASE)


def limited(reader: AsyncEngine, settings: Settings) -> object:
    """One app (one process's counts) with small limits."""
    return create_app(
        reader,
        settings.model_copy(
            update={"auth_failures_per_key": LIMIT, "auth_failures_per_address": LIMIT}
        ),
    )


async def test_the_api_refuses_an_address_after_wrong_keys(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = limited(reader, settings)
    right = bearer(await make_key(engine, Role.auditor))
    async with client_at(app, "10.0.0.1") as attacker, client_at(app, "10.0.0.2") as auditor:
        for n in range(LIMIT):  # a forged X-Forwarded-For changes nothing: no trusted proxy
            spoofed = bearer(WRONG) | {"X-Forwarded-For": f"192.0.2.{n}"}
            assert (await attacker.get("/v1/verify", headers=spoofed)).status_code == 401
        refused = await attacker.get("/v1/verify", headers=bearer(WRONG))
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_requests"
        assert 0 < int(refused.headers["retry-after"]) <= 300
        assert (await attacker.get("/v1/verify", headers=right)).status_code == 429
        assert (await auditor.get("/v1/verify", headers=right)).status_code == 200
    assert "too many failed authentications: key=000000000000 address=10.0.0.1" in caplog.text


async def test_the_api_refuses_a_key_id_guessed_from_many_addresses(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    app = limited(reader, settings)
    target = await make_key(engine, Role.auditor)
    guess = target[:-4] + "AAAA"  # the right key id, a wrong secret
    for n in range(LIMIT):
        async with client_at(app, f"10.0.1.{n}") as attacker:
            assert (await attacker.get("/v1/verify", headers=bearer(guess))).status_code == 401
    async with client_at(app, "10.0.2.1") as elsewhere:
        refused = await elsewhere.get("/v1/verify", headers=bearer(guess))
        assert refused.status_code == 429 and "retry-after" in refused.headers
        other = bearer(await make_key(engine, Role.auditor))
        assert (await elsewhere.get("/v1/verify", headers=other)).status_code == 200
    assert key_id_of(guess) == key_id_of(target)


async def test_the_sign_in_form_refuses_an_address_after_wrong_keys(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    app = limited(reader, settings)
    right = await make_key(engine, Role.finance)
    async with client_at(app, "10.0.0.1") as attacker, client_at(app, "10.0.0.2") as user:
        for _ in range(LIMIT):
            assert (await sign_in(attacker, WRONG)).status_code == 401
        refused = await sign_in(attacker, right)
        assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
        assert int(refused.headers["retry-after"]) > 0
        assert "tally_session" not in attacker.cookies
        assert (await sign_in(user, right)).status_code == 303


async def test_behind_a_trusted_proxy_the_forwarded_address_is_counted(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    proxied = settings.model_copy(
        update={"auth_failures_per_address": LIMIT, "trusted_proxies": "10.0.0.9"}
    )
    app = create_app(reader, proxied)
    right = bearer(await make_key(engine, Role.auditor))
    async with client_at(app, "10.0.0.9") as proxy:
        attacker, user = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.2"}
        for n in range(LIMIT):
            wrong = bearer(f"tally_{n:012x}_" + "x" * 43)
            assert (await proxy.get("/v1/verify", headers=wrong | attacker)).status_code == 401
        assert (await proxy.get("/v1/verify", headers=right | attacker)).status_code == 429
        assert (await proxy.get("/v1/verify", headers=right | user)).status_code == 200
