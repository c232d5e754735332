"""A period's month seals: Merkle roots over its entries, as `tally ledger verify` checks them."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tally.adapters.postgres.seals import period_seals
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.params import RequiredPeriod
from tally.entrypoints.plain import plain

router = APIRouter(tags=["ledger"])


@router.get("/v1/seals", **scoped(Scope.ledger_read))
async def list_seals(caller: CallerDep, request: Request, period: RequiredPeriod) -> dict[str, Any]:
    """The period's seals, first to last (`seals` is empty before its first close): root,
    entry count, lane heads and time of each; few per period, so not paginated."""
    found = await period_seals(request.app.state.engine, period)
    return {"period": period, "seals": [plain(seal.model_dump()) for seal in found]}
