"""The pages in a real browser (headless Chromium): sign in with a key (and back to the page
asked for), the dashboard's default period, the API usage report's presets, daily chart,
cross-filter and CSV download (equal to the API's CSV), the estimator, an invoice (printable,
as PDF) and its line's lineage, the dead letters and one letter. Every page is checked at
800 and 1400 px for elements wider than their container, and saved as a screenshot at both
widths in ``TALLY_TEST_SCREENSHOTS`` (default /tmp/tally-screenshots) for a person to look at."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from support.browser import SCREENSHOTS, console_errors, screenshot
from support.cli import tally
from support.close_support import close, license_day, meter
from support.ledger_support import ai, api, event
from tally import bootstrap
from tally.config import Settings
from tally.domain.period import period_of, previous_period
from tally.service_layer import organizations

NOW = datetime.now(UTC)
THIS, LAST = period_of(NOW), previous_period(NOW)
LAST_MONTH_DAY = (NOW.replace(day=1) - timedelta(days=10)).strftime("%Y-%m-%d")
EARLIER_DAY = (NOW.replace(day=1) - timedelta(days=45)).strftime("%Y-%m-%d")  # before LAST
EARLIER = EARLIER_DAY[:7]
SNAKE = re.compile(r"\b[a-z]+_[a-z_]+\b")
RAW_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d|\d\d:\d\d:\d\d\.\d+")
LINEAGE_EVENTS = 60  # more than a page (50) of the invoice line's events
STRANGERS = 52  # dead letters of an unknown organization: more than a page with the others


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The seller's details on the invoice document come from configuration."""
    return settings.model_copy(
        update={
            "seller_name": "Tally Metering Ltd",
            "seller_address": "1 Ledger Lane|Leeds LS1 4AP",
            "seller_tax_id": "GB123456789",
            "seller_email": "billing@tally.example",
        }
    )


