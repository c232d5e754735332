"""Lists: JSON pages and CSV agree; keyset pages return every row once while rows are
written; every error is JSON with a stable code."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OWN, Ledger, bearer, fill, make_key
from support.ledger_support import read
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import invoices
from tally.domain.access import Role
from tally.entrypoints.plain import plain


def lists(document: dict[str, Any]) -> list[str]:
    """The lists and exports of the OpenAPI document: the operations that can answer CSV,
    but for the API usage report (one document of sections: its CSV is compared with the
    page's download in tests/e2e/test_pages.py)."""
    return [
        path
        for path, operations in document["paths"].items()
        if "text/csv"
        in operations.get("get", {}).get("responses", {}).get("200", {}).get("content", {})
        and not path.endswith("/reports/api-usage")
    ]


async def pages(
    client: httpx.AsyncClient, path: str, key: str, limit: int, query: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every row of a list as JSON: following ``next`` page by page; an export's array; a
    trial balance's ``rows``."""
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {**(query or {}), "limit": limit, "format": "json"}
    while True:
        answer = await client.get(path, params=params, headers=bearer(key))
        assert answer.status_code == 200, answer.text
        body = answer.json()
        if isinstance(body, list) or "items" not in body:
            return body if isinstance(body, list) else list(body["rows"])
        items += body["items"]
        if body["next"] is None:
            return items
        params["cursor"] = body["next"]


def as_csv_cells(item: dict[str, Any]) -> dict[str, str]:
    """A JSON item as its CSV row says it: empty for null, a nested value as its JSON."""

    def cell(value: Any) -> str:
        if isinstance(value, list | dict):
            return json.dumps(value, separators=(",", ":"))
        return "" if value is None else str(value)

    return {k: cell(v) for k, v in item.items()}


async def test_json_pages_and_csv_agree_on_every_list(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = await make_key(engine, Role.auditor)
    document = (await client.get("/openapi.json")).json()
    listed_paths = lists(document)
    assert {
        "/v1/invoices",
        "/v1/dead-letters",
        "/v1/accounts",
        "/v1/entries",
        "/v1/invoices/{number}/lineage",
        "/v1/trial-balance",
        "/v1/gl-export",
    } <= set(listed_paths)
    for path in listed_paths:
        url, query = fill(path, document["paths"][path]["get"], ledger)
        query.pop("org", None)  # every organization's rows
        listed = await pages(client, url, key, 1, query)
        assert len(listed) >= (1 if path == "/v1/seals" else 2), path  # one month closed
        for how in ({"params": {"format": "csv"}}, {"headers": {"Accept": "text/csv"}}):
            headers = {**bearer(key), **how.get("headers", {})}
            params = query | how.get("params", {})
            answer = await client.get(url, params=params, headers=headers)
            assert answer.headers["content-type"].startswith("text/csv")
            rows = list(csv.DictReader(io.StringIO(answer.text)))
            assert rows == [as_csv_cells(item) for item in listed], path
    empty = await client.get(
        "/v1/dead-letters", params={"format": "csv", "code": "none"}, headers=bearer(key)
    )
    assert empty.text.splitlines()[0].startswith("id,stream,")  # a header, no rows


async def test_an_invoice_is_the_fixed_json_of_tally_invoice_show(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = await make_key(engine, Role.org_viewer, OWN)
    answer = await client.get(f"/v1/invoices/{ledger.invoices[OWN]}", headers=bearer(key))
    found = await read(engine, invoices.invoice, OWN, "2026-10")
    assert found is not None
    assert answer.json() == plain(found.document.model_dump())
    assert isinstance(answer.json()["total"], str)  # decimals as strings


async def test_a_dead_letter_keeps_its_bytes(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine, owner: AsyncEngine
) -> None:
    key = await make_key(engine, Role.finance)
    async with raw_connection(owner) as conn:
        binary = await conn.fetchval(
            """INSERT INTO dead_letter (stream, stream_id, raw, reason, code, received_at)
               VALUES ('s', '9-0', '\\xff00'::bytea, 'not UTF-8', 'invalid_json', now())
               RETURNING id"""
        )
    text = (await client.get(f"/v1/dead-letters/{ledger.dead_letter}", headers=bearer(key))).json()
    assert text["raw_text"] == "not json" and text["raw_base64"] == "bm90IGpzb24="
    raw = (await client.get(f"/v1/dead-letters/{binary}", headers=bearer(key))).json()
    assert raw["raw_text"] is None and raw["raw_base64"] == "/wA="


async def test_pages_return_every_row_once_while_rows_are_written(
    client: httpx.AsyncClient, engine: AsyncEngine, owner: AsyncEngine
) -> None:
    key = await make_key(engine, Role.finance)

    async def letters(first: int, count: int) -> None:
        async with raw_connection(engine) as conn:  # as tally_writer, like the consumer
            for n in range(first, first + count):
                await conn.execute(
                    """INSERT INTO dead_letter (stream, stream_id, raw, reason, code,
                           received_at) VALUES ('s', $1, 'x', 'r', 'invalid_json', now())""",
                    f"{n}-0",
                )

    await letters(0, 60)
    async with raw_connection(owner) as conn:
        before = {row["id"] for row in await conn.fetch("SELECT id FROM dead_letter")}
    writer = asyncio.create_task(letters(1000, 200))
    listed = await pages(client, "/v1/dead-letters", key, limit=7)
    await writer
    ids = [item["id"] for item in listed]
    assert len(ids) == len(set(ids))  # no row twice
    assert before <= set(ids)  # every row that was there, whatever was written meanwhile
    assert ids == sorted(ids)


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(limit=st.integers(1, 12), code=st.sampled_from([None, "invalid_json", "invalid_event"]))
async def test_any_page_size_lists_the_same_rows(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine, limit: int, code: str | None
) -> None:
    key = await make_key(engine, Role.auditor)
    everything = await client.get(
        "/v1/dead-letters",
        params={"format": "csv"} | ({"code": code} if code else {}),
        headers=bearer(key),
    )
    paged = []
    params: dict[str, Any] = {"limit": limit} | ({"code": code} if code else {})
    while True:
        body = (await client.get("/v1/dead-letters", params=params, headers=bearer(key))).json()
        paged += body["items"]
        if not body["next"]:
            break
        params["cursor"] = body["next"]
    assert list(csv.DictReader(io.StringIO(everything.text))) == [as_csv_cells(i) for i in paged]


async def test_errors_are_json_with_stable_codes(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = bearer(await make_key(engine, Role.auditor))
    cases = [
        ("/v1/invoices?cursor=garbage", 400, "invalid_cursor"),
        ("/v1/invoices?cursor=WyJ4Il0", 400, "invalid_cursor"),  # ["x"]: not this list's key
        ("/v1/invoices?limit=0", 422, "invalid_request"),
        ("/v1/invoices?limit=1001", 422, "invalid_request"),
        ("/v1/invoices?period=2026-13", 422, "invalid_request"),
        ("/v1/dead-letters?since=2026-11-01T00:00:00", 422, "invalid_request"),  # no offset
        ("/v1/dead-letters/abc", 422, "invalid_request"),
        ("/v1/dead-letters/999999", 404, "not_found"),
        ("/v1/events/test/never", 404, "not_found"),
        ("/v1/invoices/42", 404, "not_found"),
        ("/v1/nowhere", 404, "not_found"),
    ]
    document = (await client.get("/openapi.json")).json()
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for url, status, code in cases:
        answer = await client.get(url, headers=key)
        assert (answer.status_code, answer.json()["code"]) == (status, code), url
        assert answer.json()["message"]
        assert set(answer.json()) == set(document["components"]["schemas"]["ErrorBody"]["required"])
        path = url.split("?")[0].replace("/abc", "/{letter_id}").replace("/999999", "/{letter_id}")
        operation = document["paths"].get(path, {}).get("get")
        if operation is not None:  # as the document says this operation answers it
            documented = operation["responses"][str(status)]["content"]["application/json"]
            assert documented["schema"] == error_body, url
    refused = await client.post("/v1/invoices", headers=key)
    assert (refused.status_code, refused.json()["code"]) == (405, "method_not_allowed")


async def test_an_event_and_the_verification(
    client: httpx.AsyncClient, ledger: Ledger, engine: AsyncEngine
) -> None:
    key = bearer(await make_key(engine, Role.auditor))
    story = (
        await client.get(f"/v1/events/{ledger.event[0]}/{ledger.event[1]}", headers=key)
    ).json()
    assert story["status"] == "metered"
    assert story["billing"]["invoice"] == ledger.invoices[OWN]
    assert story["entry"]["lines"] and isinstance(story["entry"]["lines"][0]["amount"], str)
    verified = (await client.get("/v1/verify", headers=key)).json()
    assert verified["ok"] is True and verified["findings"] == []
    assert verified["entries"] > 0


@settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    limit=st.integers(1, 9),
    path=st.sampled_from(["/v1/accounts", "/v1/entries", "/v1/invoices/{number}/lineage"]),
    org=st.sampled_from([None, OWN]),
)
async def test_any_page_size_of_a_ledger_list_lists_every_row_once_in_order(
    client: httpx.AsyncClient,
    ledger: Ledger,
    engine: AsyncEngine,
    limit: int,
    path: str,
    org: str | None,
) -> None:
    key = await make_key(engine, Role.auditor)
    url = path.replace("{number}", ledger.invoices[OWN])
    query = {"org": org} if org and "lineage" not in path else {}
    everything = await client.get(url, params=query | {"format": "csv"}, headers=bearer(key))
    paged = await pages(client, url, key, limit, query)
    # one query's rows, in order: the pages neither repeat, skip nor reorder any of them
    assert list(csv.DictReader(io.StringIO(everything.text))) == [as_csv_cells(i) for i in paged]
