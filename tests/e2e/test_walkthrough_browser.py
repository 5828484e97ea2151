"""The README's walk-through ("Try it in one minute"), one test per role, in a real headless Chromium at a
desktop's 1366 px and a phone's 390 px: `connector demo`'s calls and accounts, then what the README says each
demo account does, clicking where a person clicks (the header's menu, the filter form, the buttons). On every
page the walk meets: nothing sticks out sideways and axe-core finds no serious or critical problem. Each walk
also checks the defects a new user hit (issue #17) stay fixed where that role meets them. Screenshots of each
step go to var/screenshots/walk-*.png (not tracked).

Skipped, saying why, without Chromium (REQUIRE_BROWSER=1 makes that a failure)."""
from __future__ import annotations

import io
import re
from datetime import datetime
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pytest
import requests

from commands import demo as made_up
from connector.core.links import link_is_valid
from tests.conftest import ADMIN_TOKEN
from tests.e2e.test_browser import (SCREENSHOTS, WIDTHS, at, axe_problems, browser, call_ids, fits, log_in,  # noqa: F401
                                    pictures_taken, wait_for)
from tests.fakes.server import serving

UNTIL = datetime(2026, 11, 20, 18, 30, tzinfo=ZoneInfo("Europe/Moscow"))  # a Friday evening, as `--until` gives it
CALLS = 300  # the README's 2000, fewer for time: the same spread over six operators and three lines


@pytest.fixture
def demo_console(app, db, monkeypatch):
    """A fresh install filled as `connector demo 300 --until "2026-11-20 18:30"` fills it (the same functions),
    served over real HTTP; the demo accounts' passwords as `demo` prints them."""
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    config = app.extensions["connector"].config
    calls = made_up.demo_calls(CALLS, seed=1, until=UNTIL, days=14, zone=UNTIL.tzinfo, scale=(1, 10))
    outcome = made_up.fill(config, db, calls)
    passwords = {name: password for name, _, _, password in outcome.accounts}
    with serving(app) as url:
        yield url, passwords, db


def unread_of(db, username: str) -> int:
    from sqlalchemy import func, select

    from connector.core.models import Notification, User

    with db.reading() as s:
        return s.scalar(select(func.count()).select_from(Notification).join(User, User.id == Notification.user_id)
                        .where(User.username == username, Notification.read.is_(False)))


def api(url: str, path: str) -> dict:
    """What the JSON API says (the admin token): the walk compares the pages with it."""
    answer = requests.get(f"{url}/api/v1/{path}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


class Walk:
    """One person in the browser at one width: each page they reach is checked as a person meets it."""

    def __init__(self, driver, url: str, who: str, width: str, pictures: bool = True):
        self.driver, self.url, self.who, self.width, self.pictures = driver, url, who, width, pictures
        self.problems: list[str] = []
        driver.set_window_size(*WIDTHS[width])

    def check(self, step: str) -> None:
        """Nothing sideways, no serious or critical axe-core finding, and a screenshot of the step (see
        pictures_taken)."""
        where = f"{self.who} {self.width} {step}"
        if not fits(self.driver):
            self.problems.append(f"{where}: the page is wider than the screen")
        self.problems += [f"{where}: {p}" for p in axe_problems(self.driver)]
        if not self.pictures:
            return
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(SCREENSHOTS / f"walk-{self.who}-{self.width}-{step}.png"))

    def menu(self, label: str) -> None:
        """Follow a header link as a person does: on a phone the header folds its links into a menu, which
        is opened first."""
        from selenium.webdriver.common.by import By

        header = self.driver.find_element(By.TAG_NAME, "header")
        link = next(a for a in header.find_elements(By.TAG_NAME, "a")  # shown or folded away
                    if a.get_attribute("textContent").strip().startswith(label))
        if not link.is_displayed():
            header.find_element(By.TAG_NAME, "summary").click()
        assert link.is_displayed(), f"{label} in the header at {self.width} width"
        before = self.driver.current_url
        link.click()
        wait_for(self.driver, lambda d: d.current_url != before or urlsplit(before).path ==
                 urlsplit(link.get_attribute("href") or "").path, f"{label} opened")

    def field(self, name: str):
        """A filter's field, as a person reaches it: on a phone the filters fold behind a switch, opened first."""
        from selenium.webdriver.common.by import By

        field = self.driver.find_element(By.NAME, name)
        if not field.is_displayed():
            self.driver.find_element(By.CSS_SELECTOR, "details.fold summary").click()
        assert field.is_displayed(), f"the {name} filter at {self.width} width"
        return field

    def field_shown(self, name: str) -> bool:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.NAME, name).is_displayed()

    def text(self, css: str) -> str:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def column(self, css: str) -> list[str]:
        from selenium.webdriver.common.by import By

        return [e.get_attribute("textContent").strip() for e in self.driver.find_elements(By.CSS_SELECTOR, css)]


