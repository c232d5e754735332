"""What every page shares: who is signed in (a server-side session of an API key), the
checks a page's declaration implies, the forms' CSRF and origin checks, rendering a
template, and the paths links and redirects use (never built from the Host header).

The pages app keeps what these need on its state (``create_pages``): the engine, the
templates, the seller, the public URL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.ui_sessions import session_key
from tally.domain.access import PRESETS, StoredKey
from tally.domain.sessions import csrf_matches, csrf_token
from tally.entrypoints.http.auth import OrgBinding, declaration

COOKIE = "tally_session"  # the session's id (the database keeps its SHA-256)
FORM_COOKIE = "tally_form"  # before sign-in: the sign-in form's CSRF cookie
PAGE_ROWS = 50  # rows of a paged list (dead letters, an invoice line's events)
HERE = Path(__file__).parent


@dataclass(frozen=True)
class Viewer:
    """Who is signed in: the key's id, role, scopes and (for org_viewer) organization."""

    key_id: str
    role: str
    scopes: frozenset[str]
    org: str | None

    def can(self, scope: str) -> bool:
        return scope in self.scopes

    def sees(self, org: str) -> bool:
        return self.org is None or self.org == org


@dataclass(frozen=True)
class NavLink:
    """A page in the main navigation: a page module lists its own in ``NAV``, so a new page
    is linked from its module, not from the layout."""

    label: str
    page: str  # the page's route name
    place: int  # left to right
    every_org: bool = False  # only for keys that read every organization


@dataclass(frozen=True)
class NavEntry:
    """A navigation link as the layout draws it: shown to a viewer holding ``scope``; a
    page of one organization (``org``) only while an organization is in view."""

    label: str
    page: str
    scope: str | None
    org: bool
    every_org: bool


def navigation(routers: Sequence[tuple[APIRouter, Sequence[NavLink]]]) -> list[NavEntry]:
    """Every page's navigation link, in place order, with its page's declared scope."""
    entries = []
    for router, links in routers:
        routes = {route.name: route for route in router.routes if isinstance(route, APIRoute)}
        for link in links:
            route = routes[link.page]  # a link names a page of its own module
            scope, _ = declaration(route)
            entries.append(
                (
                    link.place,
                    NavEntry(
                        link.label,
                        link.page,
                        None if scope is None else scope.value,
                        "{org}" in route.path,
                        link.every_org,
                    ),
                )
            )
    return [entry for _, entry in sorted(entries, key=lambda pair: pair[0])]


BUCKET_NAMES = {
    "200": "succeeded",
    "300": "redirected",
    "400": "bad request",
    "429": "rate limited",
    "500": "server error",
}


def viewer_of_key(key: StoredKey) -> Viewer:
    """The signed-in key as the pages show it: its role is the preset it matches."""
    role = next(
        (
            name.value
            for name, preset in PRESETS.items()
            if preset.scopes == key.scopes and preset.one_org == (key.org is not None)
        ),
        "key",
    )
    return Viewer(key.id, role, frozenset(scope.value for scope in key.scopes), key.org)


