"""Every input gets a documented answer: the values an attacker's probe of `tally serve`
answered with a bare 500 now get the API's JSON 4xx, or the pages' error page."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OWN, bearer, make_key, sign_in
from tally import bootstrap
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import events as event_reads
from tally.adapters.postgres.reads import organizations as organization_reads
from tally.domain.access import Role
from tally.entrypoints.http.app import create_app
from tally.service_layer import organizations


@pytest.fixture
async def auditor(engine: AsyncEngine, reader: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    """Signed in with an auditor key, on the API (header) and the pages (cookie), and an
    organization to ask about."""
    await organizations.add(bootstrap.database(engine), OWN, "USD")
    secret = await make_key(engine, Role.auditor)
    transport = httpx.ASGITransport(app=create_app(reader))  # raises what the app lets out
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://tally",
        headers=bearer(secret),
    ) as client:
        signed = await sign_in(client, secret)
        assert signed.status_code == 303, signed.text
        yield client


async def refused(client: httpx.AsyncClient, url: str) -> str:
    """The API's message for ``url``, which it refuses as an invalid request."""
    answer = await client.get(url)
    assert answer.status_code == 422, (url, answer.text)
    assert answer.json()["code"] == "invalid_request"
    message: str = answer.json()["message"]
    return message


async def test_a_nul_in_a_query_parameter_is_an_invalid_request(
    auditor: httpx.AsyncClient,
) -> None:
    assert "NUL" in await refused(auditor, "/v1/invoices?org=%00")


async def test_a_nul_in_a_page_path_is_an_error_page(auditor: httpx.AsyncClient) -> None:
    answer = await auditor.get("/ui/orgs/%00")
    assert answer.status_code == 422 and answer.headers["content-type"].startswith("text/html")
    assert "Not a valid request" in answer.text and "NUL" in answer.text


async def test_an_id_beyond_64_bits_is_an_invalid_request(auditor: httpx.AsyncClient) -> None:
    assert "9223372036854775807" in await refused(auditor, "/v1/entries/9223372036854775808")


async def test_an_instant_whose_utc_leaves_the_calendar_is_an_invalid_request(
    auditor: httpx.AsyncClient,
) -> None:
    since = "9999-12-31T23:59:59-14:00"
    assert "instant must be" in await refused(auditor, f"/v1/dead-letters?since={since}")


@pytest.mark.parametrize("period", ["9999-12", "0000-01"])
async def test_a_period_at_the_calendars_ends_is_an_invalid_request(
    auditor: httpx.AsyncClient, period: str
) -> None:
    message = await refused(auditor, f"/v1/orgs/{OWN}/usage?period={period}")
    assert "0001-01 to 9998-12" in message


async def test_a_period_no_rate_card_covers_is_a_message(auditor: httpx.AsyncClient) -> None:
    page = await auditor.get(f"/ui/orgs/{OWN}?period=0001-01")
    assert page.status_code == 404 and "No rate card" in page.text
    api = await auditor.get(f"/v1/orgs/{OWN}/usage?period=0001-01")
    assert (api.status_code, api.json()["code"]) == (404, "not_found")
    assert "no rate card" in api.json()["message"]


async def test_a_huge_number_is_not_an_estimate(auditor: httpx.AsyncClient) -> None:
    answer = await auditor.get("/v1/estimate?copilot_users=1e308")
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_request")
    assert "copilot_users" in answer.json()["message"]


def unsigned(key: list[Any]) -> str:
    """A cursor as this API made them before they were signed: base64url of the key."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


async def test_a_cursor_beyond_64_bits_is_an_invalid_cursor(auditor: httpx.AsyncClient) -> None:
    answer = await auditor.get(f"/v1/invoices?cursor={unsigned([9223372036854775808])}")
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_cursor")


@pytest.mark.parametrize("part", ["\u0000", "\ud800"])
async def test_a_cursor_with_a_nul_or_a_lone_surrogate_is_an_invalid_cursor(
    auditor: httpx.AsyncClient, part: str
) -> None:
    answer = await auditor.get(f"/v1/accounts?cursor={unsigned([part])}")
    assert (answer.status_code, answer.json()["code"]) == (400, "invalid_cursor")


async def test_only_the_cursors_this_server_signed_continue_a_list(
    auditor: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    async with raw_connection(engine) as conn:  # as tally_writer, like the consumer
        for n in range(3):
            await conn.execute(
                """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at)
                   VALUES ('s', $1, 'x', 'r', 'invalid_json', now())""",
                f"{n}-0",
            )
    first = (await auditor.get("/v1/dead-letters?limit=1")).json()
    signed = first["next"]
    second = await auditor.get("/v1/dead-letters", params={"limit": 1, "cursor": signed})
    assert second.json()["items"][0]["id"] == first["items"][0]["id"] + 1
    payload, mac = signed.split(".")
    for cursor in (
        f"{unsigned([0])}.{mac}",  # edited: another key under the signature
        signed[:-1],  # truncated
        payload,  # unsigned
        f"{payload}.{mac[::-1]}",  # forged signature
    ):
        answer = await auditor.get("/v1/dead-letters", params={"cursor": cursor})
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_cursor"), cursor
    # a list's cursor continues that list only (the same shape of key: one id)
    for other in ("/v1/invoices", "/v1/entries"):
        answer = await auditor.get(other, params={"cursor": signed})
        assert (answer.status_code, answer.json()["code"]) == (400, "invalid_cursor"), other


async def fail(*args: Any) -> None:
    raise RuntimeError("the unexpected")


async def test_an_unexpected_exception_is_json_with_the_request_id_it_is_logged_under(
    auditor: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(event_reads, "event_story", fail)
    with caplog.at_level(logging.INFO, "tally.api"):
        answer = await auditor.get("/v1/events/test/e-1")
    assert answer.status_code == 500
    body = answer.json()
    assert body["code"] == "internal" and body["request_id"] == answer.headers["X-Request-Id"]
    assert "the unexpected" not in body["message"]  # the log has it, not the client
    failure = next(r for r in caplog.records if r.exc_info)
    assert body["request_id"] in failure.getMessage() and "the unexpected" in caplog.text
    ok = await auditor.get("/v1/health")
    assert ok.headers["X-Request-Id"] not in (None, body["request_id"])


async def test_an_unexpected_exception_on_a_page_shows_the_request_id(
    auditor: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(organization_reads, "organizations", fail)
    with caplog.at_level(logging.INFO, "tally.api"):
        page = await auditor.get("/ui/")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    request_id = page.headers["X-Request-Id"]
    assert "Something went wrong" in page.text and request_id in page.text
    assert request_id in next(r for r in caplog.records if r.exc_info).getMessage()


@pytest.mark.parametrize("value", ["1.9", "253402300800", "-5", "1e3"])
async def test_an_instant_written_as_a_number_is_an_invalid_request(
    auditor: httpx.AsyncClient, value: str
) -> None:
    """Not Unix time (pydantic's reading: 253402300800 was milliseconds, a day of 1978)."""
    assert "RFC 3339" in await refused(auditor, f"/v1/entries?posted_from={value}")
    written = await auditor.get("/v1/entries?posted_from=2026-10-01T00:00:00Z")
    assert written.status_code == 200, written.text
