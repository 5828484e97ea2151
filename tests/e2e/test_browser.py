"""The QA console in a real headless Chromium (Debian's chromium and chromium-driver, driven by Selenium):
a supervisor logs in, filters low scores, checks the player's signed link and adds a review; the operator
sees the notification and is refused another operator's call. Screenshots go to var/screenshots/ (not
tracked: the README's pictures in docs/screenshots/ are copied from there by hand when a page changes).

Skipped, saying why, when Chromium is not installed; CI installs it and sets REQUIRE_BROWSER=1, which
turns the skip into a failure."""
from __future__ import annotations

import functools
import os
import re
import shutil
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.core.links import link_is_valid
from connector.core.users import add_user
from tests.conftest import ADMIN_TOKEN, MangoPoster, dtmf, recording, summary
from tests.fakes.server import serving

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "correct horse battery"


def _browser_or_skip():
    missing = [p for p in (CHROMIUM, DRIVER) if not os.path.exists(p)]
    if missing:
        message = (f"browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} missing): "
                   "apt-get install chromium chromium-driver")
        if os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


def start_chromium(profile: Path):
    """Headless, no sandbox (CI runs as root), and no background traffic to the internet."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=DRIVER), options=options)
    driver.set_page_load_timeout(30)
    return driver


class Chromium:
    """One Chromium for the whole run (starting one costs seconds); each test gets it as new: one blank tab
    at 1280x900, no cookies, no cache, no site storage. A browser a test broke is replaced."""

    def __init__(self, profiles: Path):
        self.profiles, self.driver, self.started = profiles, None, 0

    def fresh(self):
        if self.driver is not None:
            try:
                self.reset()
            except Exception:  # crashed or hung: a new one
                self.quit()
        if self.driver is None:
            self.started += 1
            self.driver = start_chromium(self.profiles / f"profile-{self.started}")
        return self.driver

    def reset(self) -> None:
        driver = self.driver
        for handle in driver.window_handles[1:]:
            driver.switch_to.window(handle)
            driver.close()
        driver.switch_to.window(driver.window_handles[0])
        driver.get("about:blank")
        driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
        driver.delete_all_cookies()
        driver.set_window_size(1280, 900)

    def quit(self) -> None:
        if self.driver is not None:
            driver, self.driver = self.driver, None
            try:
                driver.quit()
            except Exception:  # already gone: nothing to stop
                pass


@pytest.fixture
def browser(chromium):
    """The run's Chromium, as new for each test (see Chromium)."""
    yield chromium.fresh()


@pytest.fixture
def console(app, client, db, monkeypatch):
    """The connector over real HTTP with three people and two scored calls."""
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
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


def log_in(driver, url, name, password: str = PASSWORD):
    from selenium.webdriver.common.by import By

    driver.get(f"{url}/")
    driver.find_element(By.NAME, "username").send_keys(name)
    driver.find_element(By.NAME, "password").send_keys(password)
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


# --- the console as people meet it: both languages, a desktop and a phone, axe-core on every page ------------

WIDTHS = {"desktop": (1366, 900), "phone": (390, 844)}


@functools.cache
def axe_script() -> str:
    from importlib.resources import files

    return (files("axe_core_python") / "axe.min.js").read_text()


def axe_problems(driver) -> list[str]:
    """axe-core's serious and critical findings on the page shown: '<rule>: <target>' each. The script comes
    from the axe-core-python package and is run by the driver, which the page's policy against scripts does
    not cover."""
    if not driver.execute_script("return typeof window.axe === 'object'"):  # this page has it already
        driver.execute_script(axe_script())
    # Every rule runs; only the violations come back in full (axe's resultTypes), and only what is reported.
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then("
        "  r => done({violations: r.violations.map(v => ({id: v.id, impact: v.impact,"
        "                                               nodes: v.nodes.map(n => ({target: n.target}))}))}),"
        "  e => done({error: String(e)}));")
    assert "error" not in result, result
    return [f"{v['id']}: {n['target']}" for v in result["violations"] if v["impact"] in ("serious", "critical")
            for n in v["nodes"]]


def fits(driver) -> bool:
    """Nothing sticks out sideways: wide tables scroll inside their own box, the page itself does not."""
    return driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")