@asynccontextmanager
async def read_snapshot(engine: AsyncEngine) -> AsyncIterator[asyncpg.Connection]:
    """One consistent, read-only snapshot for a page's several queries."""
    async with (
        raw_connection(engine) as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        yield conn


async def organization_exists(conn: asyncpg.Connection, org: str) -> bool:
    return bool(await conn.fetchval("SELECT 1 FROM organization WHERE name = $1", org))


class Refusal(Exception):
    """A page the viewer may not see (or that does not exist): rendered as a message."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status, self.title, self.message = status, title, message


@dataclass(frozen=True)
class Seller:
    """The seller's details printed on invoice documents (TALLY_SELLER_*)."""

    name: str
    address: list[str]
    tax_id: str = ""
    email: str = ""
    payment_days: int = 30  # the due date: this many days after the invoice is issued


DEFAULT_PORTS = {"http": 80, "https": 443}


def own_origin(request: Request, public_url: str | None) -> str | None:
    """The origin the pages are served from: the configured one, else the request's."""
    return origin_of(public_url or str(request.url))


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]``, lower case, without the scheme's default port
    (``https://Host:443`` is ``https://host``); None for anything else (``null``)."""
    try:
        parts = urlsplit(url.strip())
        host, port = parts.hostname, parts.port
    except ValueError:  # a bracket left open, a port that is no number or out of range
        return None
    scheme = parts.scheme.lower()
    if not scheme or not host:
        return None
    if ":" in host:  # IPv6
        host = f"[{host}]"
    return (
        f"{scheme}://{host}"
        if port in (None, DEFAULT_PORTS.get(scheme))
        else (f"{scheme}://{host}:{port}")
    )


def path_for(request: Request, name: str, **params: Any) -> str:
    """A route's path (never a URL built from the Host header)."""
    return request.url_for(name, **params).path


def local_target(request: Request, target: str) -> str | None:
    """``target`` if it is one of the pages' own paths (a sign-in's ``next``), else None:
    never another host (``//evil``, ``/\\evil``) nor anything outside ``/ui/``."""
    home = path_for(request, "ui:home")
    if not target.startswith(home) or "\\" in target or "//" in target or "://" in target:
        return None
    return target


def engine(request: Request) -> AsyncEngine:
    """The tally_reader engine, as the app has it at request time."""
    made: AsyncEngine = request.app.state.engine_of()
    return made


async def viewer_of(request: Request) -> Viewer | None:
    session = request.cookies.get(COOKIE)
    key = await session_key(engine(request), session) if session else None
    if key is None:
        return None
    request.state.key_id = key.id  # the request log names the key, never a secret
    return viewer_of_key(key)


def page(
    request: Request,
    name: str,
    viewer: Viewer | None,
    status: int = 200,
    form_cookie: str | None = None,
    **context: Any,
) -> HTMLResponse:
    """The template; its forms carry the CSRF token of the session's cookie (signed in)
    or of the sign-in form's own."""
    context.setdefault("title", "Tally")
    form_cookie = form_cookie or request.cookies.get(COOKIE if viewer else FORM_COOKIE)
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(
        request,
        name,
        {"viewer": viewer, "csrf": csrf_token(form_cookie) if form_cookie else "", **context},
        status_code=status,
    )


def cookie(response: Response, request: Request, name: str, value: str, **kw: Any) -> None:
    """HttpOnly, SameSite=Strict, for /ui only, Secure when served over HTTPS."""
    secure = (request.app.state.public_url or str(request.url)).startswith("https://")
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=secure,
        path=path_for(request, "ui:home"), **kw,
    )  # fmt: skip


def check_form(request: Request, form_cookie: str | None, token: str) -> None:
    """A POST from this server's own pages: its Origin (or, without one, its Referer)
    is ours, and it carries the CSRF token of its cookie."""
    origin, referer = request.headers.get("origin"), request.headers.get("referer")
    came_from = origin or referer  # compared as origins: default ports dropped
    theirs = origin_of(came_from) if came_from else None
    if came_from and (
        theirs is None or theirs != own_origin(request, request.app.state.public_url)
    ):
        raise Refusal(403, "Refused", "This form was not sent from Tally's own pages.")
    if not csrf_matches(form_cookie, token):
        raise Refusal(403, "Refused", "This form has expired: open the page again.")


async def signed_in(request: Request) -> Viewer:
    """The viewer, if the route's declaration (``auth.scoped``, as for the API's routes)
    lets it in: signed in, holding the route's scope, and seeing its ``{org}``."""
    viewer = await viewer_of(request)
    if viewer is None:
        raise Refusal(401, "Please sign in", "Your key is missing, expired or revoked.")
    scope, binding = declaration(request.scope["route"])
    if scope is not None and not viewer.can(scope):
        raise Refusal(
            403,
            "Not for this key",
            f"This key's role ({viewer.role}) does not include {scope.value}.",
        )
    org = request.path_params.get("org")
    if binding is OrgBinding.path and org is not None and not viewer.sees(org):
        raise Refusal(403, "Not for this key", "This key reads only its own organization.")
    return viewer
