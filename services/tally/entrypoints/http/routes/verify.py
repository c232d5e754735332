"""`tally ledger verify` over the API: what the ledger promises, re-derived, as JSON."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from tally.adapters.postgres.verification import verify
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.inputs import Period
from tally.entrypoints.plain import plain, verification_summary

router = APIRouter(tags=["ledger"])


@router.get("/v1/verify", **scoped(Scope.ledger_read))
async def verify_ledger(
    caller: CallerDep,
    request: Request,
    period: Annotated[
        Period | None,
        Query(
            description="Recompute only this period's month seals; every other check covers "
            "the whole ledger.",
        ),
    ] = None,
) -> dict[str, Any]:
    """The whole ledger's checks; `ok` is false when there is any finding."""
    result = await verify(request.app.state.engine, period)
    summary: dict[str, Any] = plain(verification_summary(result))
    return summary