def walking(driver, demo_console, who: str, username: str, width: str) -> tuple[Walk, str, object]:
    """A walk begun: `username` of `demo` logged in at `width`; the walk, the connector's address, its database."""
    url, passwords, db = demo_console
    walk = Walk(driver, url, who, width, pictures_taken(db.engine.url.render_as_string()))
    log_in(driver, url, username, passwords[username])
    return walk, url, db


def open_notifications(walk: Walk, db, username: str) -> None:
    """The header's badge counts the person's unread notifications; its link opens them, saying the same."""
    badge = int(walk.text("#unread"))
    assert badge == unread_of(db, username) > 0
    walk.menu("Уведомления")
    wait_for(walk.driver, at("/notifications"), "the notifications")
    assert walk.text("#unread-total") == f"Непрочитанных: {badge}"


def session_of(driver) -> requests.Session:
    """The browser's session for a download Selenium cannot read: the same cookies, so the same person."""
    downloads = requests.Session()
    for cookie in driver.get_cookies():
        downloads.cookies.set(cookie["name"], cookie["value"])
    return downloads


def report_rows(walk: Walk, by: str) -> list[list[str]]:
    from selenium.webdriver.common.by import By

    return [[td.get_attribute("textContent").strip() for td in row.find_elements(By.TAG_NAME, "td")]
            for row in walk.driver.find_elements(By.CSS_SELECTOR, f"#report-{by} tbody tr")]