def day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def fill_ledger(settings: Settings) -> None:
    """Three organizations; API requests of two clients over the last weeks (and today, which
    no report shows), AI usage, licence reports (one hourly: a fractional allocation); last
    month closed and invoiced; hooli used only last month (the month before, voided after
    its close, is credited on last month's invoice); dead letters of several codes."""
    engine = bootstrap.engine(bootstrap.service_urls(settings).database)
    service = bootstrap.metering_service(engine, settings)
    try:
        for org, currency in (("acme", "USD"), ("globex", "EUR"), ("hooli", "JPY")):
            await organizations.add(bootstrap.database(engine), org, currency)
        last_month = LAST_MONTH_DAY
        events = [
            license_day("l1", "gc2", "named", 3, org="acme", day=last_month),
            license_day("l3", "gc2", "hourly", "2.5", org="acme", day=last_month),
            license_day("l2", "gc2", "named", 3, org="acme", day=day(0)[:10]).replace(
                b"T23:00:00Z", day(0)[10:].encode()
            ),
            api("old", count=400_000, org="acme", time=f"{last_month}T10:00:00Z"),
            ai(
                "t-old", "virtual_agent", 400, "session", org="acme", time=f"{last_month}T10:00:00Z"
            ),
            ai("t-frac", "voice_bot", 100, "minute", org="acme", time=f"{last_month}T11:00:00Z"),
            api("h1", count=1234, org="hooli", time=f"{last_month}T10:00:00Z"),
            api("h0", count=5_000, org="hooli", time=f"{EARLIER_DAY}T10:00:00Z"),
        ]
        events += [
            api(f"old-{n:02d}", org="acme", time=f"{last_month}T12:{n:02d}:00Z")
            for n in range(LINEAGE_EVENTS)
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
        await close(engine, EARLIER)  # hooli's h0, voided after: credited on LAST's invoice
        why = {"source": "test", "id": "h0", "reason": "a load test, not usage"}
        await meter(service, [event("tally.void", "void-0", why, org="hooli", time=day(0))])
        last = f"old-{LINEAGE_EVENTS - 1}"  # voided: its line lists it under its reversal too
        why = {"source": "test", "id": last, "reason": "sent twice"}
        await meter(service, [event("tally.void", "void-1", why, org="acme", time=day(0))])
        refused = [
            api(f"0193a6f2-7c1d-7e4b-9f00-{n:012d}", org="nowhere", time=day(1))
            for n in range(STRANGERS)
        ]
        await meter(service, [*refused, b"{not json", b"\xff\xfe binary \x00 bytes"])
        await close(engine, LAST)
    finally:
        await engine.dispose()


async def key(settings: Settings, *args: str) -> str:
    made = await tally(settings, "apikey", "create", *args)
    assert made.code == 0, made
    return made.stdout.strip().splitlines()[-1]


def submit_key(browser: webdriver.Chrome, secret: str) -> None:
    browser.find_element(By.ID, "key").send_keys(secret)
    browser.find_element(By.CSS_SELECTOR, "button.primary").click()


def sign_in(browser: webdriver.Chrome, base: str, secret: str) -> None:
    browser.get(f"{base}/ui/sign-in")
    browser.delete_all_cookies()  # signed out, then the form again: its own CSRF cookie
    browser.get(f"{base}/ui/sign-in")
    submit_key(browser, secret)


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


def texts(browser: webdriver.Chrome, css: str) -> list[str]:
    return [element.text for element in browser.find_elements(By.CSS_SELECTOR, css)]


def look(browser: webdriver.Chrome, name: str) -> None:
    """The page as a reader meets it: nothing wider than its container at either width, no
    raw ISO time, times shown in the viewer's zone (UTC on hover); saved at both widths."""
    assert screenshot(browser, name) == [], f"{name} overflows"
    body = browser.find_element(By.TAG_NAME, "body").text
    assert not RAW_ISO.search(body), (name, RAW_ISO.search(body))
    for moment in browser.find_elements(By.CSS_SELECTOR, "time[datetime]"):
        assert moment.get_attribute("title").endswith(" UTC")
        assert not re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", moment.text)  # localized
    for heading in texts(browser, "h1"):
        assert not SNAKE.search(heading), heading
    for ident in browser.find_elements(By.CSS_SELECTOR, ".ident"):
        assert ident.value_of_css_property("word-break") == "normal"


async def test_pages_in_a_browser(
    settings: Settings, served: tuple[str, asyncio.subprocess.Process], browser: webdriver.Chrome
) -> None:
    base, _ = served
    print(f"screenshots in {SCREENSHOTS}")
    await fill_ledger(settings)
    finance = await key(settings, "--role", "finance", "--name", "finance")
    viewer = await key(settings, "--role", "org_viewer", "--org", "globex")

    async with httpx.AsyncClient(base_url=base) as client:
        root = await client.get("/")
        assert root.status_code in (302, 303, 307) and root.headers["location"] == "/ui/"
        assert (await client.get("/ui/static/favicon.svg")).status_code == 200

    browser.get(f"{base}/ui/")  # not signed in: to the sign-in form
    assert "/ui/sign-in" in browser.current_url
    assert browser.find_element(By.CSS_SELECTOR, "link[rel=icon]")
    submit_key(browser, "tally_000000000000_" + "x" * 43)
    wait_for(browser, ".error", "unknown, expired or revoked")
    look(browser, "sign_in")

    # a link followed while signed out opens after sign-in
    browser.delete_all_cookies()
    browser.get(f"{base}/ui/orgs/acme/api-usage?preset=previous-7-days")
    wait_for(browser, "h1", "Sign in")
    submit_key(browser, finance)
    wait_for(browser, "h1", "API usage · acme")
    assert browser.current_url.endswith("/ui/orgs/acme/api-usage?preset=previous-7-days")

    browser.get(f"{base}/ui/")
    wait_for(browser, "h1", "Organizations")
    look(browser, "organizations")

    browser.find_element(By.LINK_TEXT, "Dashboard").click()  # acme: first in the list
    wait_for(browser, "h1", f"acme · usage {THIS}")
    assert "the current period" in browser.find_element(By.CSS_SELECTOR, ".period-note").text
    gauges = browser.find_elements(By.CSS_SELECTOR, ".gauge")
    assert len(gauges) == 2 and "Allocation" in gauges[0].text
    for figure in texts(browser, ".gauge dd"):  # tokens to 2 decimals, requests whole
        assert not re.search(r"\.\d{3}", figure), figure
    api_figures = texts(browser, "#api-h + .gauge dd")
    assert api_figures and all("." not in figure.split("(")[0] for figure in api_figures)
    assert browser.find_elements(By.CSS_SELECTOR, "svg.chart polyline.used")
    features = browser.find_element(By.ID, "features-h").find_element(By.XPATH, "..").text
    assert "Agent copilot" in features and "agent_copilot" not in features
    look(browser, "dashboard")

    browser.get(f"{base}/ui/orgs/hooli")  # used only last month: that month, said so
    wait_for(browser, "h1", f"hooli · usage {LAST}")
    assert "latest period with usage" in browser.find_element(By.CSS_SELECTOR, ".period-note").text
    browser.get(f"{base}/ui/orgs/hooli/invoices")
    newest = max(browser.find_elements(By.PARTIAL_LINK_TEXT, "INV-"), key=lambda a: a.text)
    number = newest.text
    newest.click()  # LAST's, with the credit
    wait_for(browser, "#inv-title", f"Invoice {number}")
    document = browser.find_element(By.CSS_SELECTOR, "article.invoice").text
    assert f"voided usage for {EARLIER}: 5,000 requests taken back, 5,000 over credited" in (
        document
    )
    assert "-¥60" in document, document  # 5,000 requests at JPY 0.012, credited
    due = browser.find_element(By.CSS_SELECTOR, ".due").text  # ¥15 of use less ¥60 of credit
    assert due.split() == ["Credit", "¥45", "nothing", "to", "pay"], due
    assert "Nothing to pay: ¥45 is credited to hooli" in document
    look(browser, "invoice_credit")
    browser.get(f"{base}/ui/orgs/globex")  # no usage at all: the current month, said so
    wait_for(browser, "h1", f"globex · usage {THIS}")
    assert "no usage is recorded yet" in browser.find_element(By.CSS_SELECTOR, ".period-note").text
    look(browser, "dashboard_empty")

    browser.get(f"{base}/ui/orgs/acme")
    browser.find_element(By.LINK_TEXT, "API usage").click()
    wait_for(browser, "#report", "OAuth clients")
    assert browser.find_element(By.CSS_SELECTOR, '.presets a[aria-current="true"]').text == (
        "Previous 30 days"
    )
    # never today's 999; last month's 400,060 fall in the 30 days
    assert "400,284 requests" in browser.find_element(By.ID, "report").text  # old-59 voided
    assert len(browser.find_elements(By.CSS_SELECTOR, "#daily-h + svg g.day")) == 30
    assert browser.find_elements(By.CSS_SELECTOR, "#daily-h + svg rect.b429")
    browser.find_element(By.LINK_TEXT, "Previous 7 days").click()  # htmx swaps the report
    wait_for(browser, "#report", "165 requests")
    assert "preset=previous-7-days" in browser.current_url
    current = browser.find_element(By.CSS_SELECTOR, '.presets a[aria-current="true"]')
    assert current.text == "Previous 7 days"  # the presets swapped with the report
    assert len(browser.find_elements(By.CSS_SELECTOR, "#daily-h + svg g.day")) == 7
    look(browser, "api_usage")
    browser.find_element(By.LINK_TEXT, "wfm-sync").click()  # cross-filter by one client
    wait_for(browser, "#selection", "wfm-sync")
    chip = browser.find_element(By.ID, "selection")
    assert chip.location["y"] < browser.find_element(By.ID, "daily-h").location["y"]  # on top
    assert "25 requests of 165" in browser.find_element(By.ID, "report").text
    assert texts(browser, "tr.selected td:first-child") == ["wfm-sync"]
    top = browser.find_element(By.ID, "top-clients-h").find_element(By.XPATH, "..").text
    assert "wfm-sync" in top and "c-42" not in top  # every section filtered
    urls = browser.find_element(By.ID, "urls-h").find_element(By.XPATH, "..").text
    assert "Share of wfm-sync" in urls and "/api/v2/users" not in urls
    look(browser, "api_usage_filtered")
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
    chip.find_element(By.TAG_NAME, "a").click()  # the chip clears the filter
    wait_for(browser, "#report", "165 requests")
    assert not browser.find_elements(By.ID, "selection")

    browser.find_element(By.LINK_TEXT, "Estimator").click()
    wait_for(browser, "h1", "Cost estimator")
    offered = [
        o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#seat0 option")
    ]
    assert "gc2:hourly" in offered and "communicate:concurrent" not in offered
    assert "communicate:named" in offered
    box = browser.find_element(By.ID, "copilot_users")
    box.clear()
    box.send_keys("many")
    browser.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait_for(browser, "#problems", "Agent Copilot users")
    problems = browser.find_element(By.ID, "problems")
    assert (
        problems.location["y"]
        < browser.find_element(By.CSS_SELECTOR, "#estimator form").location["y"]
    )
    assert browser.find_element(By.ID, "copilot_users").get_attribute("aria-invalid") == "true"
    look(browser, "estimator_error")
    for field, value in (
        ("users0", "200"), ("copilot_users", "200"), ("copilot_tokens_per_user", "55"),
        ("virtual_agent_sessions_per_day", "200"), ("scoring_interactions_per_day", "500"),
        ("voice_bot_minutes_per_day", "250"), ("translate_minutes_per_month", "300"),
        ("messages_per_month", "5000"),
    ):  # fmt: skip
        box = browser.find_element(By.ID, field)
        box.clear()
        box.send_keys(value)
    browser.find_element(By.CSS_SELECTOR, "#seat0 option[value='gc2:named']").click()
    browser.find_element(By.CSS_SELECTOR, "form button.primary").click()
    wait_for(browser, "#result", "19,809.62")  # tokens to 2 decimals (exactly 19,809.617648)
    exact = browser.find_element(By.XPATH, "//*[@id='result']//span[text()='19,809.62']")
    assert exact.get_attribute("title") == "exactly 19,809.617648"
    assert "50,000" in browser.find_element(By.ID, "result").text
    look(browser, "estimator")

    browser.get(f"{base}/ui/orgs/acme/invoices")
    look(browser, "invoices")
    browser.find_element(By.PARTIAL_LINK_TEXT, "INV-").click()
    wait_for(browser, "#inv-title", "Invoice INV-")
    document = browser.find_element(By.CSS_SELECTOR, "article.invoice").text
    assert "$" in document and "Month seal" in document and "Bill to" in document
    seller = browser.find_element(By.ID, "seller").text
    assert "Tally Metering Ltd" in seller and "Leeds LS1 4AP" in seller and "GB123456789" in seller
    assert "acme" in browser.find_element(By.ID, "customer").text
    issued = browser.find_element(By.XPATH, "//dt[text()='Issued']/following-sibling::dd").text
    due = datetime.fromisoformat(issued).date() + timedelta(days=30)  # TALLY_PAYMENT_DAYS
    assert browser.find_element(By.ID, "due-date").text == str(due)
    for link in texts(browser, "table.lines a"):
        assert not SNAKE.search(link), link  # no feature list in snake_case
    allocation = browser.find_element(By.CSS_SELECTOR, "table.lines tbody tr td:nth-child(2) span")
    assert allocation.text == "332,478"  # 3 x 110,000 + 2.5 hours x 991, rounded half up
    assert allocation.get_attribute("title") == "exactly 332,477.5"
    voice = browser.find_element(By.XPATH, "//td[text()='Voice bot']/following-sibling::td")
    assert voice.text == "5.88"  # 100 minutes / 17, to 2 decimals
    look(browser, "invoice")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    assert not browser.find_element(By.CSS_SELECTOR, "header.top").is_displayed()
    assert not browser.find_element(By.CSS_SELECTOR, "p.actions").is_displayed()
    assert browser.find_element(By.ID, "due-date").is_displayed()
    pdf = browser.execute_cdp_cmd("Page.printToPDF", {"preferCSSPageSize": True})
    (SCREENSHOTS / "invoice-print.pdf").write_bytes(base64.b64decode(pdf["data"]))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
    link = browser.find_element(By.LINK_TEXT, "Download PDF").get_attribute("href")
    session = {"tally_session": browser.get_cookie("tally_session")["value"]}
    async with httpx.AsyncClient(cookies=session) as client:
        pdf_download = await client.get(link, timeout=60)
    assert pdf_download.status_code == 200, pdf_download.text
    assert pdf_download.headers["content-type"] == "application/pdf"
    assert pdf_download.content.startswith(b"%PDF-")
    (SCREENSHOTS / "invoice-download.pdf").write_bytes(pdf_download.content)

    browser.find_element(By.PARTIAL_LINK_TEXT, "API requests beyond").click()
    wait_for(browser, "#events-h")
    assert "tally invoice lineage" not in browser.find_element(By.TAG_NAME, "body").text
    carried = texts(browser, "td.event-id")
    assert "old" in carried and "a0" not in carried  # this month's are on no invoice yet
    assert len(carried) == 50 and browser.find_elements(By.CSS_SELECTOR, "td.event-time time")
    look(browser, "invoice_line")
    browser.find_element(By.ID, "next-page").click()
    wait_for(browser, "nav.pager", "First page")
    rest = texts(browser, "td.event-id")
    assert rest and not set(rest) & set(carried)  # the next page, none repeated
    assert f"old-{LINEAGE_EVENTS - 1}" in rest
    statuses = texts(browser, "div.scroll table tbody tr")
    assert any("voided" in row and "-1" in row for row in statuses), statuses  # the reversal
    look(browser, "invoice_line_voided")
    browser.find_element(By.CSS_SELECTOR, "a.entry-link").click()  # one entry's events
    wait_for(browser, ".chip", "Entry")

    browser.get(f"{base}/ui/dead-letters")
    wait_for(browser, "h1", "Dead letters")
    codes = texts(browser, ".code-counts li")
    assert len(codes) >= 2 and any(f"{STRANGERS} open" in c for c in codes), codes
    assert len(texts(browser, "table.letters tbody tr")) == 50  # a page, not all of them
    assert "nowhere" in texts(browser, "table.letters td:nth-child(4)")  # the organization
    ids = browser.find_elements(By.CSS_SELECTOR, "table.letters td.mono .ident")
    assert ids and max(cell.size["height"] for cell in ids) < 2.5 * 20  # not a char a line
    assert browser.execute_script("return document.documentElement.scrollHeight") < 6000
    look(browser, "dead_letters")
    browser.find_element(By.ID, "next-page").click()
    wait_for(browser, "nav.pager", "First page")
    assert 0 < len(texts(browser, "table.letters tbody tr")) < 50
    browser.get(f"{base}/ui/dead-letters?org=nowhere&state=all")
    wait_for(browser, "h1", "Dead letters")
    shown = texts(browser, "table.letters td:nth-child(4)")
    assert shown and set(shown) == {"nowhere"}
    browser.get(f"{base}/ui/dead-letters?code=malformed_json&from=2000-01-01&to=2000-01-02")
    wait_for(browser, "tr.empty", "No dead letter matches")
    look(browser, "dead_letters_empty")
    browser.get(f"{base}/ui/dead-letters?code=malformed_json")
    browser.find_element(By.CSS_SELECTOR, "table.letters td.num a").click()
    wait_for(browser, "h1", "Dead letter")
    assert browser.find_element(By.ID, "replay-command").text.startswith("tally dlq replay ")
    assert "{not json" in browser.find_element(By.ID, "raw-text").text
    assert "refused: malformed_json" in browser.find_element(By.CSS_SELECTOR, ".history").text
    look(browser, "dead_letter")
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
