"""Generated hostile values (NUL, lone surrogates, huge and negative integers, instants and
periods at the calendar's ends, 1e308, nan, inf, very long text, made-up cursors) in every
parameter of every operation of the OpenAPI document and of every page, signed in with a
key that has every scope: the answer is a 200, a 3xx or a 4xx the operation documents,
never a 500, and every error of /v1 is the JSON ErrorBody (the pages': an HTML page).

A URL carries text as UTF-8, so a lone surrogate arrives as U+FFFD, but a cursor's JSON can
still hold one (``\\ud800``)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from integration.http.conftest import OCT, OWN, Ledger, bearer, fill, make_key, sign_in
from tally.domain.access import Role
from tally.domain.estimate import EstimateInput
from tally.entrypoints.http.app import create_app
from tally.entrypoints.pages.app import ROUTERS as PAGE_ROUTERS

NASTY = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "-1",
    "0",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-Infinity",
    "1e-400",
    "9999-12-31T23:59:59-14:00",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59.999999Z",
    "0000-01",
    "9999-12",
    "0001-01",
    "9999-12-31",
    "0001-01-01",
    "x" * 10_000,
    "",
    "%",
    "../..",
]


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def instant(moment: datetime, minutes: int) -> str:
    return moment.replace(tzinfo=timezone(timedelta(minutes=minutes))).isoformat()


PART = st.one_of(st.integers(-(2**80), 2**80), st.text(st.characters(codec=None), max_size=5))
HOSTILE = st.one_of(
    st.sampled_from(NASTY),
    st.integers(-(2**80), 2**80).map(str),
    st.floats().map(str),
    st.builds("{:04d}-{:02d}".format, st.integers(0, 10_000), st.integers(0, 13)),
    st.builds(instant, st.datetimes(), st.integers(-1439, 1439)),
    st.text(st.characters(codec=None), max_size=20),  # surrogates, NUL, anything
    st.lists(PART, max_size=3).map(lambda key: b64(json.dumps(key).encode())),  # unsigned
    st.tuples(st.binary(max_size=24), st.binary(max_size=32)).map(
        lambda parts: f"{b64(parts[0])}.{b64(parts[1])}"  # a payload and a made-up signature
    ),
)
ESTIMATE = list(EstimateInput.model_fields)  # /v1/estimate reads each as a query parameter
PAGE_QUERY = [
    *("period", "preset", "from", "to", "client", "url", "section", "all", "currency"),
    *("next", "after", "entry", "code", "source", "org", "state", "seat", "users"),
]
PAGE_QUERY += ["license", "model", "users", *ESTIMATE]  # what the pages read from the query
PAGE_PATH = {"org": OWN, "period": OCT, "meter": "api_requests", "letter_id": "1"}


def encoded(value: str) -> str:
    """``value`` in a URL as a client can send it: UTF-8, percent-encoded (a lone surrogate
    as its bytes: the server reads U+FFFD). A value of ``.`` or ``..`` has its dots encoded
    too: as they are, they are dot-segments, which the client removes (``/v1/events/./.``
    is sent as ``/v1/events/``, another route)."""
    if value in {".", ".."}:
        return value.replace(".", "%2E")
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def url(path: str, query: dict[str, str]) -> str:
    return path + "?" + "&".join(f"{name}={encoded(value)}" for name, value in query.items())


def operations(app: FastAPI) -> list[tuple[str, dict[str, Any]]]:
    """Every read that takes a parameter (/v1/health takes none; the body of
    POST /v1/events is test_ingest.py's)."""
    return [
        (path, methods["get"])
        for path, methods in app.openapi()["paths"].items()
        if methods.get("get", {}).get("parameters")
    ]


def pages(app: FastAPI) -> list[str]:
    """Every page a browser GETs (not the sign-in form, nor the static files)."""
    return [
        "/ui" + route.path
        for router in PAGE_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and "GET" in route.methods and route.path != "/sign-in"
    ]


@pytest.fixture
async def signed_in(
    reader: AsyncEngine, ledger: Ledger, engine: AsyncEngine
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app, and a client with an auditor key (every scope) on the API and the pages;
    anything the app lets out fails the test."""
    secret = await make_key(engine, Role.auditor)
    app = create_app(reader)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://tally",
        headers=bearer(secret),
    ) as client:
        signed = await sign_in(client, secret)
        assert signed.status_code == 303, signed.text
        yield app, client


@pytest.mark.parametrize("query", ["client=&url=GET%20/x", "client=c-1&url=", "client=&url="])
async def test_an_empty_filter_beside_another_is_two_filters_refused_not_a_500(
    signed_in: tuple[FastAPI, httpx.AsyncClient], ledger: Ledger, query: str
) -> None:
    """Found by the property test below: an empty ``client`` passed the route's check (it
    is falsy) and the report then refused two filters with a 500."""
    _, client = signed_in
    answer = await client.get(f"/v1/orgs/{OWN}/reports/api-usage?{query}")
    assert answer.status_code == 400, answer.text
    assert "one OAuth client or one URL" in answer.json()["message"]


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_no_value_in_any_parameter_of_the_api_is_a_500(
    signed_in: tuple[FastAPI, httpx.AsyncClient], ledger: Ledger, data: st.DataObject
) -> None:
    app, client = signed_in
    path, operation = data.draw(st.sampled_from(operations(app)))
    declared = [(p["name"], p["in"]) for p in operation.get("parameters", [])]
    extra = [(name, "query") for name in ESTIMATE] if path == "/v1/estimate" else []
    names = data.draw(st.lists(st.sampled_from(declared + extra), min_size=1, max_size=3))
    hostile = {name: (where, data.draw(HOSTILE, label=name)) for name, where in names}
    for name, (where, value) in hostile.items():
        if where == "path":
            path = re.sub(rf"{{{name}(:path)?}}", encoded(value), path)
    path, query = fill(path, operation, ledger)
    query |= {name: value for name, (where, value) in hostile.items() if where == "query"}

    answer = await client.get(url(path, query))

    assert answer.status_code < 500, answer.text
    if answer.status_code >= 400:
        documented = operation["responses"].get(str(answer.status_code))
        assert documented is not None, (answer.status_code, answer.text)
        assert answer.headers["content-type"] == "application/json"
        body = answer.json()
        assert isinstance(body["code"], str) and isinstance(body["message"], str)
        assert set(body) <= {"code", "message", "request_id"}


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
async def test_no_value_in_any_parameter_of_a_page_is_a_500(
    signed_in: tuple[FastAPI, httpx.AsyncClient], data: st.DataObject
) -> None:
    app, client = signed_in
    path = data.draw(st.sampled_from(pages(app)))
    in_path = re.findall(r"{(\w+)}", path)
    names = data.draw(st.lists(st.sampled_from(in_path + PAGE_QUERY), min_size=1, max_size=3))
    hostile = {name: data.draw(HOSTILE, label=name) for name in names}
    for name in in_path:
        path = path.replace(f"{{{name}}}", encoded(hostile.get(name, PAGE_PATH[name])))
    query = {name: value for name, value in hostile.items() if name not in in_path}

    answer = await client.get(url(path, query))

    assert answer.status_code < 500, answer.text
    assert answer.headers.get("location") != "/ui/sign-in", "the session was lost"
    if answer.status_code >= 400:
        assert answer.headers["content-type"].startswith("text/html"), answer.text
