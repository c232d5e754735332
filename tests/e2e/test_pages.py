"""The pages in a real browser (headless Chromium): sign in with a key, the dashboard, the API
usage report's presets, cross-filter and CSV download (equal to the API's CSV), the
estimator, an invoice and its line's lineage, the dead letters; screenshots in
``TALLY_TEST_SCREENSHOTS`` (default /tmp/tally-screenshots) for a person to look at."""

from __future__ import annotations

import asyncio
import csv
import io
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import console_errors, screenshot
from support.cli import tally
from support.close_support import close, license_day, meter
from support.ledger_support import ai, api
from tally import bootstrap
from tally.config import Settings
from tally.domain.period import period_of, previous_period
from tally.service_layer import organizations

NOW = datetime.now(UTC)
THIS, LAST = period_of(NOW), previous_period(NOW)


def day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def fill_ledger(settings: Settings) -> None:
    """Two organizations; API requests of two clients over the last weeks (and today, which
    no report shows), AI usage, licence reports; last month closed and invoiced."""
    engine = bootstrap.engine(bootstrap.service_urls(settings).database)
    service = bootstrap.metering_service(engine, settings)
    try:
        for org, currency in (("acme", "USD"), ("globex", "EUR")):
            await organizations.add(bootstrap.database(engine), org, currency)
        last_month = (NOW.replace(day=1) - timedelta(days=10)).strftime("%Y-%m-%d")
        events = [
            license_day("l1", "gc2", "named", 3, org="acme", day=last_month),
            license_day("l2", "gc2", "named", 3, org="acme", day=day(0)[:10]).replace(
                b"T23:00:00Z", day(0)[10:].encode()
            ),
            api("old", count=400_000, org="acme", time=f"{last_month}T10:00:00Z"),
            ai(
                "t-old", "virtual_agent", 400, "session", org="acme", time=f"{last_month}T10:00:00Z"
            ),
        ]
        for n, (ago, status, count) in enumerate(
            [(1, 200, 90), (2, 429, 7), (3, 500, 3), (5, 200, 40), (12, 200, 60), (0, 200, 999)]
        ):
            events.append(api(f"a{n}", count=count, status=status, org="acme", time=day(ago)))
        events.append(
            api("b1", count=25, org="acme", time=day(2), source="wfm")
            .replace(b'"c-42"', b'"wfm-sync"')
            .replace(b"/api/v2/users/{userId}", b"/api/v2/analytics/queries")
        )
        events.append(ai("t1", "agent_copilot", 120, "token", org="acme", time=day(0)))
        await meter(service, events)
        await close(engine, LAST)
    finally:
        await engine.dispose()


async def key(settings: Settings, *args: str) -> str:
    made = await tally(settings, "apikey", "create", *args)
    assert made.code == 0, made
    return made.stdout.strip().splitlines()[-1]


def sign_in(browser: webdriver.Chrome, base: str, secret: str) -> None:
    browser.get(f"{base}/ui/sign-in")
    browser.delete_all_cookies()  # signed out, then the form again: its own CSRF cookie
    browser.get(f"{base}/ui/sign-in")
    browser.find_element(By.ID, "key").send_keys(secret)
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()


def wait_for(browser: webdriver.Chrome, css: str, text: str = "") -> None:
    condition = (
        ready.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)
        if text
        else ready.presence_of_element_located((By.CSS_SELECTOR, css))
    )
    WebDriverWait(browser, 20).until(condition)


def downloaded(folder: Path) -> str:
    for _ in range(200):
        done = list(folder.glob("*.csv"))
        if done:
            return done[0].read_text(encoding="utf-8")
        time.sleep(0.1)
    raise AssertionError("no CSV was downloaded")


