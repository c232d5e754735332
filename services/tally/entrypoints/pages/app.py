"""The pages under ``/ui``: server-rendered HTML (Jinja2), htmx for filters, SVG charts.

Signed in with an API key: that opens a server-side session (migration 0015) whose random
id is all the HttpOnly, SameSite=Strict cookie holds; sign-out and revoking the key end it.
Each page declares its scope and organization binding as the API's routes do
(``auth.scoped``), and every page reads through the same tally_reader engine, so a page can
never write (but for opening and revoking its session, through the two functions the
database lets it call). The two forms that POST (sign-in, sign-out) are accepted only from
the server's own origin and with the CSRF token of their cookie. Links and redirects are
paths, never built from the Host header. One module per noun (session, estimate, invoices,
dead_letters, dashboard, api_usage), each with its ``router``, found by ``ROUTERS``; ``web``
is what they share. Mounted by the API's app at ``/ui``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from tally.domain.throttle import FailureLimiter
from tally.entrypoints.discovery import submodules
from tally.entrypoints.failures import LastResort
from tally.entrypoints.http import throttling
from tally.entrypoints.pages import charts, formatting
from tally.entrypoints.pages.web import (
    HERE,
    Refusal,
    Seller,
    navigation,
    page,
    path_for,
    viewer_of,
)

# Every page, by noun: each module of this package with a ``router`` (found, in name order,
# never listed here), and its ``NAV`` links in the layout's navigation; the matrix and
# property tests read the pages from here, as the API's tests read its routers.
PAGES = submodules("tally.entrypoints.pages", "router")
ROUTERS: tuple[APIRouter, ...] = tuple(module.router for module in PAGES)
NAVIGATION = navigation([(module.router, getattr(module, "NAV", ())) for module in PAGES])


def create_pages(
    engine_of: Callable[[], AsyncEngine],
    seller: Seller,
    public_url: str | None,
    limiter: FailureLimiter,
) -> FastAPI:
    """The pages app; ``engine_of`` gives the (tally_reader) engine at request time;
    ``public_url`` is TALLY_PUBLIC_URL; ``limiter`` counts failed sign-ins with the API's
    failed keys."""
    # no slash redirects: Starlette builds them from the Host header (see the API's app)
    pages = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, redirect_slashes=False)
    pages.state.limiter = limiter
    pages.state.waiters = throttling.Waiters(limiter)
    pages.state.engine_of = engine_of
    pages.state.seller = seller
    pages.state.public_url = public_url
    pages.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")
    pages.state.templates = templates

    @jinja2.pass_context
    def url_for(context: dict[str, Any], name: str, /, **params: Any) -> str:
        return path_for(context["request"], name, **params)

    templates.env.globals.update(
        url_for=url_for,
        money=formatting.money,
        price=formatting.price,
        qty=formatting.qty,
        requests=formatting.requests,
        tokens=formatting.tokens,
        units=formatting.units,
        when=formatting.when,
        label=formatting.label,
        ident=formatting.identifier,
        digest=formatting.hash_text,
        pct=formatting.pct,
        short=formatting.short,
        share=formatting.share,
        ring=charts.ring_dash,
        nav=NAVIGATION,
    )
    # A filter is called directly, a global through the context (~3 times slower): the API
    # usage report formats ~1,900 numbers a page.
    templates.env.filters["requests"] = formatting.requests
    templates.env.filters["line_title"] = formatting.line_title

    @pages.exception_handler(Refusal)
    async def refused(request: Request, exc: Refusal) -> Response:
        if exc.status == 401:  # back here after signing in (home is where it goes anyway)
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            sign_in = path_for(request, "ui:sign_in")
            if target != path_for(request, "ui:home"):
                sign_in += "?" + urlencode({"next": target})
            return RedirectResponse(sign_in, status_code=303)
        return page(
            request,
            "message.html",
            await viewer_of(request),
            exc.status,
            title=exc.title,
            message=exc.message,
        )

    def failed(request: Request, request_id: str) -> Response:
        return page(
            request, "message.html", None, 500, title="Something went wrong",
            message=f"This page failed unexpectedly: the server's log names it request "
            f"{request_id}.",
        )  # fmt: skip

    pages.add_middleware(LastResort, answer=failed)

    @pages.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in exc.errors())
        return page(
            request, "message.html", await viewer_of(request), 422,
            title="Not a valid request", message=problems,
        )  # fmt: skip

    @pages.exception_handler(StarletteHTTPException)
    async def no_page(request: Request, exc: StarletteHTTPException) -> Response:
        return page(
            request, "message.html", await viewer_of(request), exc.status_code,
            title="No such page" if exc.status_code == 404 else "Not here",
            message=f"{request.method} {request.url.path}: {exc.detail}.",
        )  # fmt: skip

    for router in ROUTERS:
        pages.include_router(router)
    return pages
