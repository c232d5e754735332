"""``tally report api-usage``: the API usage report, read from the rollups."""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import AsyncEngine

from tally.adapters.postgres.connection import raw_connection
from tally.adapters.postgres.reads.usage_reports import (
    api_usage_report,
)
from tally.domain.api_usage import (
    SECTIONS,
    DayRange,
    Preset,
    Report,
    day_range,
    section_rows,
    to_csv,
)
from tally.entrypoints.cli.context import with_engine
from tally.entrypoints.cli.rendering import (
    Format,
    console,
    fail,
    print_rows,
)

report_app = typer.Typer(help="Reports read from the rollups.", no_args_is_help=True)


class ReportFormat(StrEnum):
    table = "table"
    json = "json"
    csv = "csv"


def _day(value: str | None) -> date | None:
    try:
        return None if value is None else date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a day YYYY-MM-DD") from exc


@report_app.command("api-usage")
def api_usage(
    org: Annotated[str, typer.Option(help="Organization.")],
    preset: Annotated[Preset, typer.Option(help="Date range (UTC days, never today).")] = (
        Preset.previous_7_days
    ),
    first: Annotated[
        str | None, typer.Option("--from", help="custom: first day YYYY-MM-DD.")
    ] = None,
    last: Annotated[str | None, typer.Option("--to", help="custom: last day YYYY-MM-DD.")] = None,
    client: Annotated[str | None, typer.Option(help="Cross-filter: one OAuth client.")] = None,
    url: Annotated[
        str | None, typer.Option(help='Cross-filter: one URL, e.g. "GET /api/v2/users".')
    ] = None,
    section: Annotated[str, typer.Option(help=f"all, or one of: {', '.join(SECTIONS)}.")] = "all",
    fmt: Annotated[
        ReportFormat, typer.Option("--format", "-f", help="table, json or csv.")
    ] = ReportFormat.table,
) -> None:
    """The API usage report: most active clients and URLs, status buckets, per
    client and per URL, billable requests only, over whole UTC days before today."""
    if section != "all" and section not in SECTIONS:
        raise fail(f"unknown section {section!r}: all, or one of {', '.join(SECTIONS)}")
    if client is not None and url is not None:
        raise fail("filter by one OAuth client or one URL at a time, not both")
    today = datetime.now(UTC).date()
    try:
        days = day_range(preset, today, _day(first), _day(last))
    except ValueError as exc:
        raise fail(str(exc)) from exc

    async def read(engine: AsyncEngine) -> Report:
        async with raw_connection(engine) as conn:
            return await api_usage_report(conn, org, days, client, url)

    result = with_engine(read)
    sections = list(SECTIONS) if section == "all" else [section]
    if fmt is ReportFormat.csv:
        typer.echo(to_csv(result, sections), nl=False)
    elif fmt is ReportFormat.json:
        print_rows(_document(org, preset, days, result, sections), Format.json)
    else:
        console.print(
            f"API usage of {org}, {days.first} to {days.last} (UTC, {days.days} days)"
            + (f", filtered by client {client}" if client else "")
            + (f", filtered by URL {url}" if url else "")
        )
        for name in sections:
            print_rows(section_rows(result, name), Format.table, name)


def _document(
    org: str, preset: Preset, days: DayRange, result: Report, sections: list[str]
) -> dict[str, Any]:
    return {
        "org": org,
        "preset": preset.value,
        "from": days.first,
        "to": days.last,
        "filter": {"client": result.filter_client, "url": result.filter_url},
        "sections": {name: section_rows(result, name) for name in sections},
    }


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")
