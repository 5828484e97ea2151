"""The public rating page in a real headless Chromium (issue #19): a customer opens the SMS's link on a phone
(360 px) or a desktop, in Russian or English (as the browser asks), rates with the keyboard only and sees the
thanks; axe-core finds nothing serious before or after; and on a throttled phone profile (400 kbit/s, 400 ms
latency, a CPU four times slower) the page is one small request with nothing else to fetch
(`bench/rating_page.py` times it). Skipped, saying why, without Chromium
(REQUIRE_BROWSER=1 makes that a failure), as the other browser tests."""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from connector.core.models import Call, RatingRequest
from connector.inbound.link import settings as link_settings
from connector.inbound.link.rules import token_for, token_hash
from tests.conftest import MangoPoster, summary
from tests.e2e.test_browser import SCREENSHOTS, axe_problems, browser, fits, wait_for  # noqa: F401
from tests.fakes.server import serving

SIZES = {"phone": (360, 740), "desktop": (1366, 900)}
WORDS = {"ru": {"title": "Оцените разговор — Наша компания", "legend": "Как вы оцените разговор?",
                "thanks": "Спасибо за оценку!", "bad": "Плохо"},
         "en": {"title": "Rate the conversation — Our company", "legend": "How would you rate the conversation?",
                "thanks": "Thank you for your rating!", "bad": "Bad"}}


def sent_request(app) -> str:
    """One call with a sent rating request: the path of its link (`bench/rating_page.py` uses it too)."""
    assert MangoPoster(app.test_client())("events/summary", summary("call-1")).status_code == 200
    now = datetime.now(timezone.utc)
    with app.extensions["connector"].db.transaction() as s:
        call = s.scalars(select(Call).where(Call.entry_id == "call-1")).one()
        request = RatingRequest(call_row=call.id, number="79001234567", line_number=call.line_number, status="sent",
                                due_at=now, sent_at=now, expires_at=now + timedelta(days=3))
        s.add(request)
        s.flush()
        token = token_for(app.extensions["connector"].config.SECRET_KEY, request.id)
        request.token_hash = token_hash(token)
    return f"/r/{token}"


@pytest.fixture
def rating_link(app):
    """The connector over real HTTP with one call and a sent rating request: its link."""
    path = sent_request(app)
    with serving(app) as url:
        yield url + path


@contextmanager
def asking_for(driver, language: str):
    """The browser's Accept-Language for the block (the run's one Chromium keeps no such setting after it)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"Accept-Language": language}})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})


@contextmanager
def slow_phone(driver):
    """Chrome's own throttling: 400 kbit/s each way, 400 ms latency, the CPU four times slower."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
        "offline": False, "latency": 400, "downloadThroughput": 400 * 1000 / 8, "uploadThroughput": 400 * 1000 / 8})
    driver.execute_cdp_cmd("Emulation.setCPUThrottlingRate", {"rate": 4})
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Network.emulateNetworkConditions", {
            "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
        driver.execute_cdp_cmd("Emulation.setCPUThrottlingRate", {"rate": 1})


def press(driver, *keys) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*keys).perform()


def focused(driver) -> str:
    return driver.execute_script("const e = document.activeElement;"
                                 "return e.tagName.toLowerCase() + (e.type ? ':' + e.type : '') +"
                                 " (e.name ? ':' + e.name : '') + (e.value && e.type === 'radio' ? ':' + e.value : '')")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("language", WORDS)
