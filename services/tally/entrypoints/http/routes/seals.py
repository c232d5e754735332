"""Month seals: Merkle roots over a period's entries, as `tally ledger verify` checks them."""

from __future__ import annotations

from fastapi import APIRouter, Response

from tally.adapters.postgres import seals
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.lists import PagingDep, answer, list_of
from tally.entrypoints.http.params import PeriodQuery

router = APIRouter(tags=["ledger"])


@router.get("/v1/seals", **scoped(Scope.ledger_read), responses=list_of(seals.SealRecord))
async def list_seals(caller: CallerDep, paging: PagingDep, period: PeriodQuery = None) -> Response:
    """Month seals by period and sequence (a period has none before its first close): root,
    entry count, the invoices that print it, time and lane heads (in CSV, a JSON array)."""
    return await answer(paging, seals.SealListing(period))
