"""amoCRM connected in a real headless Chromium: the admin fills in the settings page's amoCRM section in
Russian at 1366 px, presses «Подключить amoCRM», allows access on (the fake) amoCRM's authorization page, and
comes back to the settings page, which then shows amoCRM connected. Skipped, saying why, without Chromium
(REQUIRE_BROWSER=1 makes that a failure)."""
from __future__ import annotations

import pytest

from connector.core.users import add_user
from connector.delivery.targets.amocrm.kit import build_amocrm_connection
from tests.conftest import make_config
from tests.e2e.test_browser import PASSWORD, SCREENSHOTS, at, browser, log_in, wait_for  # noqa: F401
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving

CLIENT_ID, CLIENT_SECRET = "3f1c9a2e-integration-7b41", "sEcReT-kEy-9d8c7b6a5f4e"


@pytest.fixture
def config_overrides():
    return {"CRM": "amocrm"}


@pytest.fixture
def connector_and_amo(app, db, db_url, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "anna", "admin", PASSWORD)
    fake = FakeAmo(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)
    with serving(create_fake_app(fake)) as amo_url, serving(app) as url:
        # The redirect URI is the connector's public address, known once it listens: the integration is
        # registered with it, as an admin does in amoCRM.
        config = make_config(db_url, CRM="amocrm", PUBLIC_BASE_URL=url, AMOCRM_AUTHORIZE_URL=amo_url + "/oauth")
        app.extensions["amocrm_connection"] = build_amocrm_connection(config, db)
        fake.redirect_uri = url + "/settings/amocrm/callback"
        yield url, amo_url, fake


def test_an_admin_connects_amocrm_in_the_browser(browser, connector_and_amo):  # noqa: F811
    from selenium.webdriver.common.by import By

    url, amo_url, fake = connector_and_amo
    browser.set_window_size(1366, 900)
    log_in(browser, url, "anna")
    browser.get(f"{url}/settings#amocrm")
    assert "amoCRM не подключён." in browser.find_element(By.ID, "amocrm-in-force").text
    browser.find_element(By.ID, "amocrm-base_url").send_keys(amo_url)
    browser.find_element(By.ID, "amocrm-client_id").send_keys(CLIENT_ID)
    browser.find_element(By.ID, "amocrm-client_secret").send_keys(CLIENT_SECRET)
    browser.find_element(By.CSS_SELECTOR, "#amocrm-form button[type=submit]").click()
    wait_for(browser, lambda d: d.current_url.startswith(amo_url + "/oauth?"), "on amoCRM's authorization page")
    browser.find_element(By.ID, "allow").click()  # «Разрешить»
    wait_for(browser, at("/settings"), "back on the settings page")
    saved = browser.find_element(By.ID, "amocrm-saved").text
    assert saved == "amoCRM подключён: токены сохранены и действуют."
    assert f"Действует подключение, сделанное в консоли ({amo_url})." in browser.find_element(
        By.ID, "amocrm-in-force").text
    assert "Токен доступа действует до" in browser.find_element(By.ID, "amocrm-tokens").text
    page = browser.page_source
    assert CLIENT_SECRET not in page and not any(token in page for token in fake.access_tokens)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.find_element(By.ID, "amocrm").screenshot(str(SCREENSHOTS / "settings-amocrm-connected.png"))
