"""The API usage report: the daily chart, the sections, the cross-filter, the CSV."""

from __future__ import annotations

from datetime import UTC, date, datetime
from urllib.parse import urlencode

import asyncpg
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from tally.adapters.postgres.reads import usage_reports
from tally.domain import api_usage, bounds
from tally.domain.access import Scope
from tally.entrypoints.http.auth import OrgBinding, scoped
from tally.entrypoints.inputs import Text
from tally.entrypoints.pages import charts
from tally.entrypoints.pages.web import (
    BUCKET_NAMES,
    NavLink,
    Refusal,
    engine,
    organization_exists,
    page,
    path_for,
    read_snapshot,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("API usage", "api_usage", 2),)


presets = [
    (api_usage.Preset.previous_7_days, "Previous 7 days"),
    (api_usage.Preset.previous_30_days, "Previous 30 days"),
    (api_usage.Preset.this_month, "This month"),
    (api_usage.Preset.last_month, "Last month"),
    (api_usage.Preset.previous_3_months, "Previous 3 months"),
]


def report_query(
    request: Request,
) -> tuple[api_usage.Preset, api_usage.DayRange, str | None, str | None]:
    query = request.query_params
    try:
        preset = api_usage.Preset(query.get("preset", api_usage.Preset.previous_30_days))
        first = bounds.day(date.fromisoformat(query["from"])) if query.get("from") else None
        last = bounds.day(date.fromisoformat(query["to"])) if query.get("to") else None
        days = api_usage.day_range(preset, datetime.now(UTC).date(), first, last)
        client = bounds.text(query["client"]) if query.get("client") else None
        url = bounds.text(query["url"]) if query.get("url") else None
    except ValueError as exc:
        raise Refusal(400, "Not a date range or filter", str(exc)) from exc
    if client and url:
        raise Refusal(
            400, "One filter at a time", "Filter by one OAuth client or one URL, not both."
        )
    return preset, days, client, url


async def checked_org(conn: asyncpg.Connection, org: str) -> None:
    if not await organization_exists(conn, org):
        raise Refusal(404, "No such organization", f"There is no organization {org!r}.")


@router.get("/orgs/{org}/api-usage", name="api_usage", **scoped(Scope.usage_read, OrgBinding.path))
async def api_usage_page(request: Request, org: Text) -> HTMLResponse:
    """The report with its daily chart; a chosen client or URL filters every section
    (its own list keeps every row, the chosen one highlighted)."""
    viewer = await signed_in(request)
    preset, days, client, url = report_query(request)
    async with read_snapshot(engine(request)) as conn:
        await checked_org(conn, org)
        view = await usage_reports.api_usage_view(conn, org, days, client, url)
    custom = f"&from={days.first}&to={days.last}" if preset is api_usage.Preset.custom else ""
    filters = urlencode({k: v for k, v in (("client", client), ("url", url)) if v})
    chosen = {"preset": preset.value, "client": client, "url": url}
    if custom:
        chosen |= {"from": str(days.first), "to": str(days.last)}
    csv_query = urlencode({k: v for k, v in chosen.items() if v})
    return page(
        request, "api_usage.html", viewer, org=org, report=view.whole, shown=view.selected,
        chart=charts.daily_statuses(view.days, list(api_usage.BUCKETS)),
        range=days, preset=preset.value, presets=[(p.value, label) for p, label in presets],
        range_query=custom, filter_query=("&" + filters) if filters else "",
        custom_from=days.first, custom_to=days.last, bucket_names=BUCKET_NAMES,
        top_urls_per_client=api_usage.TOP_URLS_PER_CLIENT,
        csv_url=path_for(request, "ui:api_usage_csv", org=org) + "?" + csv_query,
        # once, not per row: the template links every client and URL (url_for ~0.4 ms)
        report_url=path_for(request, "ui:api_usage", org=org),
        active="api_usage", title=f"API usage of {org}",
    )  # fmt: skip


@router.get(
    "/orgs/{org}/api-usage.csv",
    name="api_usage_csv",
    **scoped(Scope.usage_read, OrgBinding.path),
)
async def api_usage_csv(request: Request, org: Text, section: str = "all") -> Response:
    """The API's CSV of the report (exact figures, the API's cross-filter)."""
    await signed_in(request)
    _, days, client, url = report_query(request)
    async with read_snapshot(engine(request)) as conn:
        await checked_org(conn, org)
        result = await usage_reports.api_usage_report(conn, org, days, client, url)
    try:
        sections = list(api_usage.SECTIONS) if section == "all" else [section]
        text = api_usage.to_csv(result, sections)
    except ValueError as exc:
        raise Refusal(400, "No such section", str(exc)) from exc
    name = f"api-usage-{org}-{days.first}-{days.last}.csv"
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
