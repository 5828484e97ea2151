"""An admin maps a PBX operator to an amoCRM user on a phone (390 px), in Russian, in a real headless Chromium
against the fake amoCRM: the choice is read from the CRM, saved, and the page then counts no one unmapped."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from app import create_app
from connector.core.models import Operator
from connector.core.users import add_user
from tests.conftest import make_config
from tests.e2e.test_browser import PASSWORD, SCREENSHOTS, axe_problems, browser, fits, log_in, wait_for  # noqa: F401
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving

TOKEN = "long-lived-test-token"


@pytest.fixture
def mapped_console(db_url, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    fake = FakeAmo(long_lived_token=TOKEN, people={5551: {"name": "Ирина Петрова"}, 7777: {"name": "Олег Смирнов"}})
    with serving(create_fake_app(fake)) as amo_url:
        app = create_app(make_config(db_url, CRM="amocrm", AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN,
                                     AMOCRM_USER_MAP="101:5551"))
        db = app.extensions["connector"].db
        with db.transaction() as s:
            add_user(s, "ann", "admin", PASSWORD)
            s.add(Operator(extension="101", name="Ирина Петрова", groups=[]))
            s.add(Operator(extension="102", name="Олег Смирнов", groups=[]))
        try:
            with serving(app) as url:
                yield url
        finally:
            db.dispose()


def test_an_admin_maps_an_operator_to_a_crm_user_on_a_phone(browser, mapped_console):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    browser.set_window_size(390, 844)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    log_in(browser, mapped_console, "ann")
    browser.get(f"{mapped_console}/settings#operators")
    section = browser.find_element(By.ID, "operators")
    assert section.find_element(By.TAG_NAME, "h2").text == "Операторы и пользователи CRM"
    # an operator without a CRM user needs the admin: the section is open, its line says how many
    assert section.get_attribute("open") == "true"
    assert section.find_element(By.TAG_NAME, "summary").text == \
        "Операторы и пользователи CRM — не сопоставлено: 1 из 2"
    assert browser.find_element(By.ID, "operators-unmapped").text == "Не сопоставлено операторов: 1 из 2."
    row = browser.find_element(By.CSS_SELECTOR, "#operators-table tr.unmapped")
    assert "Олег Смирнов (102)" in row.text and "не сопоставлен" in row.text
    assert row.find_element(By.TAG_NAME, "th").value_of_css_property("background-color") == "rgba(255, 244, 214, 1)"
    browser.execute_script("document.getElementById('operators').scrollIntoView()")
    browser.save_screenshot(str(SCREENSHOTS / "operator-map-unmapped-ru-phone.png"))
    choice = Select(row.find_element(By.TAG_NAME, "select"))
    assert choice.first_selected_option.text == "— не сопоставлен —"
    choice.select_by_visible_text("Олег Смирнов (#7777)")
    browser.find_element(By.CSS_SELECTOR, "#operators-form button[type=submit]").click()
    wait_for(browser, lambda d: "operators_saved=1" in urlsplit(d.current_url).query, "the mapping saved")

    assert browser.find_element(By.ID, "operators-saved").text.startswith("Сопоставление сохранено")
    assert browser.find_element(By.ID, "operators-unmapped").text == "Не сопоставлено операторов: 0 из 2."
    assert browser.find_elements(By.CSS_SELECTOR, "#operators-table tr.unmapped") == []
    saved = Select(browser.find_element(By.CSS_SELECTOR, 'tr[data-extension="102"] select'))
    assert saved.first_selected_option.text == "Олег Смирнов (#7777)"
    browser.execute_script("document.getElementById('operators').scrollIntoView()")
    browser.save_screenshot(str(SCREENSHOTS / "operator-map-ru-phone.png"))
    assert fits(browser), "the page sticks out sideways at 390 px"
    assert axe_problems(browser) == []
