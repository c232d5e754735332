"""Failed authentications are limited: after N wrong keys from one address (or for one key
id) the API and the sign-in form answer 429 with Retry-After, while another client's
right key still works."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import bearer, make_key, token_of
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


async def test_concurrent_wrong_keys_get_at_most_the_limit_of_401s(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    """Each try is reserved before the key is looked up: 40 wrong keys at once from one
    address get LIMIT answers 401 and the rest 429 (before, all 40 were checked)."""
    app = limited(reader, settings)
    async with client_at(app, "10.0.3.1") as attacker:
        answers = await asyncio.gather(
            *(
                attacker.get("/v1/verify", headers=bearer(f"tally_{n:012x}_" + "x" * 43))
                for n in range(40)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) <= LIMIT and statuses.count(401) + statuses.count(429) == 40


async def test_concurrent_wrong_sign_ins_get_at_most_the_limit_of_401s(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    app = limited(reader, settings)
    async with client_at(app, "10.0.3.2") as attacker:
        form = await attacker.get("/ui/sign-in")
        token = token_of(form.text)
        answers = await asyncio.gather(
            *(
                attacker.post(
                    "/ui/sign-in",
                    data={"key": f"tally_{n:012x}_" + "x" * 43, "csrf": token},
                    headers={"Origin": BASE},
                )
                for n in range(40)
            )
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(401) <= LIMIT and statuses.count(401) + statuses.count(429) == 40


async def test_a_right_key_does_not_use_up_the_budget(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    """A try that succeeds is released, and tries beyond the limit wait for the ones in
    flight rather than being refused: many right keys at once are all answered."""
    app = limited(reader, settings)
    right = bearer(await make_key(engine, Role.auditor))
    async with client_at(app, "10.0.3.3") as auditor:
        answers = await asyncio.gather(
            *(auditor.get("/v1/verify", headers=right) for _ in range(8))
        )
        assert [a.status_code for a in answers] == [200] * 8
        assert (await auditor.get("/v1/verify", headers=right)).status_code == 200


async def test_an_ipv6_client_is_counted_by_its_64(
    reader: AsyncEngine, engine: AsyncEngine, settings: Settings
) -> None:
    app = limited(reader, settings)
    for n in range(LIMIT):  # a fresh address of the same /64 (and key id) each time
        async with client_at(app, f"2001:db8:5:6::{n + 1:x}") as attacker:
            wrong = bearer(f"tally_{n:012x}_" + "x" * 43)
            assert (await attacker.get("/v1/verify", headers=wrong)).status_code == 401
    fresh = bearer("tally_00000000ffff_" + "x" * 43)
    async with client_at(app, "2001:db8:5:6:ffff::1") as same:
        assert (await same.get("/v1/verify", headers=fresh)).status_code == 429
    async with client_at(app, "2001:db8:5:7::1") as other:
        assert (await other.get("/v1/verify", headers=fresh)).status_code == 401