@pytest.fixture
def busy_console(app, client, db, monkeypatch):
    """Four people, calls on two lines scored before and after a threshold change, a line with its own
    threshold, a review, and 60 notifications for the supervisor."""
    from connector.core.models import Notification, User

    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD)
        add_user(s, "sam", "supervisor", PASSWORD)
        add_user(s, "olga", "operator", PASSWORD, ["101"])
        add_user(s, "oleg", "operator", PASSWORD, ["102"])
    post = MangoPoster(client)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def scored(entry_id, extension, digits, line="74950000001"):
        post("events/summary", summary(entry_id, extension=extension, line=line))
        post("events/dtmf", dtmf(entry_id, digits))

    for entry_id, extension, digits in [("call-1", "101", "3"), ("call-2", "102", "6"), ("call-3", "101", "10")]:
        scored(entry_id, extension, digits)
    client.put("/api/v1/settings", json={"max_threshold": 5}, headers=auth)
    client.put("/api/v1/settings/lines/74950000002", json={"max_threshold": 8}, headers=auth)
    for entry_id, extension, digits in [("call-4", "102", "4"), ("call-5", "101", "7")]:
        scored(entry_id, extension, digits, line="74950000002")
    client.post("/api/v1/calls/call-1/reviews", json={"score": 6, "comment": "Не представился"}, headers=auth)
    with db.transaction() as s:
        sam = s.query(User).filter_by(username="sam").one()
        first = s.query(Notification).filter_by(user_id=sam.id).order_by(Notification.id).all()
        for i in range(60 - len(first)):
            model = first[i % len(first)]
            s.add(Notification(user_id=model.user_id, call_id=model.call_id, kind=model.kind, read=False))
    with serving(app) as url:
        yield url


# Each page as one person sees it; the error pages and a refused filter are pages too.
PAGES_TO_CHECK = [
    (None, "login", "/login"),
    ("ann", "calls", "/calls"),
    ("ann", "calls-refused-filter", "/calls?score_lte=abc&line=74950000001"),
    ("ann", "call", "/calls/call-1"),
    ("ann", "reports", "/reports"),
    ("ann", "settings", "/settings?line=74950000002"),
    ("ann", "users", "/users"),
    ("ann", "audit", "/audit"),
    ("ann", "not-found", "/no-such-page"),
    ("sam", "notifications", "/notifications"),
    ("sam", "forbidden", "/settings"),
    ("olga", "another-operators-call", "/calls/call-2"),
]


def pictures_taken(db_url: str) -> bool:
    """The pages look the same on either database and their screenshots have the same names: they are taken
    on SQLite (always in the run), not taken again on PostgreSQL."""
    return db_url.startswith("sqlite")


def test_every_page_in_both_languages_on_a_desktop_and_a_phone(browser, busy_console, db_url):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    problems, overflowing, person = [], [], None
    for who, name, path in PAGES_TO_CHECK:
        if who != person:
            browser.delete_all_cookies()
            if who:
                log_in(browser, busy_console, who)
            person = who
        for lang in ("ru", "en"):
            browser.get(f"{busy_console}{path}{'&' if '?' in path else '?'}lang={lang}")
            assert browser.find_element("css selector", "html").get_attribute("lang") == lang
            for width_name, size in WIDTHS.items():
                browser.set_window_size(*size)
                problems += [f"{name} {lang} {width_name}: {p}" for p in axe_problems(browser)]
                if not fits(browser):
                    overflowing.append(f"{name} {lang} {width_name}: " + browser.execute_script(
                        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right"
                        " > window.innerWidth + 1 && !e.closest('.table-wrap')).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
                        ".join(' ')"))
                if pictures_taken(db_url):
                    height = browser.execute_script("return document.documentElement.scrollHeight")
                    browser.set_window_size(size[0], min(max(height, size[1]) + 140, 5000))  # the whole page
                    browser.save_screenshot(str(SCREENSHOTS / f"{name}-{lang}-{width_name}.png"))
    browser.set_window_size(1280, 900)
    assert problems == [], "\n".join(problems)
    assert overflowing == [], overflowing