async def test_pages_in_a_browser(
    settings: Settings, served: tuple[str, asyncio.subprocess.Process], browser: webdriver.Chrome
) -> None:
    base, _ = served
    await fill_ledger(settings)
    finance = await key(settings, "--role", "finance", "--name", "finance")
    viewer = await key(settings, "--role", "org_viewer", "--org", "globex")

    browser.get(f"{base}/ui/")  # not signed in: to the sign-in form
    assert browser.current_url.endswith("/ui/sign-in")
    browser.find_element(By.ID, "key").send_keys("tally_000000000000_" + "x" * 43)
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()
    wait_for(browser, ".error", "unknown, expired or revoked")
    screenshot(browser, "sign_in")

    sign_in(browser, base, finance)
    wait_for(browser, "h1", "Organizations")
    screenshot(browser, "organizations")

    browser.find_element(By.LINK_TEXT, "Dashboard").click()  # acme: first in the list
    wait_for(browser, "h1", f"acme · usage {THIS}")
    gauges = browser.find_elements(By.CSS_SELECTOR, ".gauge")
    assert len(gauges) == 2 and "Allocation" in gauges[0].text
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.used")
    assert (
        "agent copilot"
        in browser.find_element(By.ID, "features-h").find_element(By.XPATH, "..").text
    )
    screenshot(browser, "dashboard")

    browser.find_element(By.LINK_TEXT, "API usage").click()
    wait_for(browser, "#report", "OAuth clients")
    assert browser.find_element(By.CSS_SELECTOR, '.presets a[aria-current="true"]').text == (
        "Previous 30 days"
    )
    assert "225 requests" in browser.find_element(By.ID, "report").text  # never today's 999
    browser.find_element(By.LINK_TEXT, "Previous 7 days").click()  # htmx swaps the report
    wait_for(browser, "#report", "165 requests")
    assert "preset=previous-7-days" in browser.current_url
    current = browser.find_element(By.CSS_SELECTOR, '.presets a[aria-current="true"]')
    assert current.text == "Previous 7 days"  # the presets swapped with the report
    screenshot(browser, "api_usage")
    browser.find_element(By.LINK_TEXT, "wfm-sync").click()  # cross-filter by one client
    wait_for(browser, "#report", "filtered by client wfm-sync")
    assert (
        "Share of wfm-sync"
        in browser.find_element(By.ID, "urls-h").find_element(By.XPATH, "..").text
    )
    screenshot(browser, "api_usage_filtered")
    browser.find_element(By.LINK_TEXT, "Export CSV").click()
    from_page = downloaded(browser.downloads)  # type: ignore[attr-defined]
    async with httpx.AsyncClient(base_url=base) as client:
        from_api = await client.get(
            "/v1/orgs/acme/reports/api-usage",
            params={"preset": "previous-7-days", "client": "wfm-sync", "format": "csv"},
            headers={"Authorization": f"Bearer {finance}"},
        )
    assert from_api.status_code == 200
    assert list(csv.reader(io.StringIO(from_page))) == list(csv.reader(io.StringIO(from_api.text)))

    browser.find_element(By.LINK_TEXT, "Estimator").click()
    wait_for(browser, "h1", "Cost estimator")
    for field, value in (
        ("users0", "200"), ("copilot_users", "200"), ("copilot_tokens_per_user", "55"),
        ("virtual_agent_sessions_per_day", "200"), ("scoring_interactions_per_day", "500"),
        ("voice_bot_minutes_per_day", "250"), ("translate_minutes_per_month", "300"),
        ("messages_per_month", "5000"),
    ):  # fmt: skip
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.XPATH, "//select[@id='license0']/option[text()='gc2']").click()
    browser.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait_for(browser, "#result", "19,809.617648")
    assert "50,000" in browser.find_element(By.ID, "result").text
    screenshot(browser, "estimator")

    browser.get(f"{base}/ui/orgs/acme/invoices")
    browser.find_element(By.PARTIAL_LINK_TEXT, "INV-").click()
    wait_for(browser, "#inv-title", "Invoice INV-")
    document = browser.find_element(By.CSS_SELECTOR, "article.invoice").text
    assert "$" in document and "Month seal" in document and "Bill to" in document
    screenshot(browser, "invoice")
    browser.find_element(By.PARTIAL_LINK_TEXT, "API requests beyond").click()
    wait_for(browser, "#events-h")
    carried = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "td.event-id")]
    assert "old" in carried and "a0" not in carried  # this month's are on no invoice yet
    screenshot(browser, "invoice_line")

    browser.get(f"{base}/ui/dead-letters")
    wait_for(browser, "h1", "Dead letters")
    screenshot(browser, "dead_letters")
    assert console_errors(browser) == []  # no CSP violation: htmx, charts and bars work under it

    browser.find_element(By.CSS_SELECTOR, "form[action$='/sign-out'] button").click()
    wait_for(browser, "h1", "Sign in")
    browser.get(f"{base}/ui/")  # the session is over
    wait_for(browser, "h1", "Sign in")

    sign_in(browser, base, viewer)  # an org_viewer of globex
    wait_for(browser, "h1", "globex")
    browser.get(f"{base}/ui/orgs/acme")
    wait_for(browser, "h1", "Not for this key")
    browser.get(f"{base}/ui/dead-letters")
    wait_for(browser, "h1", "Not for this key")
