"""MANGO connected in a real headless Chromium: the admin enters the PBX's key and salt on the settings page
in Russian at 1366 px; the connector checks them with the PBX (the fake MANGO) and says so, the operator
directory is read at once, and the calls list then names the operators. Skipped, saying why, without
Chromium (REQUIRE_BROWSER=1 makes that a failure)."""
from __future__ import annotations

import pytest

from app import create_app
from connector.core.users import add_user
from tests.conftest import MangoPoster, make_config, summary
from tests.e2e.test_browser import PASSWORD, SCREENSHOTS, axe_problems, browser, log_in, wait_for  # noqa: F401
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

KEY, SALT = "vpbx-key-browser-5d1e", "salt-browser-8c3f7a"
USERS = [{"general": {"name": "Ирина Петрова"}, "telephony": {"extension": "101"}}]


@pytest.fixture
def connector_and_pbx(db_url, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    pbx = FakeMango(KEY, SALT, users=[dict(u) for u in USERS])
    with serving(create_fake_mango(pbx)) as pbx_url:
        app = create_app(make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/"))
        db = app.extensions["connector"].db
        with db.transaction() as s:
            add_user(s, "anna", "admin", PASSWORD)
        try:
            with serving(app) as url:
                yield app, url, pbx
        finally:
            app.extensions["connector"].reads.close()
            db.dispose()


def test_an_admin_connects_mango_in_the_browser_and_operators_get_their_names(browser, connector_and_pbx):  # noqa: F811
    from selenium.webdriver.common.by import By

    app, url, pbx = connector_and_pbx
    browser.set_window_size(1366, 900)
    log_in(browser, url, "anna")
    browser.get(f"{url}/settings#mango")
    # The environment's pair is in force: the section is folded to its one line, and opens like any <details>.
    section = browser.find_element(By.ID, "mango")
    assert section.get_attribute("open") is None
    assert section.find_element(By.TAG_NAME, "summary").text == "MANGO OFFICE — подключено"
    assert not browser.find_element(By.ID, "mango-api_key").is_displayed()
    section.find_element(By.TAG_NAME, "summary").click()
    assert "переменных окружения" in browser.find_element(By.ID, "mango-in-force").text
    browser.find_element(By.ID, "mango-api_key").send_keys(KEY)
    browser.find_element(By.ID, "mango-api_salt").send_keys(SALT)
    browser.find_element(By.CSS_SELECTOR, "#mango-form button[type=submit]").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "mango-saved"), "the pair checked with the PBX and saved")
    saved = browser.find_element(By.ID, "mango-saved").text  # what was just saved is shown open
    assert saved == "MANGO принял ключ и подпись: они сохранены и действуют."
    assert "Действуют данные, сохранённые в консоли" in browser.find_element(By.ID, "mango-in-force").text
    assert [c for c in pbx.commands("config/users/request")]  # checked with the PBX itself
    page = browser.page_source
    assert KEY not in page and SALT not in page and "…5d1e" in page
    assert axe_problems(browser) == []
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "mango").screenshot(str(SCREENSHOTS / "settings-mango-connected.png"))
    # The PBX now signs with the pair entered; its call shows the operator by the directory's name.
    assert MangoPoster(app.test_client())("events/summary", summary("call-1"), key=KEY, salt=SALT).status_code == 200
    browser.get(f"{url}/calls")
    assert "Ирина Петрова (101)" in browser.find_element(By.TAG_NAME, "main").text