def test_an_admin_gives_a_line_only_a_threshold_and_sees_what_it_inherits(browser, busy_console):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    log_in(browser, busy_console, "ann")
    browser.get(f"{busy_console}/settings")
    form = browser.find_element(By.ID, "line-form")
    assert Select(form.find_element(By.NAME, "enabled")).first_selected_option.text == \
        "как в общих настройках (сейчас: включена)"
    form.find_element(By.NAME, "line_number").send_keys("74950000003")
    form.find_element(By.NAME, "max_threshold").send_keys("99")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "line-problem"), "the refusal on the line form")
    assert browser.find_element(By.ID, "line-problem").text.startswith("Порог: от 1 до 11")
    assert browser.find_element(By.CSS_SELECTOR, "#line-form [name=line_number]").get_attribute("value") == \
        "74950000003"  # what was typed is kept
    field = browser.find_element(By.CSS_SELECTOR, "#line-form [name=max_threshold]")
    field.clear()
    field.send_keys("4")
    browser.find_element(By.CSS_SELECTOR, "#line-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "line-saved"), "the line saved")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr") if "74950000003" in r.text)
    assert row.find_element(By.CSS_SELECTOR, ".enabled").text == "как в общих: включена"
    assert row.find_element(By.CSS_SELECTOR, ".threshold").text == "4"


def test_the_language_links_keep_the_filters_and_the_choice_survives_the_login(browser, busy_console):
    from selenium.webdriver.common.by import By

    browser.get(f"{busy_console}/login")
    browser.find_element(By.ID, "lang-en").click()
    wait_for(browser, lambda d: "Username" in d.page_source, "the login page in English")
    log_in(browser, busy_console.rstrip("/"), "sam")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Calls"
    browser.get(f"{busy_console}/calls?score_lte=4")
    browser.find_element(By.ID, "lang-ru").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Звонки", "the list in Russian")
    assert parse_qs(urlsplit(browser.current_url).query) == {"score_lte": ["4"], "lang": ["ru"]}
    assert browser.find_element(By.NAME, "score_lte").get_attribute("value") == "4"
    browser.get(f"{busy_console}/reports?lang=en")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Reports"


def test_the_reports_parts_add_up_after_a_threshold_change(browser, busy_console):
    from selenium.webdriver.common.by import By

    log_in(browser, busy_console, "sam")
    browser.get(f"{busy_console}/reports")
    totals = browser.find_elements(By.CSS_SELECTOR, "#report-operator tbody tr")[-1]
    cells = [td.text for td in totals.find_elements(By.TAG_NAME, "td")]
    rated, satisfied, dissatisfied = int(cells[5]), int(cells[8]), int(cells[9])
    # 3, 6, 10 rated under threshold 9, then 4 and 7 on a line whose own threshold is 8; the global one is 5 now
    assert (rated, satisfied, dissatisfied) == (5, 2, 3)
    assert "по порогу, который действует сейчас" in browser.find_element(By.ID, "split-rule").text


def test_notifications_page_and_are_all_marked_read_with_one_button(browser, busy_console):
    from selenium.webdriver.common.by import By

    log_in(browser, busy_console, "sam")
    assert browser.find_element(By.ID, "unread").text == "60"
    browser.get(f"{busy_console}/notifications")
    first = browser.find_elements(By.CSS_SELECTOR, "#notifications tbody tr")
    operator = first[0].find_element(By.CSS_SELECTOR, ".operator").text  # by name where one is known: "olga (101)"
    assert len(first) == 50 and any(operator == e or operator.endswith(f" ({e})") for e in ("101", "102"))
    browser.find_element(By.ID, "older").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "newest"), "the older page")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#notifications tbody tr")) == 10
    browser.find_element(By.CSS_SELECTOR, "#mark-all-read button").click()
    wait_for(browser, lambda d: not d.find_elements(By.ID, "unread"), "every notification read")
    assert "Непрочитанных: 0" in browser.find_element(By.ID, "unread-total").text


