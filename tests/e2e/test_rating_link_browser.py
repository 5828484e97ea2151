"""An admin sets the rating link up and keeps the do-not-contact list in a real headless Chromium: a template
without {link} is refused beside its field, the fixed one is saved, a number is added; the settings page with
the card open and the list filled has no serious or critical accessibility problem (axe-core) and nothing
sticking out sideways, in Russian and English, on a 360 px phone and on a desktop."""
from __future__ import annotations

from urllib.parse import urlsplit

from tests.e2e.test_browser import (SCREENSHOTS, axe_problems, browser, busy_console, fits, log_in,  # noqa: F401
                                    pictures_taken, wait_for)

SIZES = {"phone": (360, 740), "desktop": (1366, 900)}


def test_an_admin_sets_up_the_rating_link_and_the_list_at_phone_and_desktop_widths(browser, busy_console,  # noqa: F811
                                                                                    db_url):
    from selenium.webdriver.common.by import By

    browser.set_window_size(*SIZES["phone"])
    log_in(browser, busy_console, "ann")
    browser.get(f"{busy_console}/settings#rating-link")
    card = browser.find_element(By.ID, "rating-link")
    assert card.find_element(By.TAG_NAME, "h2").text == "Оценка по ссылке (SMS)"
    assert card.get_attribute("open") is None  # off and never saved: folded to its line
    card.find_element(By.TAG_NAME, "summary").click()
    browser.find_element(By.ID, "link-enabled").click()
    template = browser.find_element(By.ID, "link-template")
    template.clear()
    template.send_keys("Оцените нас, пожалуйста")
    browser.find_element(By.CSS_SELECTOR, "#rating-link-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "link-error-template"), "the refusal")
    assert browser.find_element(By.ID, "link-error-template").text.startswith("В тексте должна быть {link}")
    assert browser.find_element(By.ID, "link-template").get_attribute("aria-invalid") == "true"
    assert fits(browser), "the refused card sticks out sideways at 360 px"
    assert axe_problems(browser) == []

    template = browser.find_element(By.ID, "link-template")
    template.clear()
    template.send_keys("Оцените разговор с {operator}: {link}")
    browser.find_element(By.CSS_SELECTOR, "#rating-link-form button[type=submit]").click()
    wait_for(browser, lambda d: "link_saved=1" in urlsplit(d.current_url).query, "the settings saved")
    assert browser.find_element(By.ID, "rating-link-saved").text == "Настройки оценки по ссылке сохранены."
    assert browser.find_element(By.ID, "rating-link-state").text == "— включена"

    number = browser.find_element(By.ID, "do-not-contact-number")
    number.send_keys("8 (916) 123-45-67")
    browser.find_element(By.CSS_SELECTOR, "#do-not-contact-form button[type=submit]").click()
    wait_for(browser, lambda d: "dnc=added" in urlsplit(d.current_url).query, "the number added")
    assert "+79161234567" in browser.find_element(By.ID, "do-not-contact-list").text

    problems, overflowing = [], []
    for lang in ("ru", "en"):
        browser.get(f"{busy_console}/settings?lang={lang}#rating-link")
        heading = browser.find_element(By.CSS_SELECTOR, "#rating-link h2").text
        assert heading == {"ru": "Оценка по ссылке (SMS)", "en": "Rating by link (SMS)"}[lang]
        for width_name, size in SIZES.items():
            browser.set_window_size(*size)
            problems += [f"{lang} {width_name}: {p}" for p in axe_problems(browser)]
            if not fits(browser):
                overflowing.append(f"{lang} {width_name}")
            if pictures_taken(db_url):
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                browser.execute_script("document.getElementById('rating-link').scrollIntoView()")
                browser.save_screenshot(str(SCREENSHOTS / f"rating-link-{lang}-{width_name}.png"))
    assert problems == [], "\n".join(problems)
    assert overflowing == [], overflowing
