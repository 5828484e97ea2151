"""The QA console in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
a supervisor logs in, filters low scores, checks the player's signed link and adds a review; the operator
sees the notification and is refused another operator's call. Screenshots go to docs/screenshots/.

Skipped, saying why, when Chromium is not installed; CI installs it and sets REQUIRE_BROWSER=1, which
turns the skip into a failure."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.links import link_is_valid
from connector.users import add_user
from tests.conftest import MangoPoster, dtmf, recording, summary
from tests.fakes.server import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PASSWORD = "correct horse battery"


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    if missing:
        message = (f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
                   "apt-get install chromium chromium-driver")
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser(tmp_path):
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    # Headless, no sandbox (CI runs as root), and no background traffic to the internet.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def console(app, client, db, monkeypatch):
    """The connector over real HTTP with three people and two scored calls."""
    monkeypatch.setattr("connector.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD)
        add_user(s, "olga", "operator", PASSWORD, ["101"])
        add_user(s, "oleg", "operator", PASSWORD, ["102"])
    post = MangoPoster(client)
    for entry_id, extension, digits in [("call-1", "101", "3"), ("call-2", "102", "9")]:
        post("events/dtmf", dtmf(entry_id, digits))
        post("events/summary", summary(entry_id, extension=extension))
    post("events/recording", recording("call-1", "rec-1"))
    with serving(app) as url:
        yield url


def wait_for(driver, condition, what: str):
    """A click that submits a form returns before the next page is there: wait for it (10 s at most)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, 10, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)
                         ).until(lambda d: condition(d), message=what)


def at(path: str):
    return lambda d: urlsplit(d.current_url).path == path


def log_in(driver, url, name):
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_for(driver, at("/calls"), f"{name} logged in and on /calls")


def call_ids(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    links = driver.find_elements(By.CSS_SELECTOR, "#calls tbody a")
    return [urlsplit(a.get_attribute("href")).path.rsplit("/", 1)[1] for a in links]


def test_supervisor_reviews_a_low_score_and_the_operator_is_told(browser, console, app):
    from selenium.webdriver.common.by import By

    log_in(browser, console, "sam")
    assert set(call_ids(browser)) == {"call-1", "call-2"}
    browser.find_element(By.ID, "low-scores").click()
    wait_for(browser, lambda d: "score_lte" in d.current_url, "the low-scores preset")
    assert parse_qs(urlsplit(browser.current_url).query) == {"score_lte": ["8"]}
    assert call_ids(browser) == ["call-1"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.get(f"{console}/calls")
    browser.save_screenshot(str(SCREENSHOTS / "calls.png"))

    browser.get(f"{console}/calls/call-1")
    src = browser.find_element(By.ID, "player").get_attribute("src")
    parts = urlsplit(src)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/recordings/call-1" and set(query) == {"exp", "sig"}
    assert link_is_valid(app.config["SECRET_KEY"], "call-1", query["exp"], query["sig"])

    browser.find_element(By.NAME, "score").send_keys("6")
    browser.find_element(By.NAME, "comment").send_keys("Не представился")
    browser.find_element(By.CSS_SELECTOR, "#review-form button").click()
    wait_for(browser, lambda d: "sam: 6" in d.find_element(By.ID, "reviews").text, "the review on the page")
    assert "sam: 6 «Не представился»" in browser.find_element(By.ID, "reviews").text
    assert browser.find_element(By.ID, "supervisor-score").text == "6"

    browser.get(f"{console}/reports")
    assert "Итого" in browser.find_element(By.ID, "report-operator").text
    browser.save_screenshot(str(SCREENSHOTS / "reports.png"))
    browser.find_element(By.CSS_SELECTOR, "header form button").click()  # log out
    wait_for(browser, at("/login"), "logged out")

    log_in(browser, console, "olga")
    assert browser.find_element(By.ID, "unread").text == "1"
    assert call_ids(browser) == ["call-1"]
    browser.get(f"{console}/calls/call-2")  # oleg's call
    assert "call-2" not in browser.find_element(By.TAG_NAME, "body").text.replace("unknown", "")
    assert re.search(r"not found|404|unknown", browser.page_source, re.I)
    browser.get(f"{console}/calls/call-1")
    assert "sam: 6" in browser.find_element(By.ID, "reviews").text
    assert not browser.find_elements(By.ID, "review-form")  # operators do not review
