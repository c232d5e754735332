"""An organization's invoices, the invoice document (HTML, print, PDF) and each line's
lineage."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tally.adapters.postgres import reads
from tally.adapters.postgres.reads import invoices as invoice_store
from tally.adapters.postgres.reads import lineage as lineage_reads
from tally.domain.access import Scope
from tally.domain.pagination import BadCursor
from tally.domain.period import is_period
from tally.entrypoints.http.auth import OrgBinding, scoped
from tally.entrypoints.inputs import Text
from tally.entrypoints.pages import documents, formatting
from tally.entrypoints.pages.web import (
    HERE,
    PAGE_ROWS,
    NavLink,
    Refusal,
    Seller,
    engine,
    page,
    path_for,
    read_snapshot,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("Invoices", "invoices", 3),)


@router.get("/orgs/{org}/invoices", name="invoices", **scoped(Scope.invoices_read, OrgBinding.path))
async def invoices_page(request: Request, org: Text) -> HTMLResponse:
    viewer = await signed_in(request)
    async with read_snapshot(engine(request)) as conn:
        rows = [row async for row in invoice_store.invoice_listing(org).iter_rows(conn)]
    return page(
        request, "invoices.html", viewer, org=org, rows=rows, active="invoices",
        title=f"Invoices of {org}",
    )  # fmt: skip


async def invoice_of(request: Request, org: str, period: str) -> invoice_store.Invoice:
    found = None
    if is_period(period):
        async with read_snapshot(engine(request)) as conn:
            found = await invoice_store.invoice(conn, org, period, billed=False)
    if found is None:
        raise Refusal(404, "No such invoice", f"{org} has no invoice for {period}.")
    return found


def invoice_context(seller: Seller, org: str, found: invoice_store.Invoice) -> dict[str, Any]:
    return {
        "org": org, "inv": found, "seller": seller, "active": "invoices",
        "due": documents.due_date(found.issued_at, seller.payment_days),
        "title": f"Invoice {found.document.number}",
    }  # fmt: skip


@router.get(
    "/orgs/{org}/invoices/{period}.pdf",
    name="invoice_pdf",
    **scoped(Scope.invoices_read, OrgBinding.path),
)
async def invoice_pdf(request: Request, org: Text, period: str) -> Response:
    """The invoice document as PDF: the page's own HTML under its print stylesheet
    (declared before the page, whose ``{period}`` would match ``2026-11.pdf``)."""
    viewer = await signed_in(request)
    found = await invoice_of(request, org, period)
    html = page(
        request, "invoice.html", viewer, **invoice_context(request.app.state.seller, org, found)
    ).body
    try:
        pdf = await documents.pdf(bytes(html), HERE / "static")
    except documents.PdfUnavailable as exc:
        raise Refusal(503, "No PDF on this server", str(exc)) from exc
    name = f"{found.document.number}-{org}-{period}.pdf"
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get(
    "/orgs/{org}/invoices/{period}",
    name="invoice",
    **scoped(Scope.invoices_read, OrgBinding.path),
)
async def invoice_page(request: Request, org: Text, period: str) -> HTMLResponse:
    viewer = await signed_in(request)
    found = await invoice_of(request, org, period)
    return page(
        request, "invoice.html", viewer, **invoice_context(request.app.state.seller, org, found)
    )


@router.get(
    "/orgs/{org}/invoices/{period}/lines/{meter}",
    name="invoice_line",
    **scoped(Scope.invoices_read, OrgBinding.path),
)
async def invoice_line_page(request: Request, org: Text, period: str, meter: Text) -> HTMLResponse:
    """An invoice line's lineage, a page at a time: the entries it bills and the events
    they carry, each with its time; ``entry`` shows one entry's events."""
    viewer = await signed_in(request)
    found = await invoice_of(request, org, period)
    line = next((item for item in found.document.lines if item.meter == meter), None)
    if line is None:
        raise Refusal(404, "No such invoice line", f"{org} has no {meter} line for {period}.")
    query = request.query_params
    after, entry = query.get("after"), query.get("entry")
    number = int(found.document.number.removeprefix("INV-"))
    async with read_snapshot(engine(request)) as conn:
        try:
            listing = lineage_reads.lineage_listing(number, meter, int(entry) if entry else None)
            events = await listing.page(conn, await reads.cursors(conn), after, PAGE_ROWS)
        except (BadCursor, ValueError) as exc:
            raise Refusal(400, "Not a page of this line", str(exc)) from exc
    here = path_for(request, "ui:invoice_line", org=org, period=period, meter=meter)
    kept = {"entry": entry} if entry else {}
    return page(
        request, "invoice_line.html", viewer, org=org, inv=found, line=line,
        entries=list(dict.fromkeys((r.entry_id, r.entry_kind) for r in events.items)),
        events=events.items, entry=entry, here=here, first_page=after is not None,
        next_page=events.next and f"{here}?" + urlencode({"after": events.next} | kept),
        active="invoices", title=f"{found.document.number} · {formatting.label(meter)}",
    )  # fmt: skip
