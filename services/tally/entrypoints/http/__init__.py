"""The read-only HTTP API (``tally serve``): FastAPI on uvicorn, connected as tally_reader.

Layout: ``app`` (the factory, request log, engine), ``auth`` (API keys and the scope
declarations), ``errors`` (JSON errors with stable codes), ``lists`` (keyset pages and
streamed CSV), ``params`` (shared query parameters), ``routes/`` (one module per noun).

Adding a route takes a few lines. In ``routes/<noun>.py`` (a new module is found by
``app.ROUTERS``: it only needs its ``router``)::

    router = APIRouter(tags=["accounts"])

    @router.get("/v1/accounts", **scoped(Scope.ledger_read), responses=list_of(AccountRow))
    async def list_accounts(
        caller: CallerDep, paging: PagingDep, org: OrgQuery = None
    ) -> Response:
        filters = AccountFilter(org=caller.narrow(org))
        return await answer(paging, accounts.account_listing(filters))

``scoped(scope, org)`` writes the declaration into the OpenAPI operation
(``x-tally-scope``, ``x-tally-org``) and ``auth.authorize`` (run for every route) enforces
exactly that; a route without it fails every request and the authorization matrix test.
For a list, the read side's module of the noun (adapters/postgres/reads/) gives a
``Listing`` (typed rows, SQL ordered by a key) and ``answer`` gives its JSON pages and its
streamed CSV; the pages and the CLI read the same ``Listing``.
An export or a CSV-capable report takes ``FormattingDep`` and answers ``stream_rows``.
A parameter takes a checked type of ``tally.entrypoints.inputs`` (``Text``, ``Id``,
``Period``, ``Instant``, ``Day``), never a bare ``str`` or ``int``: the hostile-input property
test sends every parameter NUL, huge numbers and the calendar's ends. Raise
``ApiError(404, ...)`` for a missing row; a list declares ``responses=list_of(Row)``, a
route that answers one read's model declares ``response_model=Model`` and returns
``shown(found)`` (decimals as exact strings, instants in ISO 8601). Then run
``tally schemas export`` to refresh ``schemas/openapi.json``.
"""
