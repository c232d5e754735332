"""The pages under ``/ui``: server-rendered HTML (Jinja2), htmx for filters, SVG charts.

Signed in with an API key: that opens a server-side session (migration 0015) whose random
id is all the HttpOnly, SameSite=Strict cookie holds; sign-out and revoking the key end it.
The key's scopes and organization apply exactly as on the HTTP API, and every page reads
through the same tally_reader engine, so a page can never write (but for opening and
revoking its session, through the two functions the database lets it call). The two
forms that POST (sign-in, sign-out) are accepted only from the server's own origin and
with the CSRF token of their cookie. Links and redirects are paths, never built from the
Host header. Mounted by the API's app at ``/ui``.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import asyncpg
import jinja2
from fastapi import FastAPI, Form, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from tally.adapters.postgres import alerts as alert_store
from tally.adapters.postgres import invoices as invoice_store
from tally.adapters.postgres import ledger_queries, listing, reads, usage_reports
from tally.adapters.postgres import organizations as organization_rows
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.metering_store import load_rate_cards
from tally.adapters.postgres.reads import lineage as lineage_reads
from tally.adapters.postgres.ui_sessions import open_session, revoke_session, session_key
from tally.domain import api_usage, bounds
from tally.domain.access import PRESETS, Scope, StoredKey, key_id_of
from tally.domain.estimate import EstimateInput, EstimateReport, estimate, report
from tally.domain.pagination import BadCursor
from tally.domain.period import is_period, period_bounds, period_of
from tally.domain.ratecard import RateCard
from tally.domain.sessions import csrf_matches, csrf_token, new_session_id
from tally.domain.throttle import FailureLimiter
from tally.entrypoints.failures import LastResort
from tally.entrypoints.http import throttling
from tally.entrypoints.http.auth import OrgBinding, declaration, scoped
from tally.entrypoints.inputs import Period, Text
from tally.entrypoints.pages import charts, documents, formatting

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
    pages.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    templates = Jinja2Templates(directory=HERE / "templates")

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
    )
    # A filter is called directly, a global through the context (~3 times slower): the API
    # usage report formats ~1,900 numbers a page.
    templates.env.filters["requests"] = formatting.requests
    templates.env.filters["line_title"] = formatting.line_title

    async def viewer_of(request: Request) -> Viewer | None:
        session = request.cookies.get(COOKIE)
        key = await session_key(engine_of(), session) if session else None
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
        return templates.TemplateResponse(
            request,
            name,
            {"viewer": viewer, "csrf": csrf_token(form_cookie) if form_cookie else "", **context},
            status_code=status,
        )

    def cookie(response: Response, request: Request, name: str, value: str, **kw: Any) -> None:
        """HttpOnly, SameSite=Strict, for /ui only, Secure when served over HTTPS."""
        secure = (public_url or str(request.url)).startswith("https://")
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
        if came_from and (theirs is None or theirs != own_origin(request, public_url)):
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

    @pages.get("/", name="home", **scoped(None))
    async def home(request: Request) -> Response:
        viewer = await signed_in(request)
        if viewer.org is not None:
            target = "dashboard" if viewer.can("usage:read") else "invoices"
            return RedirectResponse(path_for(request, "ui:" + target, org=viewer.org), 303)
        orgs = await organization_rows.list_all(engine_of())
        return page(request, "orgs.html", viewer, orgs=orgs, active="orgs", title="Organizations")

    @pages.get("/sign-in", name="sign_in", **scoped(None))
    async def sign_in_form(request: Request, next: str = "") -> HTMLResponse:
        target = local_target(request, next) or ""
        form_cookie = request.cookies.get(FORM_COOKIE)
        if form_cookie:
            return page(request, "signin.html", None, title="Sign in", next=target)
        form_cookie = new_session_id()
        response = page(
            request, "signin.html", None, form_cookie=form_cookie, title="Sign in", next=target
        )
        cookie(response, request, FORM_COOKIE, form_cookie)
        return response

    @pages.post("/sign-in", **scoped(None))
    async def sign_in(
        request: Request, key: str = Form(...), csrf: str = Form(""), next: str = Form("")
    ) -> Response:
        check_form(request, request.cookies.get(FORM_COOKIE), csrf)
        secret = key.strip()
        key_id = key_id_of(secret)
        reserved = await throttling.attempt(request, key_id)  # concurrent tries count
        if isinstance(reserved, int):
            throttled = page(
                request, "signin.html", None, 429, title="Sign in", next=next,
                error=f"Too many failed sign-ins: try again in {reserved} s.",
            )  # fmt: skip
            throttled.headers["Retry-After"] = str(reserved)
            return throttled
        session = new_session_id()
        try:
            until = await open_session(engine_of(), session, secret) if key_id else None
            if until is None:
                reserved.fail()
                return page(
                    request, "signin.html", None, 401, title="Sign in", next=next,
                    error="That key is unknown, expired or revoked.",
                )  # fmt: skip
        finally:
            reserved.release()
        request.state.key_id = key_id
        if previous := request.cookies.get(COOKIE):  # signing in again ends the last session
            await revoke_session(engine_of(), previous)
        target = local_target(request, next) or path_for(request, "ui:home")
        response = RedirectResponse(target, status_code=303)
        cookie(response, request, COOKIE, session, expires=until)
        response.delete_cookie(FORM_COOKIE, path=path_for(request, "ui:home"))
        return response

    @pages.post("/sign-out", name="sign_out", **scoped(None))
    async def sign_out(request: Request, csrf: str = Form("")) -> Response:
        session = request.cookies.get(COOKIE)
        check_form(request, session, csrf)
        assert session is not None  # check_form refuses a form without its cookie
        await revoke_session(engine_of(), session)
        response = RedirectResponse(path_for(request, "ui:sign_in"), status_code=303)
        response.delete_cookie(COOKIE, path=path_for(request, "ui:home"))
        # whatever a signed-in page left in the browser's storage (htmx keeps no history
        # cache: historyCacheSize 0 in base.html) goes with the session
        response.headers["Clear-Site-Data"] = '"storage"'
        return response

    # --- the estimator ------------------------------------------------------------------

    ai_fields = [
        ("copilot_users", "Agent Copilot users"),
        ("copilot_tokens_per_user", "Copilot tokens a user a month"),
        ("virtual_agent_sessions_per_day", "Virtual agent sessions a day"),
        ("scoring_interactions_per_day", "AI-scored interactions a day"),
        ("voice_bot_minutes_per_day", "Voice bot minutes a day"),
        ("translate_minutes_per_month", "AI Translate minutes a month"),
        ("digital_bot_sessions_per_month", "Digital bot sessions a month"),
        ("messages_per_month", "Messages a month"),
        ("social_posts_per_month", "Social posts a month"),
        ("other_tokens_per_month", "Other tokens a month"),
    ]
    api_fields = [
        ("interactions_per_day", "Interactions a day"),
        ("requests_per_interaction", "API requests per interaction"),
        ("other_requests_per_month", "Other API requests a month"),
        ("working_days", "Working days a month"),
        ("growth_percent", "Growth %"),
        ("buffer_percent", "Buffer %"),
    ]
    field_labels = dict(ai_fields + api_fields) | {"currency": "Currency"}
    seat_rows = 3

    async def card_now() -> RateCard:
        async with raw_connection(engine_of()) as conn:
            card = (await load_rate_cards(conn)).in_effect(datetime.now(UTC))
        if card is None:
            raise Refusal(503, "No rate card", "No rate card is in effect: run `tally migrate`.")
        return card

    def problems(exc: ValidationError, rows: list[int]) -> list[tuple[str, str]]:
        """Each problem as (the form field's id, a sentence naming it); ``rows``: the form's
        seat row of each seat given."""
        found = []
        for error in exc.errors():
            where = error["loc"]
            if where[:1] == ("seats",) and len(where) > 1 and isinstance(where[1], int):
                field, name = f"users{rows[where[1]]}", f"Users {rows[where[1]] + 1}"
            else:
                field = str(where[0]) if where else ""
                name = field_labels.get(field, field or "The estimate")
            found.append((field, f"{name}: {error['msg']}"))
        return found

    def seat_input(seat: str, users: str) -> dict[str, str]:
        """A form's seat row (``gc2:named`` and its users) as the estimate takes it."""
        lic, _, model = seat.partition(":")
        return {"license": lic, "model": model, "users": users}

    @pages.get("/estimate", name="estimate", **scoped(Scope.usage_read))
    async def estimate_page(request: Request) -> HTMLResponse:
        """Seats offer only the licence and model pairs the rate card allocates; a problem is
        said above the form and beside its field."""
        viewer = await signed_in(request)
        card = await card_now()
        query = request.query_params
        defaults = EstimateInput()
        values: dict[str, Any] = {
            name: query.get(name, str(getattr(defaults, name)))
            for name, _ in ai_fields + api_fields
        }
        values["currency"] = query.get("currency", defaults.currency)
        choices = [
            (f"{lic}:{model}", f"{lic} · {model}")
            for lic in sorted(card.api.allocation)
            for model in card.api.allocation[lic]
        ]
        chosen = list(zip(query.getlist("seat"), query.getlist("users"), strict=False))
        seats = [{"seat": seat, "users": users} for seat, users in chosen][:seat_rows]
        result: EstimateReport | None = None
        errors: list[tuple[str, str]] = []
        given_rows = [row for row, seat in enumerate(seats) if seat["seat"]]
        for row in given_rows:
            if seats[row]["seat"] not in dict(choices):
                errors.append(
                    (f"seat{row}", f"Seat {row + 1}: rate card {card.version} allocates no "
                     f"{seats[row]['seat'].replace(':', ' ')}")
                )  # fmt: skip
        if query and not errors:
            try:
                given = EstimateInput.model_validate(
                    {
                        **{k: v for k, v in values.items() if v != ""},
                        "seats": [seat_input(**seats[row]) for row in given_rows],
                    }
                )  # fmt: skip
                result = report(estimate(given, card))
            except ValidationError as exc:
                errors = problems(exc, given_rows)
            except (ValueError, InvalidOperation) as exc:
                errors = [("", str(exc))]
        return page(
            request, "estimate.html", viewer, active="estimate", title="Cost estimator",
            values=values, seats=seats, result=result, errors=errors,
            invalid={field for field, _ in errors}, ai_fields=ai_fields, api_fields=api_fields,
            choices=choices, seat_rows=seat_rows, currencies=sorted(card.currencies),
            card_version=card.version,
        )  # fmt: skip

    # --- invoices -------------------------------------------------------------------------

    @pages.get(
        "/orgs/{org}/invoices", name="invoices", **scoped(Scope.invoices_read, OrgBinding.path)
    )
    async def invoices_page(request: Request, org: Text) -> HTMLResponse:
        viewer = await signed_in(request)
        rows = await invoice_store.list_invoices(engine_of(), None, org)
        return page(
            request, "invoices.html", viewer, org=org, rows=rows, active="invoices",
            title=f"Invoices of {org}",
        )  # fmt: skip

    async def invoice_of(org: str, period: str) -> invoice_store.Invoice:
        found = (
            await invoice_store.invoice(engine_of(), org, period, billed=False)
            if is_period(period)
            else None
        )
        if found is None:
            raise Refusal(404, "No such invoice", f"{org} has no invoice for {period}.")
        return found

    def invoice_context(org: str, found: invoice_store.Invoice) -> dict[str, Any]:
        return {
            "org": org, "inv": found, "seller": seller, "active": "invoices",
            "due": documents.due_date(found.issued_at, seller.payment_days),
            "title": f"Invoice {found.document['number']}",
        }  # fmt: skip

    @pages.get(
        "/orgs/{org}/invoices/{period}.pdf",
        name="invoice_pdf",
        **scoped(Scope.invoices_read, OrgBinding.path),
    )
    async def invoice_pdf(request: Request, org: Text, period: str) -> Response:
        """The invoice document as PDF: the page's own HTML under its print stylesheet
        (declared before the page, whose ``{period}`` would match ``2026-11.pdf``)."""
        viewer = await signed_in(request)
        found = await invoice_of(org, period)
        html = page(request, "invoice.html", viewer, **invoice_context(org, found)).body
        try:
            pdf = await documents.pdf(bytes(html), HERE / "static")
        except documents.PdfUnavailable as exc:
            raise Refusal(503, "No PDF on this server", str(exc)) from exc
        name = f"{found.document['number']}-{org}-{period}.pdf"
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @pages.get(
        "/orgs/{org}/invoices/{period}",
        name="invoice",
        **scoped(Scope.invoices_read, OrgBinding.path),
    )
    async def invoice_page(request: Request, org: Text, period: str) -> HTMLResponse:
        viewer = await signed_in(request)
        found = await invoice_of(org, period)
        return page(request, "invoice.html", viewer, **invoice_context(org, found))

    @pages.get(
        "/orgs/{org}/invoices/{period}/lines/{meter}",
        name="invoice_line",
        **scoped(Scope.invoices_read, OrgBinding.path),
    )
    async def invoice_line_page(
        request: Request, org: Text, period: str, meter: Text
    ) -> HTMLResponse:
        """An invoice line's lineage, a page at a time: the entries it bills and the events
        they carry, each with its time; ``entry`` shows one entry's events."""
        viewer = await signed_in(request)
        found = await invoice_of(org, period)
        line = next((item for item in found.document["lines"] if item["meter"] == meter), None)
        if line is None:
            raise Refusal(404, "No such invoice line", f"{org} has no {meter} line for {period}.")
        query = request.query_params
        after, entry = query.get("after"), query.get("entry")
        number = int(found.document["number"].removeprefix("INV-"))
        async with read_snapshot(engine_of()) as conn:
            try:
                events = await lineage_reads.lineage(
                    conn, number, await reads.cursors(conn), after, PAGE_ROWS,
                    meter=meter, entry=int(entry) if entry else None,
                )  # fmt: skip
            except (BadCursor, ValueError) as exc:
                raise Refusal(400, "Not a page of this line", str(exc)) from exc
        assert events is not None  # the invoice exists (invoices are never deleted)
        here = path_for(request, "ui:invoice_line", org=org, period=period, meter=meter)
        kept = {"entry": entry} if entry else {}
        return page(
            request, "invoice_line.html", viewer, org=org, inv=found, line=line,
            entries=list(dict.fromkeys((r.entry_id, r.entry_kind) for r in events.items)),
            events=events.items, entry=entry, here=here, first_page=after is not None,
            next_page=events.next and f"{here}?" + urlencode({"after": events.next} | kept),
            active="invoices", title=f"{found.document['number']} · {formatting.label(meter)}",
        )  # fmt: skip

    # --- dead letters ---------------------------------------------------------------------

    def letter_filters(request: Request) -> dict[str, Any]:
        """The dead-letter list's filters from the query: code, source, organization,
        state and the received range (whole UTC days, both ends included)."""
        query = request.query_params
        try:
            first = date.fromisoformat(query["from"]) if query.get("from") else None
            last = date.fromisoformat(query["to"]) if query.get("to") else None
            state = query.get("state", "open")
            if state not in ("open", "replayed", "all"):
                raise ValueError(f"state is open, replayed or all, not {state!r}")
            return {
                "code": bounds.text(query["code"]) if query.get("code") else None,
                "source": bounds.text(query["source"]) if query.get("source") else None,
                "org": bounds.text(query["org"]) if query.get("org") else None,
                "state": state,
                "first": first,
                "last": last,
            }
        except ValueError as exc:
            raise Refusal(400, "Not a filter of dead letters", str(exc)) from exc

    @pages.get("/dead-letters", name="dead_letters", **scoped(Scope.dlq_read))
    async def dead_letters_page(request: Request) -> HTMLResponse:
        """A page of dead letters (keyset: ``after`` the last id shown), filtered, with the
        open and total count of each code."""
        viewer = await signed_in(request)
        chosen = letter_filters(request)
        after = request.query_params.get("after", "")
        if after and not after.isdigit():
            raise Refusal(400, "Not a page of dead letters", f"after is an id, not {after!r}")
        day = timedelta(days=1)
        found = await listing.fetch(
            engine_of(),
            ledger_queries.dead_letter_listing(
                chosen["code"], chosen["source"],
                datetime.combine(chosen["first"], time(), UTC) if chosen["first"] else None,
                org=chosen["org"], state=None if chosen["state"] == "all" else chosen["state"],
                before=datetime.combine(chosen["last"] + day, time(), UTC)
                if chosen["last"] else None,
            ),
            (int(after),) if after else None,
            PAGE_ROWS + 1,
        )  # fmt: skip
        rows = [row.values for row in found[:PAGE_ROWS]]
        kept = {
            k: str(v) for k, v in chosen.items() if v is not None and k not in ("first", "last")
        }
        kept |= {"from": str(chosen["first"])} if chosen["first"] else {}
        kept |= {"to": str(chosen["last"])} if chosen["last"] else {}
        here = path_for(request, "ui:dead_letters")
        return page(
            request, "dead_letters.html", viewer, rows=rows, chosen=chosen,
            codes=await ledger_queries.dead_letter_codes(engine_of()),
            filtered=any(chosen[k] for k in ("code", "source", "org", "first", "last")),
            here=here, kept=kept, after=after,
            next_page=f"{here}?" + urlencode(kept | {"after": rows[-1]["id"]})
            if len(found) > PAGE_ROWS else None,
            active="dead_letters", title="Dead letters",
        )  # fmt: skip

    @pages.get("/dead-letters/{letter_id}", name="dead_letter", **scoped(Scope.dlq_read))
    async def dead_letter_page(request: Request, letter_id: int) -> HTMLResponse:
        """One dead letter: why it was refused, its raw bytes, how to replay it and what
        happened to it (and to its event) since."""
        viewer = await signed_in(request)
        letter = await ledger_queries.dead_letter(engine_of(), letter_id)
        if letter is None:
            raise Refusal(404, "No such dead letter", f"There is no dead letter {letter_id}.")
        raw = base64.b64decode(letter["raw_base64"])
        return page(
            request, "dead_letter.html", viewer, letter=letter, size=len(raw),
            hex_lines=documents.hex_dump(raw), history=await ledger_queries.dead_letter_history(
                engine_of(), letter),
            active="dead_letters", title=f"Dead letter {letter_id}",
        )  # fmt: skip

    # --- the dashboard and the API usage report -------------------------------------------

    @pages.get("/orgs/{org}", name="dashboard", **scoped(Scope.usage_read, OrgBinding.path))
    async def dashboard(request: Request, org: Text, period: Period | None = None) -> HTMLResponse:
        """A period's usage: the one asked for, else the latest with usage (the current one
        when there is none), and the page says which."""
        viewer = await signed_in(request)
        now = datetime.now(UTC)
        current = period_of(now)
        async with read_snapshot(engine_of()) as conn:
            if not await organization_exists(conn, org):
                raise Refusal(404, "No such organization", f"There is no organization {org!r}.")
            latest = await usage_reports.latest_period_with_usage(conn, org, current)
            chosen = period or latest or current
            try:
                tracking = await usage_reports.allocation_tracking(conn, org, chosen, now)
            except LookupError as exc:  # a period no rate card covers
                raise Refusal(404, "No rate card", f"{exc}.") from exc
        alerts = await alert_store.list_alerts(engine_of(), org, chosen)
        ai, api = tracking.ai_tokens, tracking.api_requests
        start, end = period_bounds(chosen)
        week_columns, week_ticks = charts.columns([(w.name, w.used) for w in ai.weeks])
        why = (
            "the period asked for" if period
            else "the current period" if chosen == current and latest == current
            else "the latest period with usage" if latest
            else "the current period: no usage is recorded yet"
        )  # fmt: skip
        return page(
            request, "dashboard.html", viewer, org=org, period=chosen, why=why, current=current,
            ai=ai, api=api, as_of=ai.as_of, alerts=alerts, active="dashboard",
            title=f"{org} usage {chosen}",
            ai_trend=charts.trend(ai.days, (end - start).days, ai.allocation, ai.projected),
            api_trend=charts.trend(api.days, (end - start).days, api.allocation, api.projected),
            week_columns=week_columns, week_ticks=week_ticks,
        )  # fmt: skip

    presets = [
        (api_usage.Preset.previous_7_days, "Previous 7 days"),
        (api_usage.Preset.previous_30_days, "Previous 30 days"),
        (api_usage.Preset.this_month, "This month"),
        (api_usage.Preset.last_month, "Last month"),
        (api_usage.Preset.previous_3_months, "Previous 3 months"),
    ]

    def report_query(
        request: Request,
    ) -> tuple[api_usage.Preset, api_usage.DayRange, str | None, str | None]:
        query = request.query_params
        try:
            preset = api_usage.Preset(query.get("preset", api_usage.Preset.previous_30_days))
            first = bounds.day(date.fromisoformat(query["from"])) if query.get("from") else None
            last = bounds.day(date.fromisoformat(query["to"])) if query.get("to") else None
            days = api_usage.day_range(preset, datetime.now(UTC).date(), first, last)
            client = bounds.text(query["client"]) if query.get("client") else None
            url = bounds.text(query["url"]) if query.get("url") else None
        except ValueError as exc:
            raise Refusal(400, "Not a date range or filter", str(exc)) from exc
        if client and url:
            raise Refusal(
                400, "One filter at a time", "Filter by one OAuth client or one URL, not both."
            )
        return preset, days, client, url

    async def checked_org(conn: asyncpg.Connection, org: str) -> None:
        if not await organization_exists(conn, org):
            raise Refusal(404, "No such organization", f"There is no organization {org!r}.")

    @pages.get(
        "/orgs/{org}/api-usage", name="api_usage", **scoped(Scope.usage_read, OrgBinding.path)
    )
    async def api_usage_page(request: Request, org: Text) -> HTMLResponse:
        """The report with its daily chart; a chosen client or URL filters every section
        (its own list keeps every row, the chosen one highlighted)."""
        viewer = await signed_in(request)
        preset, days, client, url = report_query(request)
        async with read_snapshot(engine_of()) as conn:
            await checked_org(conn, org)
            view = await usage_reports.api_usage_view(conn, org, days, client, url)
        custom = f"&from={days.first}&to={days.last}" if preset is api_usage.Preset.custom else ""
        filters = urlencode({k: v for k, v in (("client", client), ("url", url)) if v})
        chosen = {"preset": preset.value, "client": client, "url": url}
        if custom:
            chosen |= {"from": str(days.first), "to": str(days.last)}
        csv_query = urlencode({k: v for k, v in chosen.items() if v})
        return page(
            request, "api_usage.html", viewer, org=org, report=view.whole, shown=view.selected,
            chart=charts.daily_statuses(view.days, list(api_usage.BUCKETS)),
            range=days, preset=preset.value, presets=[(p.value, label) for p, label in presets],
            range_query=custom, filter_query=("&" + filters) if filters else "",
            custom_from=days.first, custom_to=days.last, bucket_names=BUCKET_NAMES,
            top_urls_per_client=api_usage.TOP_URLS_PER_CLIENT,
            csv_url=path_for(request, "ui:api_usage_csv", org=org) + "?" + csv_query,
            # once, not per row: the template links every client and URL (url_for ~0.4 ms)
            report_url=path_for(request, "ui:api_usage", org=org),
            active="api_usage", title=f"API usage of {org}",
        )  # fmt: skip

    @pages.get(
        "/orgs/{org}/api-usage.csv",
        name="api_usage_csv",
        **scoped(Scope.usage_read, OrgBinding.path),
    )
    async def api_usage_csv(request: Request, org: Text, section: str = "all") -> Response:
        """The API's CSV of the report (exact figures, the API's cross-filter)."""
        await signed_in(request)
        _, days, client, url = report_query(request)
        async with read_snapshot(engine_of()) as conn:
            await checked_org(conn, org)
            result = await usage_reports.api_usage_report(conn, org, days, client, url)
        try:
            sections = list(api_usage.SECTIONS) if section == "all" else [section]
            text = api_usage.to_csv(result, sections)
        except ValueError as exc:
            raise Refusal(400, "No such section", str(exc)) from exc
        name = f"api-usage-{org}-{days.first}-{days.last}.csv"
        return Response(
            text,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    return pages