RATED, POSITIVE, NEGATIVE = 5, 8, 9  # the reports' columns: Оценено, Довольны, Недовольны


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_supervisor_finds_low_scores_reviews_one_exports_and_reads_the_reports(browser, demo_console, width):  # noqa: F811
    from openpyxl import load_workbook
    from selenium.webdriver.common.by import By

    walk, url, db = walking(browser, demo_console, "supervisor", "demo-supervisor", width)
    # /calls lists the two weeks, newest first (as the API orders them).
    newest = api(url, "calls?per_page=1")
    assert call_ids(browser)[0] == newest["items"][0]["call_id"]
    assert walk.text("main p").startswith(f"Найдено: {newest['_meta']['total']}")
    walk.check("calls")

    # "Низкие оценки" keeps the scores below the threshold, each shown red.
    browser.find_element(By.ID, "low-scores").click()
    wait_for(browser, lambda d: "score_lte" in d.current_url, "the low scores")
    assert parse_qs(urlsplit(browser.current_url).query) == {"score_lte": ["8"]}
    scores = walk.column("#calls tbody td.low")
    assert scores and all(int(s) < 9 for s in scores)
    assert len(scores) == len(call_ids(browser))
    # ... and the filters narrow by operator, keeping the score filter.
    walk.field("operator").send_keys("106")
    browser.find_element(By.CSS_SELECTOR, "form.filters button[type=submit]").click()
    wait_for(browser, lambda d: "operator=106" in d.current_url, "the operator's low scores")
    assert set(walk.column("#calls tbody td.operator")) == {"Сергей Новиков (106)"}  # named as the PBX lists them
    if width == "phone":  # the filters folded again, saying how many are set
        assert walk.text("details.fold summary") == "Фильтры (2)" and not walk.field_shown("operator")
    low_of_106 = api(url, "calls?operator=106&score_lte=8&per_page=1")["_meta"]["total"]
    assert walk.text("main p").startswith(f"Найдено: {low_of_106}")
    walk.check("calls-low-106")

    # Excel exports the filtered list with both scores, in Russian, the start a real date.
    export = browser.find_element(By.LINK_TEXT, "Excel").get_attribute("href")
    downloaded = session_of(browser).get(export, timeout=30)
    sheet = load_workbook(io.BytesIO(downloaded.content)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert sheet.title == "Звонки" and len(rows) - 1 == low_of_106
    header = rows[0]
    assert {"Звонок", "Начало", "Оценка клиента", "Оценка супервизора"} <= set(header)
    assert all(isinstance(r[header.index("Начало")], datetime) for r in rows[1:])
    # ... and CSV opens in Russian Excel in columns: a byte-order mark, ";" between fields, local times.
    csv = session_of(browser).get(browser.find_element(By.LINK_TEXT, "CSV").get_attribute("href"), timeout=30)
    lines = csv.content.decode("utf-8").splitlines()
    assert lines[0].startswith("\ufeffЗвонок;Начало;") and len(lines) - 1 == low_of_106
    # Times as people write them, in Moscow: no UTC ISO, no microseconds.
    assert all(re.fullmatch(r"\d\d\.\d\d\.2026, \d\d:\d\d", t) for t in walk.column("#calls tbody td:first-child a"))

    # Open a call: titled in words, the recording behind a signed link; a review is added below.
    browser.find_element(By.CSS_SELECTOR, "#calls tbody a").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "player"), "the call page")
    call_id = urlsplit(browser.current_url).path.rsplit("/", 1)[1]
    assert browser.find_element(By.TAG_NAME, "h1").text.startswith("Звонок ")
    assert call_id not in browser.find_element(By.TAG_NAME, "main").text
    source = urlsplit(browser.find_element(By.ID, "player").get_attribute("src"))
    signed = {k: v[0] for k, v in parse_qs(source.query).items()}
    assert link_is_valid("test-secret-key", call_id, signed["exp"], signed["sig"])
    browser.find_element(By.NAME, "score").send_keys("6")
    browser.find_element(By.NAME, "comment").send_keys("Не представился")
    browser.find_element(By.CSS_SELECTOR, "#review-form button").click()
    wait_for(browser, lambda d: "demo-supervisor: 6" in d.find_element(By.ID, "reviews").text, "the review")
    assert browser.find_element(By.ID, "supervisor-score").text == "6"
    walk.check("call-reviewed")

    # /reports compares the six operators and the three lines; the parts of the rated calls add up.
    walk.menu("Отчёты")
    wait_for(browser, at("/reports"), "the reports")
    operators, lines = report_rows(walk, "operator"), report_rows(walk, "line")
    assert [r[0] for r in operators] == ["Ирина Петрова (101)", "Алексей Смирнов (102)", "Мария Кузнецова (103)",
                                         "Дмитрий Волков (104)", "Елена Соколова (105)", "Сергей Новиков (106)", "Итого"]
    assert len(lines) == 4 and lines[-1][0] == "Итого"
    for row in operators + lines:
        assert int(row[RATED]) == int(row[POSITIVE]) + int(row[NEGATIVE]), row
    assert browser.find_elements(By.CSS_SELECTOR, "#distribution rect")
    assert browser.find_elements(By.CSS_SELECTOR, "#trend polyline")
    walk.check("reports")

    # "Уведомления" counts the low scores the supervisor was told of; all can be marked read at once.
    open_notifications(walk, db, "demo-supervisor")
    walk.check("notifications")
    browser.find_element(By.CSS_SELECTOR, "#mark-all-read button").click()
    wait_for(browser, lambda d: not d.find_elements(By.ID, "unread"), "every notification read")

    # The language switch keeps the filters, and the page reads in English.
    browser.get(f"{url}/calls?score_lte=4")
    browser.find_element(By.ID, "lang-en").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Calls", "the list in English")
    assert parse_qs(urlsplit(browser.current_url).query) == {"score_lte": ["4"], "lang": ["en"]}
    walk.check("calls-en")
    assert walk.problems == [], "\n".join(walk.problems)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_an_operator_sees_only_their_own_calls_figures_and_notifications(browser, demo_console, width):  # noqa: F811
    from selenium.webdriver.common.by import By

    walk, url, db = walking(browser, demo_console, "operator", "demo-operator-101", width)
    mine = api(url, "calls?operator=101&per_page=100")
    assert walk.text("main p").startswith(f"Найдено: {mine['_meta']['total']}")
    assert set(walk.column("#calls tbody td.operator")) == {"Ирина Петрова (101)"}
    assert not browser.find_elements(By.NAME, "operator")  # nothing to filter: only their own calls
    walk.check("calls")

    # Another operator's call is "not found", as if it did not exist, in the console with its header.
    theirs = api(url, "calls?operator=102&per_page=1")["items"][0]["call_id"]
    browser.get(f"{url}/calls/{theirs}")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Не найдено"
    assert theirs not in browser.find_element(By.TAG_NAME, "main").text
    assert browser.find_element(By.TAG_NAME, "header").text
    walk.check("another-operators-call")
    browser.get(f"{url}/settings")  # an admin's page: refused as a page in words
    assert browser.find_element(By.TAG_NAME, "h1").text == "Нет доступа"
    walk.check("forbidden")

    # Their own row in /reports.
    browser.get(f"{url}/calls")
    walk.menu("Отчёты")
    wait_for(browser, at("/reports"), "the reports")
    rows = report_rows(walk, "operator")
    assert [r[0] for r in rows] == ["Ирина Петрова (101)", "Итого"]
    assert rows[0][1:] == rows[1][1:]  # their calls are all the report counts
    walk.check("reports")

    # A notification for each review of their calls; a reviewed call shows the review, and no form.
    open_notifications(walk, db, "demo-operator-101")
    assert set(walk.column("#notifications td.operator")) == {"Ирина Петрова (101)"}
    assert {kind.removeprefix("Новое: ") for kind in walk.column("#notifications tbody td:nth-child(2)")} == \
        {"Разбор вашего звонка"}
    walk.check("notifications")
    browser.find_element(By.CSS_SELECTOR, "#notifications tbody a").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "reviews"), "a reviewed call")
    assert "demo-supervisor:" in browser.find_element(By.ID, "reviews").text
    assert not browser.find_elements(By.ID, "review-form")
    walk.check("call")
    assert walk.problems == [], "\n".join(walk.problems)


