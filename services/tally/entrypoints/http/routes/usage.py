"""What admins and finance look at: the API usage report, allocation tracking
(the fair-use policy, the AI token pricing) and the cost estimator (the data-action
question, the AI token pricing), all under ``usage:read``."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads import usage_reports
from tally.adapters.postgres.reads.rate_cards import load_rate_cards
from tally.domain import api_usage
from tally.domain.access import Scope
from tally.domain.estimate import EstimateInput, EstimateReport, Seats, estimate, report
from tally.domain.period import period_of
from tally.entrypoints.http.auth import CallerDep, OrgBinding, scoped
from tally.entrypoints.http.errors import ApiError, documented
from tally.entrypoints.http.lists import json_or_csv, shown
from tally.entrypoints.http.params import PeriodQuery
from tally.entrypoints.inputs import Day, Text
from tally.entrypoints.plain import plain

router = APIRouter(tags=["usage"])
OrgPath = Annotated[Text, Path(description="Organization.")]
BAD_REQUEST = documented(400)  # what the route itself refuses: invalid_request, with why


async def _known(conn: Any, org: str) -> None:
    if not await conn.fetchval("SELECT 1 FROM organization WHERE name = $1", org):
        raise ApiError(404, f"no organization {org!r}")


@router.get(
    "/v1/orgs/{org}/reports/api-usage",
    **scoped(Scope.usage_read, OrgBinding.path),
    responses={**json_or_csv(), **BAD_REQUEST},
    response_model=None,
)
async def api_usage_report(
    caller: CallerDep,
    request: Request,
    org: OrgPath,
    preset: api_usage.Preset = api_usage.Preset.previous_30_days,
    first: Annotated[Day | None, Query(alias="from", description="custom: first day")] = None,
    last: Annotated[Day | None, Query(alias="to", description="custom: last day")] = None,
    client: Annotated[Text | None, Query(description="Cross-filter: one OAuth client.")] = None,
    url: Annotated[Text | None, Query(description='Cross-filter: one URL, "GET /x".')] = None,
    section: Annotated[
        Text | None,
        Query(description="One section (default: every one): " + ", ".join(api_usage.SECTIONS)),
    ] = None,
    format: Annotated[str | None, Query(pattern="^(json|csv)$")] = None,
) -> Response | dict[str, Any]:
    """Billable requests over whole UTC days (never today), by client, URL and status."""
    try:
        days = api_usage.day_range(preset, datetime.now(UTC).date(), first, last)
        sections = [section] if section else list(api_usage.SECTIONS)
        if section and section not in api_usage.SECTIONS:
            raise ValueError(f"unknown section {section!r}: one of {', '.join(api_usage.SECTIONS)}")
        if client is not None and url is not None:  # an empty one filters too
            raise ValueError("filter by one OAuth client or one URL at a time, not both")
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    async with raw_connection(request.app.state.engine) as conn:
        await _known(conn, org)
        result = await usage_reports.api_usage_report(conn, org, days, client, url)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return Response(api_usage.to_csv(result, sections), media_type="text/csv")
    body: dict[str, Any] = plain(
        {
            "org": org,
            "from": days.first,
            "to": days.last,
            "days": days.days,
            "client": client,
            "url": url,
            "sections": {name: api_usage.section_rows(result, name) for name in sections},
        }
    )
    return body


@router.get(
    "/v1/orgs/{org}/usage",
    **scoped(Scope.usage_read, OrgBinding.path),
    response_model=usage_reports.TrackingDocument,
)
async def allocation_tracking(
    caller: CallerDep, request: Request, org: OrgPath, period: PeriodQuery = None
) -> JSONResponse:
    """Both meters in a period (default: this one): allocation so far, used, remaining, by
    feature, weeks, projection and health."""
    now = datetime.now(UTC)
    async with raw_connection(request.app.state.engine) as conn:
        await _known(conn, org)
        try:
            tracking = await usage_reports.allocation_tracking(
                conn, org, period or period_of(now), now
            )
        except LookupError as exc:
            raise ApiError(404, str(exc)) from exc
    return shown(tracking.document())


@router.get(
    "/v1/estimate",
    **scoped(Scope.usage_read),
    responses=BAD_REQUEST,
    response_model=EstimateReport,
)
async def cost_estimate(
    caller: CallerDep,
    request: Request,
    seats: Annotated[
        list[Text] | None, Query(description="LICENSE:MODEL:USERS, repeatable, e.g. gc2:named:200")
    ] = None,
) -> JSONResponse:
    """A month of AI tokens and API requests against the allocation, with the overage and its
    cost, priced by the rate card in effect (every `tally estimate` option as a query
    parameter named like the estimate's fields, e.g. `copilot_users`, `working_days`)."""
    fields = {k: v for k, v in request.query_params.items() if k != "seats"}
    try:
        parsed = []
        for text in seats or ():
            license, model, users = text.split(":")
            parsed.append(
                Seats.model_validate({"license": license, "model": model, "users": Decimal(users)})
            )
        given = EstimateInput.model_validate({**fields, "seats": parsed})
    except (ValueError, ValidationError, InvalidOperation) as exc:
        raise ApiError(400, f"not an estimate: {exc}") from exc
    async with raw_connection(request.app.state.engine) as conn:
        card = (await load_rate_cards(conn)).in_effect(datetime.now(UTC))
    if card is None:
        raise ApiError(404, "no rate card is in effect")
    try:
        result = report(estimate(given, card))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from exc
    return JSONResponse(result.model_dump(mode="json"))
