"""Journal entries (``tally ledger entries``), one entry whole (``tally ledger entry``) and
its Merkle inclusion proof in its month's seal (``tally ledger prove``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from tally.adapters.postgres import seals
from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import entries
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.http.lists import PagingDep, answer, list_of, shown
from tally.entrypoints.http.params import InstantQuery, OrgQuery, PeriodQuery
from tally.entrypoints.inputs import Id, Text

router = APIRouter(tags=["ledger"])


@router.get(
    "/v1/entries",
    **scoped(Scope.ledger_read, OrgBinding.query),
    responses=list_of(entries.EntrySummary),
)
async def list_entries(
    caller: CallerDep,
    paging: PagingDep,
    org: OrgQuery = None,
    period: PeriodQuery = None,
    kind: Annotated[Text | None, Query(description="usage, grant, expiry, overage, ...")] = None,
    account: Annotated[Text | None, Query(description="Only entries with a line on it.")] = None,
    posted_from: InstantQuery = None,
    posted_to: Annotated[InstantQuery, Query(description="Posted before (RFC 3339).")] = None,
) -> Response:
    """Journal entries in id order (oldest first); `posted_from` is inclusive."""
    filters = entries.EntryFilter(
        org=caller.narrow(org),
        period=period,
        kind=kind,
        account=account,
        posted_from=posted_from,
        posted_to=posted_to,
    )
    return await answer(paging, entries.entry_listing(filters))


@router.get(
    "/v1/entries/{entry_id}", **scoped(Scope.ledger_read), response_model=entries.EntryDetail
)
async def show_entry(
    caller: CallerDep,
    request: Request,
    entry_id: Id,
    raw: Annotated[bool, Query(description="Include each event's raw bytes.")] = False,
) -> JSONResponse:
    """One entry: its lines, the events it carries (SHA-256 of their raw bytes; the raw
    event with `raw=true`) and its position in the hash chain."""
    async with raw_connection(request.app.state.engine) as conn:
        found = await entries.entry(conn, entry_id, raw)
    if found is None:
        raise ApiError(404, f"no entry {entry_id}")
    return shown(found)


@router.get(
    "/v1/entries/{entry_id}/proof", **scoped(Scope.ledger_read), response_model=seals.EntryProof
)
async def prove_entry(caller: CallerDep, request: Request, entry_id: Id) -> JSONResponse:
    """The entry's Merkle inclusion proof in the seal that covers it (check it with the
    script of the docs' page "The month seal"); 404 `not_sealed` while no seal covers it
    yet."""
    try:
        proof = await seals.prove_entry(request.app.state.engine, entry_id)
    except seals.NotSealed as exc:
        raise ApiError(404, str(exc), "not_sealed") from exc
    if proof is None:
        raise ApiError(404, f"no entry {entry_id}")
    return shown(proof)
