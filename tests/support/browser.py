"""A real browser for the pages' tests: Debian's Chromium, headless, through its own driver.

Nothing downloads at run time: the system ``chromium`` and ``chromedriver`` are used (``.ci/run``
installs them). Without them the browser tests are skipped, except where
``TALLY_TEST_REQUIRE_BROWSER`` is set (CI), where their absence fails the run.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

SCREENSHOTS = Path(os.environ.get("TALLY_TEST_SCREENSHOTS", "/tmp/tally-screenshots"))


def _executables() -> tuple[str, str] | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    found = _executables()
    if found is None:
        if os.environ.get("TALLY_TEST_REQUIRE_BROWSER"):
            pytest.fail(
                "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
            )
        pytest.skip("no chromium/chromedriver on this machine")
    binary, driver = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1320,1000",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP reports
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    chrome.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    chrome.downloads = downloads  # type: ignore[attr-defined]
    try:
        yield chrome
    finally:
        chrome.quit()


WIDTHS = (800, 1400)  # a laptop's half screen and a desktop window

# Elements wider than their box (text or children overflowing a card, a cell, a button) and
# a document wider than the window; scrollable boxes (overflow auto/scroll) may be wider
# inside, and inline elements and SVG's insides have no box of their own.
OVERFLOWS = """
const found = [];
const doc = document.documentElement;
if (doc.scrollWidth > window.innerWidth) {
  found.push(`document ${doc.scrollWidth} > ${window.innerWidth}`);
}
for (const el of document.body.querySelectorAll('*')) {
  const style = getComputedStyle(el);
  if (['none', 'inline', 'contents'].includes(style.display)) continue;
  if (el.closest('svg') && el.tagName.toLowerCase() !== 'svg') continue;
  if (['auto', 'scroll', 'hidden'].includes(style.overflowX)) continue;
  if (el.closest('.scroll')) continue;
  if (el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1) {
    const classes = typeof el.className === 'string' ? el.className.split(' ') : [];
    const name = [el.tagName.toLowerCase() + (el.id ? '#' + el.id : ''), ...classes].join('.');
    const text = el.textContent.trim().slice(0, 60);
    found.push(`${name} ${el.scrollWidth} > ${el.clientWidth}: ${text}`);
  }
}
return found;
"""


def screenshot(chrome: webdriver.Chrome, name: str) -> list[str]:
    """At each of ``WIDTHS``: save the whole page as ``name-WIDTH.png`` in SCREENSHOTS and
    list what overflows its container there (nothing, on a good page)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    overflowing = []
    for width in WIDTHS:
        chrome.set_window_size(width, 1000)
        overflowing += [f"{width}px: {found}" for found in chrome.execute_script(OVERFLOWS)]
        height = chrome.execute_script("return document.documentElement.scrollHeight")
        chrome.set_window_size(width, max(int(height), 600))
        chrome.execute_script("window.scrollTo(0, 0)")
        chrome.save_screenshot(str(SCREENSHOTS / f"{name}-{width}.png"))
    chrome.set_window_size(1320, 1000)
    return overflowing


def console_errors(chrome: webdriver.Chrome) -> list[str]:
    """What the console said at SEVERE level since the last call (CSP violations, scripts'
    errors), but for answers' statuses (a 401 on a wrong key, no favicon)."""
    return [
        entry["message"]
        for entry in chrome.get_log("browser")
        if entry["level"] == "SEVERE" and "Failed to load resource" not in entry["message"]
    ]
