"""An organization's usage for a period: allocation tracking for both meters."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tally.adapters.postgres.reads import alerts as alert_reads
from tally.adapters.postgres.reads import usage_reports
from tally.domain.access import Scope
from tally.domain.period import period_bounds, period_of
from tally.entrypoints.http.auth import OrgBinding, scoped
from tally.entrypoints.inputs import Period, Text
from tally.entrypoints.pages import charts
from tally.entrypoints.pages.web import (
    NavLink,
    Refusal,
    engine,
    organization_exists,
    page,
    read_snapshot,
    signed_in,
)

router = APIRouter()
NAV = (NavLink("Dashboard", "dashboard", 1),)


@router.get("/orgs/{org}", name="dashboard", **scoped(Scope.usage_read, OrgBinding.path))
async def dashboard(request: Request, org: Text, period: Period | None = None) -> HTMLResponse:
    """A period's usage: the one asked for, else the latest with usage (the current one
    when there is none), and the page says which."""
    viewer = await signed_in(request)
    now = datetime.now(UTC)
    current = period_of(now)
    async with read_snapshot(engine(request)) as conn:
        if not await organization_exists(conn, org):
            raise Refusal(404, "No such organization", f"There is no organization {org!r}.")
        latest = await usage_reports.latest_period_with_usage(conn, org, current)
        chosen = period or latest or current
        try:
            tracking = await usage_reports.allocation_tracking(conn, org, chosen, now)
        except LookupError as exc:  # a period no rate card covers
            raise Refusal(404, "No rate card", f"{exc}.") from exc
        alerts = await alert_reads.alerts(conn, org, chosen)
    ai, api = tracking.ai_tokens, tracking.api_requests
    start, end = period_bounds(chosen)
    week_columns, week_ticks = charts.columns([(w.name, w.used) for w in ai.weeks])
    why = (
        "the period asked for" if period
        else "the current period" if chosen == current and latest == current
        else "the latest period with usage" if latest
        else "the current period: no usage is recorded yet"
    )  # fmt: skip
    return page(
        request, "dashboard.html", viewer, org=org, period=chosen, why=why, current=current,
        ai=ai, api=api, as_of=ai.as_of, alerts=alerts, active="dashboard",
        title=f"{org} usage {chosen}",
        ai_trend=charts.trend(ai.days, (end - start).days, ai.allocation, ai.projected),
        api_trend=charts.trend(api.days, (end - start).days, api.allocation, api.projected),
        week_columns=week_columns, week_ticks=week_ticks,
    )  # fmt: skip
