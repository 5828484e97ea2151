"""The «Оповещения» page in a real headless Chromium, with e-mail through a real SMTP server and the fake Telegram:
an admin sets their address and sends themselves a test message, links Telegram by the bot's deep link, has
a setting refused beside its field and routes a line to a supervisor; the supervisor sees only their own
channels. Both pages, as each of them sees it, have no serious or critical accessibility problem (axe-core) and
nothing sticking out sideways, in Russian and English, on a 360 px phone and on a desktop."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from connector.wiring import build_telegram_linker
from tests.e2e.test_browser import (SCREENSHOTS, axe_problems, browser, busy_console, fits, log_in,  # noqa: F401
                                    pictures_taken, wait_for)
from tests.fakes.smtp import smtp_settings
from tests.fakes.telegram import telegram_settings

SIZES = {"phone": (360, 740), "desktop": (1366, 900)}
CHAT = 700_100_300


@pytest.fixture
def config_overrides(smtp, telegram):
    return {**smtp_settings(smtp[1]), **telegram_settings(telegram)}


def submit(driver, form_id: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{form_id} button[type=submit]").click()


def check_every_width_and_language(driver, url: str, who: str, db_url: str) -> tuple[list, list]:
    from selenium.webdriver.common.by import By

    problems, overflowing = [], []
    for lang in ("ru", "en"):
        driver.get(f"{url}/alerts?lang={lang}")
        assert driver.find_element(By.TAG_NAME, "h1").text == {"ru": "Оповещения", "en": "Alerts"}[lang]
        for width_name, size in SIZES.items():
            driver.set_window_size(*size)
            problems += [f"{who} {lang} {width_name}: {p}" for p in axe_problems(driver)]
            if not fits(driver):
                overflowing.append(f"{who} {lang} {width_name}")
            if pictures_taken(db_url):
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(SCREENSHOTS / f"alerts-{who}-{lang}-{width_name}.png"))
                if driver.find_elements(By.ID, "rules"):
                    driver.execute_script("document.getElementById('rules').scrollIntoView()")
                    driver.save_screenshot(str(SCREENSHOTS / f"alerts-rules-{lang}-{width_name}.png"))
    return problems, overflowing


def test_an_admin_and_a_supervisor_set_their_alerts_at_phone_and_desktop_widths(browser, busy_console,  # noqa: F811
                                                                                 app, db, db_url, smtp, telegram):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    inbox = smtp[0]
    linker = build_telegram_linker(app.extensions["connector"].config, db)
    linker.run_once()  # the bot's name, which the deep link needs
    browser.set_window_size(*SIZES["phone"])
    log_in(browser, busy_console, "ann")
    browser.find_element(By.CSS_SELECTOR, "details.menu summary").click()
    browser.find_element(By.LINK_TEXT, "Оповещения").click()
    wait_for(browser, lambda d: urlsplit(d.current_url).path == "/alerts", "the alerts page")
    assert browser.find_element(By.ID, "channel-email-state").text == "адрес не указан"

    browser.find_element(By.ID, "alerts-email").send_keys("ann@example.ru")
    submit(browser, "email-form")
    wait_for(browser, lambda d: "done=email" in urlsplit(d.current_url).query, "the address saved")
    assert browser.find_element(By.ID, "channel-email-state").text.startswith("Адрес: ann@example.ru")
    browser.find_element(By.ID, "channel-email-test").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "channel-email-trial"), "the test message's outcome")
    assert browser.find_element(By.ID, "channel-email-trial").text == "Отправлено"
    assert [m["To"] for m in inbox.messages] == ["ann@example.ru"]

    browser.find_element(By.ID, "telegram-link-start").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "telegram-open"), "the deep link")
    opened = browser.find_element(By.ID, "telegram-open")
    assert opened.text == "Открыть Telegram" and fits(browser)
    code = opened.get_attribute("href").partition("start=")[2]
    assert axe_problems(browser) == []
    if pictures_taken(db_url):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.execute_script("document.getElementById('telegram-link-panel').scrollIntoView()")
        browser.save_screenshot(str(SCREENSHOTS / "alerts-telegram-link-ru-phone.png"))
    telegram.user_sends(CHAT, f"/start {code}")  # what the link's Start button sends
    assert linker.run_once() == 1
    browser.get(f"{busy_console}/alerts")
    assert browser.find_element(By.ID, "channel-telegram-state").text.startswith("подключён")

    cap = browser.find_element(By.ID, "rules-cap_per_hour")
    cap.clear()
    cap.send_keys("500")
    submit(browser, "alert-settings-form")
    wait_for(browser, lambda d: d.find_elements(By.ID, "rules-error-cap_per_hour"), "the refusal")
    assert browser.find_element(By.ID, "rules-error-cap_per_hour").text.startswith("Целое число от 0 до 100")
    assert browser.find_element(By.ID, "rules-cap_per_hour").get_attribute("aria-invalid") == "true"
    assert fits(browser) and axe_problems(browser) == []

    Select(browser.find_element(By.ID, "route-user")).select_by_visible_text("sam")
    Select(browser.find_element(By.ID, "route-line")).select_by_visible_text("74950000001")
    submit(browser, "route-form")
    wait_for(browser, lambda d: "done=route_added" in urlsplit(d.current_url).query, "the route added")
    assert "sam" in browser.find_element(By.ID, "routes-table").text

    problems, overflowing = check_every_width_and_language(browser, busy_console, "admin", db_url)
    browser.delete_all_cookies()
    browser.set_window_size(*SIZES["desktop"])
    log_in(browser, busy_console, "sam")
    browser.get(f"{busy_console}/alerts")
    assert browser.find_elements(By.ID, "rules") == []
    assert browser.find_element(By.ID, "channel-telegram-state").text == "не подключён"
    more_problems, more_overflowing = check_every_width_and_language(browser, busy_console, "supervisor", db_url)
    problems += more_problems
    overflowing += more_overflowing
    assert problems == [], "\n".join(problems)
    assert overflowing == [], overflowing
