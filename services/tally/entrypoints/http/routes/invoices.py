"""Invoices: the list (an org-bound key sees only its own), one invoice, and its lineage."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import invoices, lineage
from tally.domain.access import Scope
from tally.entrypoints.http.auth import Caller, CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError
from tally.entrypoints.http.lists import PagingDep, answer, list_of, shown
from tally.entrypoints.http.params import OrgQuery, PeriodQuery
from tally.entrypoints.inputs import Text

router = APIRouter(tags=["invoices"])
NUMBER = re.compile(r"INV-([0-9]{1,18})")


@router.get(
    "/v1/invoices",
    **scoped(Scope.invoices_read, OrgBinding.query),
    responses=list_of(invoices.InvoiceSummary),
)
async def list_invoices(
    caller: CallerDep,
    paging: PagingDep,
    org: OrgQuery = None,
    period: PeriodQuery = None,
    status: Annotated[Text | None, Query(description="e.g. finalized.")] = None,
) -> Response:
    """Invoices in number order."""
    return await answer(paging, invoices.invoice_listing(caller.narrow(org), period, status))


@router.get(
    "/v1/invoices/{number}",
    **scoped(Scope.invoices_read, OrgBinding.row),
    response_model=invoices.InvoiceDocument,
)
async def show_invoice(
    caller: CallerDep,
    request: Request,
    number: Annotated[Text, Path(description="e.g. INV-000042.")],
) -> JSONResponse:
    """One invoice: the fixed JSON of `tally invoice show --format json`."""
    _, invoice = await _visible(caller, request, number)
    return shown(invoice.document)


@router.get(
    "/v1/invoices/{number}/lineage",
    **scoped(Scope.invoices_read, OrgBinding.row),
    responses=list_of(lineage.LineageRow),
)
async def invoice_lineage(
    caller: CallerDep,
    request: Request,
    paging: PagingDep,
    number: Annotated[Text, Path(description="e.g. INV-000042.")],
) -> Response:
    """Each line (or prior-period adjustment) -> the entries it bills -> the events each
    carries, a row per (entry, event), in entry order (`tally invoice lineage`)."""
    serial, _ = await _visible(caller, request, number)
    return await answer(paging, lineage.lineage_listing(serial))


async def _visible(caller: Caller, request: Request, number: str) -> tuple[int, invoices.Invoice]:
    """The invoice numbered ``number`` (INV-000042) and its serial, if the caller may see
    it: else 404."""
    found = NUMBER.fullmatch(number)
    invoice = None
    if found is not None:
        async with raw_connection(request.app.state.engine) as conn:
            invoice = await invoices.invoice_numbered(conn, int(found[1]))
    if found is None or invoice is None or not caller.sees(invoice.document.org):
        raise ApiError(404, f"no invoice {number}")
    return int(found[1]), invoice
