"""The rating link's figures on /reports in a real Chromium at 360 px: each row a card with every figure under
its name, nothing sticking out sideways, no serious accessibility finding (axe-core)."""
import pytest

from connector.core.users import add_user
from tests.e2e.test_browser import PASSWORD, SCREENSHOTS, axe_problems, browser, fits, log_in  # noqa: F401
from tests.fakes.server import serving
from tests.test_rating_link_reports import known_calls  # noqa: F401 (a fixture)

PHONE = (360, 740)


@pytest.fixture
def reports_console(app, db, known_calls, monkeypatch):  # noqa: F811 (the fixture imported above)
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "sam", "supervisor", PASSWORD)
    with serving(app) as url:
        yield url


def card(browser, row) -> list[str]:
    """A table row as a phone shows it: its cells one under another, each value after its name (the cell's
    ::before), and all of it inside the screen's width."""
    cells = row.find_elements("css selector", "td")
    assert [c.rect["y"] for c in cells] == sorted(c.rect["y"] for c in cells) and len({c.rect["y"] for c in cells}) \
        == len(cells), "the cells stand one under another"
    assert all(c.rect["x"] >= 0 and c.rect["x"] + c.rect["width"] <= PHONE[0] for c in cells)
    names = [browser.execute_script("return getComputedStyle(arguments[0], '::before').content", c) for c in cells]
    return [f"{name.strip(chr(34))}: {c.text}" for name, c in zip(names, cells)]


@pytest.mark.parametrize("lang", ["ru", "en"])
def test_the_channels_and_the_funnel_read_on_a_phone(browser, reports_console, lang):  # noqa: F811
    from selenium.webdriver.common.by import By

    log_in(browser, reports_console, "sam")
    browser.set_window_size(*PHONE)
    browser.get(f"{reports_console}/reports?lang={lang}")
    channel = browser.find_elements(By.CSS_SELECTOR, "#report-channels tbody tr")[2]
    funnel = browser.find_elements(By.CSS_SELECTOR, "#report-funnel tbody tr")[-1]
    if lang == "ru":
        assert card(browser, channel) == ["Канал: ссылка в SMS", "Оценено: 2", "Можно было оценить: 13",
                                          "Отклик, %: 15.4"]
        assert card(browser, funnel) == ["Шаг: Оценено", "Запросов: 2", "От предыдущего шага, %: 66.7",
                                         "От «К отправке», %: 20.0"]
    else:
        assert card(browser, channel) == ["Channel: SMS link", "Rated: 2", "Could be rated: 13",
                                          "Response rate, %: 15.4"]
    assert fits(browser) and axe_problems(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.execute_script("arguments[0].scrollIntoView()", channel)
    browser.save_screenshot(str(SCREENSHOTS / f"reports-rating-link-{lang}-360.png"))
    browser.set_window_size(1280, 900)
