"""Invoices: the list (an org-bound key sees only its own) and one invoice."""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from tally.adapters.postgres import invoices
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.http.lists import LIST_RESPONSES, PagingDep, answer
from tally.entrypoints.http.params import OrgQuery, PeriodQuery
from tally.entrypoints.plain import plain

router = APIRouter(tags=["invoices"])
NUMBER = re.compile(r"INV-([0-9]{1,18})")


@router.get(
    "/v1/invoices", **scoped(Scope.invoices_read, OrgBinding.query), responses=LIST_RESPONSES
)
async def list_invoices(
    caller: CallerDep,
    paging: PagingDep,
    org: OrgQuery = None,
    period: PeriodQuery = None,
    status: Annotated[str | None, Query(description="e.g. finalized.")] = None,
) -> Response:
    """Invoices in number order."""
    return await answer(paging, invoices.invoice_listing(caller.narrow(org), period, status))


@router.get("/v1/invoices/{number}", **scoped(Scope.invoices_read, OrgBinding.row))
async def show_invoice(
    caller: CallerDep,
    request: Request,
    number: Annotated[str, Path(description="e.g. INV-000042.")],
) -> dict[str, Any]:
    """One invoice: the fixed JSON of `tally invoice show --format json`."""
    found = NUMBER.fullmatch(number)
    invoice = (
        await invoices.invoice_numbered(request.app.state.engine, int(found[1])) if found else None
    )
    if invoice is None or not caller.sees(invoice.document["org"]):
        raise ApiError(404, f"no invoice {number}")
    document: dict[str, Any] = plain(invoice.document)
    return document