@pytest.mark.parametrize("width", list(WIDTHS))
def test_the_admin_moves_the_threshold_and_the_list_and_reports_follow(browser, demo_console, width):  # noqa: F811
    from selenium.webdriver.common.by import By

    walk, url, db = walking(browser, demo_console, "admin", "demo-admin", width)
    assert browser.find_element(By.ID, "low-scores").text == "Низкие оценки (ниже 9)"

    # /settings: the threshold moves from 9 to 7.
    walk.menu("Настройки")
    wait_for(browser, at("/settings"), "the settings")
    walk.check("settings")
    threshold = browser.find_element(By.ID, "max_threshold")
    threshold.clear()
    threshold.send_keys("7")
    browser.find_element(By.CSS_SELECTOR, "#settings-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "saved"), "the settings saved")

    # "Низкие оценки" and the reports follow it.
    walk.menu("Звонки")
    wait_for(browser, at("/calls"), "the calls")
    browser.find_element(By.ID, "low-scores").click()
    wait_for(browser, lambda d: "score_lte=6" in d.current_url, "the low scores under the new threshold")
    below_7 = api(url, "calls?score_lte=6&per_page=1")["_meta"]["total"]
    assert walk.text("main p").startswith(f"Найдено: {below_7}")
    walk.menu("Отчёты")
    wait_for(browser, at("/reports"), "the reports")
    totals = report_rows(walk, "operator")[-1]
    assert int(totals[NEGATIVE]) == below_7 and int(totals[RATED]) == int(totals[POSITIVE]) + below_7
    assert "оценка ниже 7 — недоволен" in walk.text("#split-rule")

    # A line given only its own threshold stays under the general switch (a defect a user hit).
    walk.menu("Настройки")
    wait_for(browser, at("/settings"), "the settings")
    form = browser.find_element(By.ID, "line-form")
    form.find_element(By.NAME, "line_number").send_keys("78000000003")
    form.find_element(By.NAME, "max_threshold").send_keys("5")
    form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "line-saved"), "the line saved")
    row = next(r for r in browser.find_elements(By.CSS_SELECTOR, "#lines tbody tr") if "78000000003" in r.text)
    assert row.find_element(By.CSS_SELECTOR, ".enabled").text == "как в общих: включена"
    assert row.find_element(By.CSS_SELECTOR, ".threshold").text == "5"
    walk.check("settings-line")

    # /users lists the people; /audit says who changed what, in words.
    walk.menu("Пользователи")
    wait_for(browser, at("/users"), "the users")
    page = browser.find_element(By.TAG_NAME, "main").text
    assert all(name in page for name in demo_console[1])  # every demo account
    walk.check("users")
    walk.menu("Журнал")
    wait_for(browser, at("/audit"), "the audit log")
    changes = walk.column("#audit tbody tr")
    assert any("Общие настройки" in c and "9 → 7" in c and "demo-admin" in c for c in changes), changes
    assert any("Настройки линии 78000000003" in c for c in changes), changes
    walk.check("audit")
    assert walk.problems == [], "\n".join(walk.problems)
