"""The HTTP API's app: every route behind ``auth.authorize``, JSON errors, one log line a
request, security headers on every answer, and an engine acting as tally_reader (the
database refuses any write)."""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import cache
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from tally import bootstrap
from tally.adapters.telemetry import tracing
from tally.config import Settings, get_settings
from tally.domain.throttle import EventBudget, FailureLimiter
from tally.entrypoints.discovery import submodules
from tally.entrypoints.failures import LastResort
from tally.entrypoints.http import errors
from tally.entrypoints.http.auth import SECURITY_SCHEMES, authorize, declaration
from tally.entrypoints.http.headers import SecurityHeaders
from tally.entrypoints.http.request_log import RequestLog
from tally.entrypoints.pages.app import create_pages
from tally.entrypoints.pages.web import Seller

# Every module of routes/ is a noun's routes: found there, in name order (the OpenAPI
# document's order), never listed here.
ROUTERS: tuple[APIRouter, ...] = tuple(
    module.router for module in submodules("tally.entrypoints.http.routes", "router")
)
DESCRIPTION = """Tally's API for auditors, finance and organizations, read-only but for one
route: `POST /v1/events`, where a producer key sends usage events over HTTP.

Every route but /v1/health, /openapi.json, /asyncapi.json (the streams' AsyncAPI) and
/.well-known/tally-seal-keys.json (the keys that sign month seals)
needs `Authorization: Bearer <API key>` (`tally apikey create`). Each operation's
`x-tally-scope` is the scope its key needs, and `x-tally-org` how it is bound to an
organization. Lists are keyset-paginated (`next`); `?format=csv` or `Accept: text/csv`
streams every matching row as CSV. Errors are JSON `{"code", "message"}`; an unexpected
one is `internal` with a `request_id` (every answer's `X-Request-Id`)."""


def create_app(engine: AsyncEngine | None = None, settings: Settings | None = None) -> FastAPI:
    """The app on ``engine``; without one, an engine as tally_reader from the settings,
    made at start-up (``uvicorn --factory``, one per worker)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            if engine is not None:
                app.state.engine = engine
                yield
                return
            app.state.engine = bootstrap.api_engine(settings, bootstrap.service_urls(settings))
            # What start-up loaded (modules, routes, schemas) leaves the collector's full
            # passes: they scanned it all, ~120 ms, in 1 request in 20 of the usage report.
            gc.freeze()
            try:
                yield
            finally:
                await app.state.engine.dispose()
        finally:
            if app.state.producer is not None:  # HTTP ingest's, made at its first event
                await app.state.producer.aclose()

    app = FastAPI(
        title="Tally",
        version="1",
        description=DESCRIPTION,
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        dependencies=[Depends(authorize)],
        # Starlette's slash redirects build an absolute URL from the Host header (a POST
        # would be re-sent, key and all, to whatever host the request named): none here.
        redirect_slashes=False,
    )
    for router in ROUTERS:
        keyed = False
        for route in router.routes:
            if isinstance(route, APIRoute):
                scope, _ = declaration(route)  # fails now for a route that declares no scope
                keyed = keyed or scope is not None
        app.include_router(router, responses=errors.KEYED_ERRORS if keyed else errors.PUBLIC_ERRORS)
    errors.install(app)
    seller = Seller(
        settings.seller_name,
        [line.strip() for line in settings.seller_address.split("|") if line.strip()],
        settings.seller_tax_id,
        settings.seller_email,
        settings.payment_days,
    )
    app.state.settings = settings
    app.state.producer = None
    app.state.event_budget = EventBudget(settings.ingest_events_per_s, settings.ingest_burst)
    app.state.limiter = FailureLimiter(
        settings.auth_failures_per_key,
        settings.auth_failures_per_address,
        settings.auth_failure_window_s,
    )
    pages = create_pages(lambda: app.state.engine, seller, settings.public_url, app.state.limiter)
    app.state.waiters = pages.state.waiters  # one per limiter: it wakes the tries of both
    app.mount("/ui", pages, name="ui")
    app.router.add_route("/asyncapi.json", _asyncapi, methods=["GET"], include_in_schema=False)
    for path in ("/", "/ui"):  # the server's root is its pages
        app.router.add_route(path, _to_pages, methods=["GET", "HEAD"], include_in_schema=False)
    app.add_middleware(RequestLog)
    app.add_middleware(LastResort, answer=errors.internal)  # it sees every failure
    app.add_middleware(SecurityHeaders)  # outside it: the last resort's answers get them too
    if proxies := [p.strip() for p in settings.trusted_proxies.split(",") if p.strip()]:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=proxies)
    app.openapi = _openapi(app)  # type: ignore[method-assign]
    tracing.configure("tally-api")
    if tracing.enabled():
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="metrics,v1/health")
    if engine is not None:
        app.state.engine = engine
    return app


async def _to_pages(request: Request) -> Response:
    """``/`` and ``/ui`` (outside the mount, which serves ``/ui/…``): a path, never a URL."""
    return RedirectResponse("/ui/", status_code=307)


async def _asyncapi(request: Request) -> Response:
    """The streams' AsyncAPI document, as committed in ``schemas/asyncapi.json``: public,
    like /openapi.json."""
    return Response(_asyncapi_json(), media_type="application/json")


@cache
def _asyncapi_json() -> bytes:
    from tally.adapters.asyncapi import asyncapi_document  # FastStream: on the first request

    return json.dumps(asyncapi_document()).encode()


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document, as committed in ``schemas/openapi.json``."""
    return create_app().openapi()


def _openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's document with the API key's security scheme."""
    original = app.openapi

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:  # FastAPI builds it once and keeps it
            original().setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
        assert app.openapi_schema is not None
        return app.openapi_schema

    return document
