"""The pages' home, and signing in and out (a session of an API key; the forms only from
the server's own pages, with their CSRF token)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from tally.adapters.postgres.reads import organizations as organization_reads
from tally.adapters.postgres.ui_sessions import open_session, revoke_session
from tally.domain.access import Scope, key_id_of
from tally.domain.sessions import new_session_id
from tally.entrypoints.http import throttling
from tally.entrypoints.http.auth import scoped
from tally.entrypoints.pages.web import (
    COOKIE,
    FORM_COOKIE,
    NavLink,
    check_form,
    cookie,
    engine,
    local_target,
    page,
    path_for,
    read_snapshot,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("Organizations", "home", 6, every_org=True),)


@router.get("/", name="home", **scoped(None))
async def home(request: Request) -> Response:
    viewer = await signed_in(request)
    if viewer.org is not None:
        target = "dashboard" if viewer.can(Scope.usage_read) else "invoices"
        return RedirectResponse(path_for(request, "ui:" + target, org=viewer.org), 303)
    async with read_snapshot(engine(request)) as conn:
        orgs = await organization_reads.organizations(conn)
    return page(request, "orgs.html", viewer, orgs=orgs, active="home", title="Organizations")


@router.get("/sign-in", name="sign_in", **scoped(None))
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


@router.post("/sign-in", **scoped(None))
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
        until = await open_session(engine(request), session, secret) if key_id else None
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
        await revoke_session(engine(request), previous)
    target = local_target(request, next) or path_for(request, "ui:home")
    response = RedirectResponse(target, status_code=303)
    cookie(response, request, COOKIE, session, expires=until)
    response.delete_cookie(FORM_COOKIE, path=path_for(request, "ui:home"))
    return response


@router.post("/sign-out", name="sign_out", **scoped(None))
async def sign_out(request: Request, csrf: str = Form("")) -> Response:
    session = request.cookies.get(COOKIE)
    check_form(request, session, csrf)
    assert session is not None  # check_form refuses a form without its cookie
    await revoke_session(engine(request), session)
    response = RedirectResponse(path_for(request, "ui:sign_in"), status_code=303)
    response.delete_cookie(COOKIE, path=path_for(request, "ui:home"))
    # whatever a signed-in page left in the browser's storage (htmx keeps no history
    # cache: historyCacheSize 0 in base.html) goes with the session
    response.headers["Clear-Site-Data"] = '"storage"'
    return response
