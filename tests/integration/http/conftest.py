"""A closed month behind the API: two organizations' invoices, events, dead letters, and a
key of every kind (live, expired, revoked) with its secret."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from support.close_support import close, license_day, meter
from support.ledger_support import api, urls_of
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.config import Settings
from tally.domain.access import Role, new_key
from tally.entrypoints.http.app import create_app
from tally.service_layer.api_keys import create_key
from tally.service_layer.metering import MeteringService

OCT = "2026-10"
OWN, OTHER = "acme", "globex"  # the org_viewer key's organization, and another one


@dataclass(frozen=True)
class Ledger:
    """What the API serves: ids to fill the routes' path parameters with."""

    invoices: dict[str, str]  # org → invoice number
    event: tuple[str, str]  # (source, id) of a metered event
    dead_letter: int
    account: str  # the code of an account of OWN's moved at several instants (with '/')
    entry: int  # an entry of the closed month, so sealed


async def closed_month(engine: AsyncEngine, service: MeteringService) -> Ledger:
    await meter(
        service,
        [
            *(
                license_day(f"{o}-lic", "gc2", "named", 2, org=o, day="2026-10-05")
                for o in (OWN, OTHER)
            ),
            *(api(f"{o}-{n}", count=1000 + n, org=o) for o in (OWN, OTHER) for n in range(3)),
            b"not json",
            b'{"specversion": "1.0"}',
        ],
    )
    await close(engine, OCT)
    async with raw_connection(engine) as conn:
        numbers = {
            row["org"]: f"INV-{row['number']:06d}"
            for row in await conn.fetch("SELECT org, number FROM invoice")
        }
        letter = await conn.fetchval("SELECT min(id) FROM dead_letter")
        account = await conn.fetchval(  # the one moved most often: by usage and the close
            """SELECT a.code FROM account a
                 JOIN entry_line l ON l.account_id = a.id JOIN journal_entry e ON e.id = l.entry_id
                WHERE a.owner = $1 GROUP BY a.code
                ORDER BY count(DISTINCT e.posted_at) DESC, a.code LIMIT 1""",
            OWN,
        )
        entry = await conn.fetchval("SELECT min(id) FROM journal_entry WHERE period = $1", OCT)
    return Ledger(numbers, ("test", f"{OWN}-0"), letter, account, entry)


@pytest.fixture
async def ledger(engine: AsyncEngine, service: MeteringService) -> Ledger:
    return await closed_month(engine, service)


@pytest.fixture
async def reader(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The API's engine, as ``tally serve`` builds it."""
    reader = bootstrap.api_engine(settings, urls_of(settings))
    yield reader
    await reader.dispose()


@pytest.fixture
async def client(reader: AsyncEngine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app without failed-authentication limits: these tests send many wrong keys on
    purpose (test_throttling.py tests the limits)."""
    unlimited = settings.model_copy(
        update={"auth_failures_per_key": 0, "auth_failures_per_address": 0}
    )
    transport = httpx.ASGITransport(app=create_app(reader, unlimited))
    async with httpx.AsyncClient(transport=transport, base_url="http://tally") as client:
        yield client


async def make_key(
    engine: AsyncEngine, role: Role, org: str | None = None, source: str | None = None
) -> str:
    key, _ = await create_key(bootstrap.api_key_store(engine), role, org, None, None, source)
    return key.secret


async def expired_key(owner: AsyncEngine) -> str:
    """A key past its expiry (written as the owner: its dates are in the past)."""
    key = new_key(Role.auditor, None)
    async with raw_connection(owner) as conn:
        await conn.execute(
            """INSERT INTO api_key (id, name, role, scopes, org, secret_hash, created_at,
                   expires_at)
               VALUES ($1, 'old', 'auditor', $2, NULL, $3, now() - interval '2 days',
                       now() - interval '1 day')""",
            key.id,
            sorted(key.scopes),
            key.secret_hash,
        )
    return key.secret


async def revoked_key(engine: AsyncEngine) -> str:
    key, _ = await create_key(bootstrap.api_key_store(engine), Role.auditor, None, None, None)
    assert await bootstrap.api_key_store(engine).revoke(key.id) == "revoked"
    return key.secret


def fill(
    path: str, operation: dict[str, Any], ledger: Ledger, org: str = OWN
) -> tuple[str, dict[str, str]]:
    """The path with its parameters filled from ``ledger`` for ``org``, and the query: the
    organization when the route takes it there, and every required query parameter."""
    values = {
        "number": ledger.invoices[org],
        "source": ledger.event[0],
        "event_id": ledger.event[1],
        "letter_id": str(ledger.dead_letter),
        "org": org,
        "code": ledger.account,
        "entry_id": str(ledger.entry),
    }
    for name in re.findall(r"{(\w+)}", path):
        assert name in values, f"{path}: no sample value for the path parameter {name}"
        path = path.replace(f"{{{name}}}", values[name])
    query = {"period": OCT}  # the sample of each required query parameter
    required = [
        p["name"] for p in operation.get("parameters", []) if p["in"] == "query" and p["required"]
    ]
    for name in required:
        assert name in query, f"{path}: no sample value for the query parameter {name}"
    binding = operation.get("x-tally-org")
    return path, {name: query[name] for name in required} | (
        {"org": org} if binding == "query" else {}
    )


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def token_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]*)"', html)
    assert found, "the form carries no CSRF token"
    return found[1]


async def sign_in(
    client: httpx.AsyncClient, secret: str, origin: str | None = "http://tally", **form: str
) -> httpx.Response:
    """Open the form (its cookie and token), then post it as the browser would."""
    page = await client.get("/ui/sign-in")
    assert page.status_code == 200
    headers = {"Origin": origin} if origin else {}
    data = {"key": secret, "csrf": token_of(page.text)} | form
    return await client.post("/ui/sign-in", data=data, headers=headers)
