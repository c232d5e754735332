"""Smoke run of ``tally bench pages`` as a subprocess with a few thousand events (no timing
is asserted: figures come from real runs). The fill itself checks that every entry balances
and that this month's ledger usage equals its daily rollups (what the dashboard shows)."""

from __future__ import annotations

from support.cli import tally
from tally.config import Settings


async def test_the_pages_benchmark_times_every_page_on_a_filled_organization(
    settings: Settings,
) -> None:
    made = await tally(settings, "bench", "pages", "--events", "5000", "--samples", "2", "--json")
    assert made.code == 0, made
    figures = made.json()
    assert figures["events"] == 5000 and figures["samples"] == 2
    assert figures["api_rollup_rows"] > 0 and figures["ai_rollup_rows"] > 0
    assert figures["entries"] > 0 and figures["lines"] > figures["entries"]
    assert figures["invoices"] >= 1  # the months before this one are closed
    pages = {row["page"]: row for row in figures["pages"]}
    for page in (
        "dashboard",
        "api-usage previous-7-days",
        "api-usage previous-30-days",
        "api-usage this-month",
        "api-usage last-month",
        "api-usage previous-3-months",
        "api-usage client filter",
        "api-usage URL filter",
        "api-usage.csv",
        "invoices",
        "estimator",
    ):
        assert pages[page]["status"] == 200, page
        assert 0 < pages[page]["p50_ms"] <= pages[page]["p99_ms"], page


async def test_too_few_events_are_refused(settings: Settings) -> None:
    made = await tally(settings, "bench", "pages", "--events", "10")
    assert made.code != 0
    assert "1000" in made.stderr