def test_a_customer_rates_with_the_keyboard_only(browser, rating_link, language, size):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    words = WORDS[language]
    browser.set_window_size(*SIZES[size])
    with asking_for(browser, f"{language},{'ru' if language == 'en' else 'en'};q=0.5"):
        browser.get(rating_link)
        assert browser.title == words["title"]
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == language
        assert browser.find_element(By.TAG_NAME, "legend").text == words["legend"]
        assert fits(browser), f"the page sticks out sideways at {size} width"
        assert axe_problems(browser) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SCREENSHOTS / f"rating-page-{language}-{size}.png"))

        for _ in range(5):  # past the language link, into the scale
            press(browser, Keys.TAB)
            if focused(browser).startswith("input:radio"):
                break
        assert focused(browser) == "input:radio:answer:1"  # good comes first
        press(browser, Keys.ARROW_DOWN)  # the next answer of the group: bad, chosen as focus moves
        assert focused(browser) == "input:radio:answer:0"
        press(browser, Keys.TAB)
        assert focused(browser) == "textarea:textarea:comment"
        press(browser, "Долго ждал ответа" if language == "ru" else "I waited too long")
        press(browser, Keys.TAB)
        assert focused(browser) == "input:checkbox:do_not_contact"
        press(browser, Keys.TAB)
        assert focused(browser).startswith("button:submit")
        press(browser, Keys.ENTER)
        wait_for(browser, lambda d: d.find_elements(By.ID, "rating-given"), "the thanks")

        assert browser.find_element(By.TAG_NAME, "h1").text == words["thanks"]
        assert browser.find_element(By.ID, "rating-given").text == words["bad"]
        assert browser.find_element(By.ID, "comment-given").text in ("Долго ждал ответа", "I waited too long")
        assert fits(browser) and axe_problems(browser) == []
        browser.save_screenshot(str(SCREENSHOTS / f"rating-page-thanks-{language}-{size}.png"))


@pytest.mark.parametrize("scale, offered", [("five", 5), ("survey", 10)])
def test_the_numbered_scales_fit_a_phone(browser, rating_link, db, scale, offered):  # noqa: F811
    from selenium.webdriver.common.by import By

    with db.transaction() as s:
        link_settings.save(s, {"scale": scale, "company": "ООО «Ромашка»"}, "http://127.0.0.1:8080", "test")
    browser.set_window_size(*SIZES["phone"])
    with asking_for(browser, "ru-RU,ru"):
        browser.get(rating_link)
    assert "1 — очень плохо, %d — отлично" % offered in browser.page_source
    choices = browser.find_elements(By.CSS_SELECTOR, "input[name=answer]")
    assert [c.get_attribute("value") for c in choices] == [str(n) for n in range(1, offered + 1)]
    assert browser.find_element(By.CLASS_NAME, "company").text == "ООО «Ромашка»"
    assert all(c.find_element(By.XPATH, "..").size["height"] >= 44 for c in choices)  # a finger's target
    assert fits(browser) and axe_problems(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"rating-page-{scale}-ru-phone.png"))


def test_the_page_is_one_small_request_with_nothing_else_to_fetch(browser, rating_link):  # noqa: F811
    """What keeps the page fast on a slow phone: one request of a few kilobytes, no stylesheet, font, image or
    script to fetch after it. How fast that is (under a second on a throttled phone profile) is measured by
    `bench/rating_page.py` beside a bare page of the same size, not timed here: a loaded test machine is no phone."""
    browser.set_window_size(*SIZES["phone"])
    with slow_phone(browser):
        browser.get(rating_link)
        size = browser.execute_script("return performance.getEntriesByType('navigation')[0].transferSize")
        fetched = browser.execute_script("return performance.getEntriesByType('resource').map(r => r.name)")
        scripts = browser.execute_script("return document.scripts.length")
    assert 0 < size < 8 * 1024 and fetched == [] and scripts == 0


def test_a_customer_opts_out_without_rating_on_a_phone(browser, rating_link, db):  # noqa: F811
    """Only «Больше не присылать мне такие сообщения» ticked and sent: the number is listed, nothing is rated,
    the page says so and still offers the rating."""
    from selenium.webdriver.common.by import By

    from connector.core.models import DoNotContact, Score

    browser.set_window_size(*SIZES["phone"])
    with asking_for(browser, "ru-RU,ru"):
        browser.get(rating_link)
        browser.find_element(By.CSS_SELECTOR, "label[for=do-not-contact]").click()
        assert browser.find_element(By.ID, "do-not-contact").is_selected()
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "not-contacted"), "the opt-out's page")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Вы отказались от сообщений"
    assert browser.find_element(By.ID, "not-contacted").text == "Мы больше не будем присылать вам такие сообщения."
    assert browser.find_elements(By.CSS_SELECTOR, "input[name=answer]")  # rating is still possible
    assert not browser.find_elements(By.ID, "problem") and not browser.find_elements(By.ID, "do-not-contact")
    assert fits(browser), "the page sticks out sideways at phone width"
    assert axe_problems(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "rating-page-opted-out-ru-phone.png"))
    with db.reading() as s:
        assert s.get(DoNotContact, "79001234567").source == "customer"
        assert s.scalars(select(Score)).all() == []
