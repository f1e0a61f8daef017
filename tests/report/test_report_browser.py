"""The report in a real browser: Debian's headless Chromium driven by Selenium.

The page renders (its stylesheet and script are the ones its Content-Security-Policy
allows), a transaction opens on a click and shows its timeline, and opening the page
makes no network request: Chrome's DevTools performance log lists every request the
page sends, and the only one is the file itself.

Chromium and ChromeDriver are Debian's packages (`make chromium` installs them;
`make test` does so when they are missing). Without them this test fails: it does not
skip, so a CI run cannot pass without the browser check.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p3log.report import build_report, write_html

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
INSTALL = "`make chromium` (apt-get install chromium chromium-driver)"
# abort.jsonl: an abort window, an abort the server refused, a signature action.
REFUSED_ABORT_KEY = "7b4e6c18b2414fd3:4c10fd7c-1a9a-42b4-94d4-0f2ff34ed706"


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: pip install -e '.[dev]'")
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: the browser test needs {INSTALL}")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must download nothing
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    browser.set_page_load_timeout(15)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def report_file(fixture_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser") / "report.html"
    write_html(build_report(fixture_store), out)
    return out


def open_page(driver: Any, path: Path) -> list[dict[str, Any]]:
    """Load `path`; returns the requests the page sent (DevTools' requestWillBeSent and
    loadingFailed events), once it and its script have settled."""
    driver.get_log("performance")  # drop what earlier pages logged
    driver.get_log("browser")
    driver.get(path.as_uri())
    time.sleep(0.3)  # anything the page would fetch after load starts by now
    return network_events(driver)


def network_events(driver: Any) -> list[dict[str, Any]]:
    events = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] in ("Network.requestWillBeSent", "Network.loadingFailed"):
            events.append(message)
    return events


def fetched(events: list[dict[str, Any]], document: str) -> list[str]:
    """What was requested, besides the document itself (and what a policy blocked)."""
    urls = [
        event["params"]["request"]["url"]
        for event in events
        if event["method"] == "Network.requestWillBeSent"
    ]
    blocked = [
        f"blocked: {event['params'].get('blockedReason')}"
        for event in events
        if event["method"] == "Network.loadingFailed" and event["params"].get("blockedReason")
    ]
    return [url for url in urls if url != document] + blocked


def test_the_report_renders_opens_a_transaction_and_fetches_nothing(
    driver: Any, report_file: Path, fixture_store: Path
) -> None:
    from selenium.webdriver.common.by import By

    events = open_page(driver, report_file)
    assert fetched(events, report_file.as_uri()) == []
    assert [e["params"]["request"]["url"] for e in events if "request" in e["params"]] == [
        report_file.as_uri()
    ]

    assert driver.title.startswith("p3log audit report")
    assert driver.find_element(By.TAG_NAME, "h1").text == "P3 audit report"
    csp = driver.find_element(By.CSS_SELECTOR, "meta[http-equiv='Content-Security-Policy']")
    assert csp.get_attribute("content").startswith("default-src 'none';")
    # The policy let the report's own script run and its own stylesheet apply.
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-js") == "on"
    chain = driver.find_element(By.ID, "chain")
    assert chain.get_attribute("data-chain") == "OK"
    assert chain.value_of_css_property("border-top-style") == "solid"
    assert "Hash chain OK" in chain.text
    violations = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert violations == []

    from p3log.projections.opening import open_store

    con = open_store(fixture_store)
    try:
        ((count,),) = con.execute("SELECT count(*) FROM transactions").fetchall()
    finally:
        con.close()
    rows = driver.find_elements(By.CSS_SELECTOR, "#transactions-table details.txn")
    assert len(rows) == count
    assert all(row.is_displayed() for row in rows)

    (row,) = [r for r in rows if r.get_attribute("data-transaction-key") == REFUSED_ABORT_KEY]
    body = row.find_element(By.CSS_SELECTOR, ".timeline-body")
    assert not body.is_displayed()
    row.find_element(By.TAG_NAME, "summary").click()
    assert row.get_attribute("open") is not None
    assert body.is_displayed()
    types = [cell.text for cell in body.find_elements(By.CSS_SELECTOR, "td.msg-type")]
    assert types[0] == "EXECUTE_TRANSACTION_REQUEST"
    assert {"ABORT_TRANSACTION_REQUEST", "EXECUTE_TRANSACTION_ACTION"} <= set(types)
    assert types[-1] == "EXECUTE_TRANSACTION_RESPONSE"
    timeline = body.find_element(By.CSS_SELECTOR, "svg.timeline")
    assert timeline.is_displayed() and timeline.size["width"] > 300
    assert body.find_elements(By.CSS_SELECTOR, "svg.timeline rect.window")
    assert "!! FINDING abort_not_abortable" in body.text

    # A finding's link opens the transaction it points at (the page's script).
    row.find_element(By.TAG_NAME, "summary").click()
    assert not body.is_displayed()
    driver.find_element(By.CSS_SELECTOR, f"#findings a[href='#{row.get_attribute('id')}']").click()
    # The page's script runs on the hashchange event, after the click returns: wait for
    # it (a loaded machine delays it), rather than race it.
    assert settles(lambda: body.is_displayed())
    driver.find_element(By.ID, "open-all").click()
    assert settles(lambda: all(r.get_attribute("open") is not None for r in rows))
    # Opening everything fetched nothing either.
    assert fetched(network_events(driver), report_file.as_uri()) == []


def settles(condition: Any, seconds: float = 10.0) -> bool:
    """Whether `condition()` becomes true within `seconds` (polled): for what the page's
    script does after an event, which the browser runs when it gets to it."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_the_network_check_sees_a_page_that_fetches(driver: Any, tmp_path: Path) -> None:
    """The check above is not vacuous: a page with one external image is caught, even
    when its policy blocks the fetch."""
    page = tmp_path / "fetching.html"
    page.write_text(
        "<!DOCTYPE html><meta http-equiv='Content-Security-Policy' content=\"default-src "
        "'none'\"><title>x</title><img src='https://example.invalid/pixel.png'>"
    )
    found = fetched(open_page(driver, page), page.as_uri())
    assert "https://example.invalid/pixel.png" in found
    assert "blocked: csp" in found
