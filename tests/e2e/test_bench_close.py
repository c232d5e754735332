"""Smoke run of ``tally bench close`` as a subprocess (no timing is asserted: figures come
from real runs). The CLI helper of ``test_cli`` gives it this test's servers."""

from __future__ import annotations

from decimal import Decimal

from support.cli import tally
from tally.config import Settings
from tally_tools.bench_close import CLOSE_CURRENCIES


async def test_the_close_benchmark_invoices_every_organization(settings: Settings) -> None:
    figures = (await tally(settings, "bench", "close", "--orgs", "30", "--json", "--verify")).json()
    assert figures["organizations"] == 30
    assert figures["invoices_issued"] == 30 and figures["invoices"] == 30
    assert figures["events"] > 30 * 3  # a license, API and AI report per organization at least
    assert figures["close_seconds"] > 0 and figures["invoices_per_second"] > 0
    assert figures["close_cpu_seconds"] > 0 and figures["peak_rss_mb"] > 0
    assert figures["verified_entries"] > 30 * 3  # ledger verify ran after the close: clean
    totals = {currency: Decimal(total) for currency, total in figures["totals"].items()}
    assert set(totals) == set(CLOSE_CURRENCIES)
    assert all(total > 0 for total in totals.values())  # some organizations went over
