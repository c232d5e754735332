"""A period's trial balance (``tally ledger trial-balance``): JSON with the totals per unit,
or CSV of its account rows."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import trial_balance
from tally.domain.access import Scope
from tally.entrypoints.http.auth import CallerDep, scoped
from tally.entrypoints.http.lists import FormattingDep, cells, json_or_csv, stream_rows
from tally.entrypoints.http.params import RequiredPeriod
from tally.entrypoints.inputs import Text

router = APIRouter(tags=["ledger"])
RESPONSES = json_or_csv(
    '`{"period", "unit", "rows": [...], "totals": [...], "balanced"}`, or CSV of the rows'
)


@router.get("/v1/trial-balance", **scoped(Scope.ledger_read), responses=RESPONSES)
async def show_trial_balance(
    caller: CallerDep,
    answer: FormattingDep,
    period: RequiredPeriod,
    unit: Annotated[Text | None, Query(description="Only this unit.")] = None,
) -> Response:
    """Per account: opening balance, the period's debits and credits, closing balance; per
    unit the totals, where debits equal credits (`balanced`)."""
    async with raw_connection(answer.engine) as conn:  # a row per account: few, whatever the lines
        if not answer.csv:  # PostgreSQL writes the document
            document = await trial_balance.trial_balance_json(conn, period, unit)
            return Response(document, media_type="application/json")
        found = await trial_balance.trial_balance(conn, period, unit)
    fields = [field.name for field in dataclasses.fields(trial_balance.TrialBalanceRow)]

    async def rows() -> AsyncIterator[list[Any]]:
        for row in found.rows:
            yield cells(getattr(row, name) for name in fields)

    return stream_rows(answer.stream_format, fields, rows())