def test_refusals_are_console_pages_in_the_page_language(browser, busy_console):
    from selenium.webdriver.common.by import By

    log_in(browser, busy_console, "olga")
    browser.get(f"{busy_console}/calls/call-2?lang=en")  # oleg's call
    assert browser.find_element(By.TAG_NAME, "h1").text == "Not found"
    assert "call-2" not in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.CSS_SELECTOR, "header").text  # still in the console, with its menu
    browser.get(f"{busy_console}/calls?score_lte=abc&lang=ru")
    assert browser.find_element(By.ID, "filter-problem").text == "«Оценка до»: введите целое число"
    assert browser.find_element(By.NAME, "score_lte").get_attribute("aria-invalid") == "true"
    browser.delete_all_cookies()
    log_in(browser, busy_console, "sam")
    browser.get(f"{busy_console}/settings")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Нет доступа"


def test_the_call_page_reads_in_words_on_a_phone(browser, busy_console):
    """Issue #17: at 390 px the call is titled by its time, masked customer and operator, and its scores and
    events are named in Russian; no code, id or UTC time shows, and nothing sticks out sideways."""
    from selenium.webdriver.common.by import By

    log_in(browser, busy_console, "sam")
    browser.set_window_size(*WIDTHS["phone"])
    browser.get(f"{busy_console}/calls/call-1?lang=ru")
    title = "Звонок 22.11.2025, 11:26 · клиент …4567 · оператор olga (101)"
    assert browser.title == title
    heading = browser.find_element(By.TAG_NAME, "h1")
    assert heading.text.replace("\n", " ") == title
    assert heading.rect["x"] + heading.rect["width"] <= 390
    scores = browser.find_element(By.ID, "scores").text
    assert "клиент опрос АТС (клавиши) 3 принята ниже порога: тег «Оценка 3»" in scores
    assert "супервизор разбор в консоли 6 принята" in scores
    timeline = browser.find_element(By.ID, "timeline").text
    assert "итоги звонка" in timeline and "клиент нажал клавиши (опрос)" in timeline
    page = browser.find_element(By.TAG_NAME, "main").text
    for code in ("customer", "mango_dtmf", "accepted", "events/", "call-1", "UTC", "08:26"):
        assert code not in page, code
    assert fits(browser) and axe_problems(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "call-words-phone.png"))
    browser.set_window_size(1280, 900)


def test_the_header_folds_into_a_menu_on_a_phone_and_keeps_the_unread_badge_in_view(browser, busy_console):
    """At 390 px the header is the brand, «Меню» and the notifications link with its badge; the menu opens
    (no script: a <details>) onto the same links a desktop shows in one row, the current page marked."""
    from selenium.webdriver.common.by import By

    log_in(browser, busy_console, "sam")
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{busy_console}/calls")
        menu = browser.find_element(By.CSS_SELECTOR, "header details.menu summary")
        reports = browser.find_element(By.CSS_SELECTOR, "header nav a[href='/reports']")
        assert menu.is_displayed() and menu.text == "Меню"
        unread = browser.find_element(By.ID, "unread")
        logout = browser.find_element(By.CSS_SELECTOR, "header form button")
        assert unread.is_displayed() and unread.text == "60"  # in view with the menu closed
        assert not reports.is_displayed() and not logout.is_displayed()
        header = browser.find_element(By.TAG_NAME, "header").rect
        assert header["height"] < 80  # one band, not four wrapped rows
        menu.click()
        assert reports.is_displayed() and logout.is_displayed()
        current = browser.find_element(By.CSS_SELECTOR, "header nav [aria-current=page]")
        assert current.text == "Звонки"
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / "menu-open-phone.png"))
        reports.click()
        wait_for(browser, at("/reports"), "the reports page from the phone's menu")
        assert browser.find_element(By.CSS_SELECTOR, "header nav [aria-current=page]").get_attribute("href").endswith(
            "/reports")
        assert not browser.find_element(By.CSS_SELECTOR, "header nav a[href='/calls']").is_displayed()  # folded again
    finally:
        browser.set_window_size(1280, 900)
    # On a desktop the same nav is one row and there is no menu to open.
    browser.get(f"{busy_console}/calls")
    assert not browser.find_element(By.CSS_SELECTOR, "header details.menu summary").is_displayed()
    assert browser.find_element(By.CSS_SELECTOR, "header nav a[href='/reports']").is_displayed()
