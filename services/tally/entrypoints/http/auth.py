"""API keys on every request: a route declares its scope (and how it is bound to an
organization) in its OpenAPI operation, and ``authorize`` enforces that same declaration.

``Authorization: Bearer tally_…``. 401: no key, not a Tally key, unknown, expired or
revoked. 403: the key lacks the route's scope, or names another organization than its own
(an org-bound key gets the same 403 whether that organization exists or not). 429 (with
``Retry-After``): too many failed authentications of that key id or from that address
(``throttling``), whatever the key sent now.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.api_keys import find_key
from tally.domain.access import Scope, key_id_of
from tally.domain.rating import SourceGrant
from tally.entrypoints.http import throttling
from tally.entrypoints.http.errors import ApiError

SCOPE = "x-tally-scope"  # the scope a key needs, or PUBLIC
PUBLIC = "public"  # no key needed
SCHEME = "apiKey"  # the OpenAPI security scheme: Authorization: Bearer tally_…
SECURITY_SCHEMES = {
    SCHEME: {"type": "http", "scheme": "bearer", "description": "`tally apikey create`"}
}
ORG = "x-tally-org"  # how the route names an organization (an ``OrgBinding``), if it does


class OrgBinding(StrEnum):
    query = "query"  # ?org=: another org is 403; absent, an org-bound key sees its own
    path = "path"  # {org} in the path: another org is 403
    row = "row"  # the row's org: another org's row answers 404, like a missing one


def scoped(scope: Scope | None, org: OrgBinding | None = None) -> dict[str, Any]:
    """The route's declaration, for ``@router.get(path, **scoped(...))``."""
    extra: dict[str, Any] = {SCOPE: PUBLIC if scope is None else scope.value}
    if scope is not None:
        extra["security"] = [{SCHEME: []}]
    if org is not None:
        extra[ORG] = org.value
    return {"openapi_extra": extra}


@dataclass(frozen=True)
class Caller:
    key_id: str | None  # None on a public route
    org: str | None  # the one organization an org-bound key may read
    source: str | None = None  # the one source a producer key sends events as
    grant: SourceGrant | None = None  # what that source may bill now (None: removed)

    def sees(self, org: str) -> bool:
        return self.org is None or self.org == org

    def narrow(self, org: str | None) -> str | None:
        """The organization a list is filtered to: the asked one, or the key's own."""
        return org or self.org


def declaration(route: APIRoute) -> tuple[Scope | None, OrgBinding | None]:
    """The route's scope and org binding; a route without a declaration is a bug."""
    extra = route.openapi_extra or {}
    if SCOPE not in extra:
        raise RuntimeError(f"route {route.path} declares no {SCOPE}: use auth.scoped(...)")
    scope, org = extra[SCOPE], extra.get(ORG)
    return (None if scope == PUBLIC else Scope(scope)), (None if org is None else OrgBinding(org))


def _secret(request: Request) -> str:
    header = request.headers.get("authorization")
    if header is None:
        raise ApiError(401, "an API key is required: Authorization: Bearer tally_…")
    kind, _, secret = header.partition(" ")
    if kind.lower() != "bearer" or not secret.strip():
        raise ApiError(401, "the Authorization header must be 'Bearer <API key>'")
    return secret.strip()


async def authorize(request: Request) -> Caller:
    scope, binding = declaration(request.scope["route"])
    if scope is None:
        return Caller(None, None)
    secret = _secret(request)
    key_id = key_id_of(secret)
    reserved = await throttling.attempt(request, key_id)  # concurrent tries count
    if isinstance(reserved, int):
        raise ApiError(
            429,
            f"too many failed authentications: retry in {reserved} s",
            headers={"Retry-After": str(reserved)},
        )
    try:
        engine: AsyncEngine = request.app.state.engine
        key = await find_key(engine, key_id) if key_id else None
        if key is None or not key.admits(secret, datetime.now(UTC)):
            reserved.fail()
            raise ApiError(401, "unknown, expired or revoked API key")
    finally:
        reserved.release()  # a success (or an error of our own) does not count
    request.state.key_id = key.id
    if scope not in key.scopes:
        raise ApiError(403, f"this key lacks the scope {scope}")
    if key.org is not None and binding in (OrgBinding.query, OrgBinding.path):
        params = request.query_params if binding is OrgBinding.query else request.path_params
        asked = params.get("org")
        if asked is not None and asked != key.org:
            raise ApiError(403, "this key reads only its own organization")
    return Caller(key.id, key.org, key.source, key.grant)


CallerDep = Annotated[Caller, Depends(authorize)]
