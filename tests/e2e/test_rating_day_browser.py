"""Issue #19's simulated day, end to end: calls across a day, the planner and the SMS worker against a fake
MANGO over real HTTP, one customer rating in Chromium and the others by form posts, then amoCRM's worker
against its fake; a supervisor then finds the rating in the console and the reports. Each effect once.
Skipped, saying why, without Chromium (REQUIRE_BROWSER=1 makes that a failure), as the other browser tests."""
from __future__ import annotations

from collections import Counter
from datetime import date, timedelta

from connector.core.users import add_user
from tests.e2e.test_browser import PASSWORD, axe_problems, browser, log_in, wait_for  # noqa: F401
from tests.e2e.test_rating_page_browser import asking_for
from tests.fakes.server import serving
from tests.rating_day import Day


def test_a_day_of_rating_by_link_ends_in_the_crm_the_console_and_the_reports_once(browser, db_url,  # noqa: F811
                                                                                   monkeypatch):
    from selenium.webdriver.common.by import By

    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    day = date.today() - timedelta(days=1)
    with Day(day, 14, database_url=db_url if db_url.startswith("postgresql") else None) as d:
        d.run()
        figures = d.count()
        local_hours = [at.hour + at.minute / 60 for _, at in figures.sent_local]
        assert figures.sent_local and all(9 <= hour < 21 for hour in local_hours)
        assert all(at - figures.ended_local[entry] >= timedelta(hours=2) for entry, at in figures.sent_local)
        assert figures.sms_commands == len(figures.sent_local) == figures.requests["delivered"]
        numbers = Counter(call.phone for call in d.calls for entry, _ in figures.sent_local if entry == call.entry_id)
        assert set(numbers.values()) == {1}  # the daily cap: one SMS a day to a number

        links = d.links()
        first, *others = sorted(links)
        with serving(d.app) as url, asking_for(browser, "ru-RU,ru"):
            browser.set_window_size(360, 740)
            browser.get(url + links[first])
            assert "Наша компания" not in browser.page_source and "ООО «Ромашка»" in browser.page_source
            browser.find_element(By.CSS_SELECTOR, "input[name=answer][value='0']").click()  # «Плохо»
            browser.find_element(By.NAME, "comment").send_keys("Долго ждал ответа")
            browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
            wait_for(browser, lambda b: b.find_elements(By.ID, "rating-given"), "the thanks")
            assert browser.find_element(By.ID, "rating-given").text == "Плохо"
            for i, entry in enumerate(others):
                assert d.rate(links[entry], i % 2) == 303
            d.deliver()
            figures = d.count()
            rated_low = 1 + sum(1 for i, _ in enumerate(others) if i % 2 == 0)
            assert figures.rated == len(links)
            assert set(figures.crm_calls.values()) == {1} and len(figures.crm_calls) == len(d.calls)
            assert len(figures.crm_scores) == rated_low and set(figures.crm_scores.values()) == {1}
            assert figures.crm_tag_adds == Counter({1: rated_low})

            with d.db.transaction() as s:
                add_user(s, "sam", "supervisor", PASSWORD)
            browser.set_window_size(1366, 900)
            log_in(browser, url, "sam")
            browser.get(f"{url}/calls/{first}")
            block = browser.find_element(By.ID, "rating-request").text
            assert "доставлен" in block and "Плохо" in block and "Долго ждал ответа" in block
            assert "ссылка в SMS" in browser.find_element(By.TAG_NAME, "main").text  # the score's channel
            timeline = browser.find_element(By.ID, "timeline").text
            for step in ("SMS со ссылкой для оценки: выполнено", "SMS со ссылкой доставлено",
                         "клиент открыл ссылку для оценки", "клиент оценил звонок по ссылке"):
                assert step in timeline, step
            assert axe_problems(browser) == []
            browser.get(f"{url}/reports?date_from={day.isoformat()}&date_to={day + timedelta(days=1)}")  # «до (не включая)»
            funnel = browser.find_element(By.ID, "report-funnel").text
            assert f"Оценено {len(links)} 100" in funnel  # every delivered link was rated
            channels = browser.find_element(By.ID, "report-channels").text
            assert f"ссылка в SMS {len(links)} " in channels, channels  # rated through the link, of the rateable calls
