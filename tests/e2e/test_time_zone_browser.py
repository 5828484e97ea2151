"""An admin chooses the account's time zone on a phone (390 px), in Russian, in a real headless Chromium: the
card names the zone in force and where it comes from, a zone that is none is refused beside the field, the
chosen one is saved, and the calls list then shows its times in it."""
from __future__ import annotations

from urllib.parse import urlsplit

from tests.e2e.test_browser import (SCREENSHOTS, axe_problems, browser, busy_console, fits, log_in,  # noqa: F401
                                    wait_for)


def test_an_admin_chooses_yekaterinburg_on_a_phone(browser, busy_console):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.set_window_size(390, 844)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(browser, busy_console, "ann")
    # The calls of busy_console began at 08:26 UTC on 22 November 2025: 11:26 in Moscow.
    assert "22.11.2025, 11:26" in browser.find_element(By.ID, "calls").text
    browser.get(f"{busy_console}/settings#time-zone")
    card = browser.find_element(By.ID, "time-zone")
    assert card.find_element(By.TAG_NAME, "h2").text == "Часовой пояс"
    assert browser.find_element(By.ID, "time-zone-in-force").text.startswith(
        "Действует Москва (UTC+3) из переменной окружения CONSOLE_TIMEZONE")
    choice = Select(browser.find_element(By.ID, "time-zone-name"))
    assert choice.first_selected_option.text == "Москва (UTC+3)"
    assert {"Калининград (UTC+2)", "Петропавловск-Камчатский (UTC+12)", "Минск (UTC+3)", "Ташкент (UTC+5)"} \
        <= {o.text for o in choice.options}

    # A forged choice (the page offers none that is not a zone): refused beside the field, nothing saved.
    browser.execute_script("const o = document.createElement('option'); o.value = 'Mars/Olympus';"
                           "o.text = 'Mars'; document.getElementById('time-zone-name').add(o);")
    Select(browser.find_element(By.ID, "time-zone-name")).select_by_value("Mars/Olympus")
    browser.find_element(By.CSS_SELECTOR, "#time-zone-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "time-zone-problem"), "the refusal")
    assert browser.find_element(By.ID, "time-zone-problem").text.startswith("Такого часового пояса нет")
    assert browser.find_element(By.ID, "time-zone-name").get_attribute("aria-invalid") == "true"
    assert fits(browser), "the refused page sticks out sideways at 390 px"
    assert axe_problems(browser) == []

    Select(browser.find_element(By.ID, "time-zone-name")).select_by_visible_text("Екатеринбург (UTC+5)")
    browser.find_element(By.CSS_SELECTOR, "#time-zone-form button[type=submit]").click()
    wait_for(browser, lambda d: "zone_saved=1" in urlsplit(d.current_url).query, "the zone saved")
    assert browser.find_element(By.ID, "time-zone-saved").text.startswith("Часовой пояс сохранён")
    assert browser.find_element(By.ID, "time-zone-in-force").text.startswith(
        "Действует Екатеринбург (UTC+5): выбран в консоли")
    assert Select(browser.find_element(By.ID, "time-zone-name")).first_selected_option.text == "Екатеринбург (UTC+5)"
    browser.execute_script("document.getElementById('time-zone').scrollIntoView()")
    browser.save_screenshot(str(SCREENSHOTS / "time-zone-ru-phone.png"))
    assert fits(browser), "the settings page sticks out sideways at 390 px"
    assert axe_problems(browser) == []

    browser.get(f"{busy_console}/calls")
    assert "22.11.2025, 13:26" in browser.find_element(By.ID, "calls").text  # two hours later than Moscow
