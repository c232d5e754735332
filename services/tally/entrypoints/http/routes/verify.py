"""`tally ledger verify` over the API: what the ledger promises, re-derived, as JSON."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from tally.adapters.postgres.verification import verify
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.plain import plain, verification_summary

router = APIRouter(tags=["ledger"])


@router.get("/v1/verify", **scoped(Scope.ledger_read))
async def verify_ledger(caller: CallerDep, request: Request) -> dict[str, Any]:
    """The whole ledger's checks; `ok` is false when there is any finding."""
    result = await verify(request.app.state.engine)
    summary: dict[str, Any] = plain(verification_summary(result))
    return summary
