"""Accounts (``tally ledger accounts``) and one account's balance as of any instant with the
movements that make it (``tally ledger balance``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import accounts, balances
from tally.domain.access import Scope
from tally.domain.pagination import BadCursor
from tally.entrypoints.http.auth import CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError, documented
from tally.entrypoints.http.lists import (
    CURSOR_ERROR,
    PagingDep,
    answer,
    invalid_cursor,
    list_of,
    shown,
)
from tally.entrypoints.http.params import InstantQuery, PeriodQuery
from tally.entrypoints.inputs import Text

router = APIRouter(tags=["ledger"])


@router.get(
    "/v1/accounts",
    **scoped(Scope.ledger_read, OrgBinding.query),
    responses=list_of(accounts.AccountRow),
)
async def list_accounts(
    caller: CallerDep,
    paging: PagingDep,
    org: Annotated[Text | None, Query(description="Owner: an organization or `platform`.")] = None,
    period: PeriodQuery = None,
    unit: Annotated[Text | None, Query(description="api_request, ai_token or a currency.")] = None,
    kind: Annotated[Text | None, Query(description="allowance, usage, receivable, ...")] = None,
) -> Response:
    """Accounts in code order with their debits, credits and balance (debits positive)."""
    filters = accounts.AccountFilter(org=caller.narrow(org), period=period, unit=unit, kind=kind)
    return await answer(paging, accounts.account_listing(filters))


@router.get(
    "/v1/accounts/{code:path}/balance",
    **scoped(Scope.ledger_read),
    responses={**CURSOR_ERROR, **documented(406)},
    response_model=balances.Balance,
)
async def account_balance(
    caller: CallerDep,
    paging: PagingDep,
    code: Annotated[
        Text, Path(description="Account code, e.g. org/acme/2026-10/api_request/usage.")
    ],
    as_of: InstantQuery = None,
) -> JSONResponse:
    """The balance as of `as_of` (default: now; by posting time) and its movements, newest
    first, as a page (`movements.items`, `movements.next`: pass it as `cursor`). JSON only."""
    if paging.csv:
        raise ApiError(406, "a balance answers JSON only; its movements page by `cursor`")
    try:
        async with raw_connection(paging.engine) as conn:
            found = await balances.balance(
                conn, code, paging.cursors, as_of, paging.cursor, paging.limit
            )
    except BadCursor as exc:
        raise invalid_cursor(exc) from exc
    if found is None:
        raise ApiError(404, f"no account {code!r}")
    return shown(found)
