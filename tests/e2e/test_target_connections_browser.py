"""An admin connects Bitrix24 and the outbound webhook in a real headless Chromium, in Russian at 1366 px:
the fake portal installs the application at the handler URL the page shows, and a test message reaches a
fake receiver that verifies it with the secret the page showed once."""
from __future__ import annotations

from selenium.webdriver.common.by import By

from tests.e2e.test_browser import SCREENSHOTS, at, axe_problems, browser, fits, wait_for  # noqa: F401
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.receiver import FakeReceiver, create_receiver
from tests.fakes.server import serving
from tests.test_bitrix24_target import Later
from tests.test_target_connections import connector


def test_an_admin_installs_bitrix24_and_sends_a_webhook_test_message(browser, db_url, monkeypatch):  # noqa: F811
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    fake = FakeBitrix24()
    receiver_app = Later()
    with connector(db_url, fake, CRM="bitrix24,webhook") as (app, config, portal_url), \
            serving(receiver_app) as receiver_url:
        url = config.PUBLIC_BASE_URL
        browser.set_window_size(1366, 900)
        browser.get(f"{url}/")
        browser.find_element(By.NAME, "username").send_keys("anna")
        browser.find_element(By.NAME, "password").send_keys("admin-pass-123")
        browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
        wait_for(browser, at("/calls"), "anna logged in")

        browser.get(f"{url}/settings#bitrix24")
        section = browser.find_element(By.ID, "bitrix24")
        # chosen in CRM and not installed yet: open, its line saying so
        assert section.find_element(By.TAG_NAME, "summary").text == "Bitrix24 — не подключено"
        assert "Приложение ещё не установлено" in section.text
        handler = browser.find_element(By.ID, "bitrix24-handler").get_attribute("value")
        assert fake.install_application(handler, portal_url).status_code == 200  # the admin saved the app there

        browser.refresh()
        section = browser.find_element(By.ID, "bitrix24")  # installed: folded to its line until opened
        assert section.find_element(By.TAG_NAME, "summary").text == "Bitrix24 — подключено"
        assert not browser.find_element(By.ID, "bitrix24-state").is_displayed()
        section.find_element(By.TAG_NAME, "summary").click()
        assert f"Приложение установлено на портале {portal_url}" in browser.find_element(By.ID, "bitrix24-state").text
        assert browser.find_elements(By.ID, "bitrix24-disconnect")
        # No worker runs here: the removal handler waits for it, and the page says so (and which server renews).
        assert "ещё не зарегистрирован" in browser.find_element(By.ID, "bitrix24-uninstall-handler").text
        assert "BITRIX24_OAUTH_URL" in browser.find_element(By.ID, "bitrix24-oauth-server").text

        field = browser.find_element(By.ID, "webhook-url")
        field.clear()
        field.send_keys(receiver_url + "/hook")
        browser.find_element(By.CSS_SELECTOR, "#webhook-form button").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "webhook-secret"), "the secret shown once")
        secret = browser.find_element(By.ID, "webhook-secret").text
        assert secret.startswith("whsec_")
        receiver = FakeReceiver(secret)
        receiver_app.app = create_receiver(receiver)

        browser.get(f"{url}/settings#webhook")
        section = browser.find_element(By.ID, "webhook")
        assert section.get_attribute("open") is None  # set up, nothing to tell: folded
        assert section.find_element(By.TAG_NAME, "summary").text == "Исходящий вебхук — подключено"
        section.find_element(By.TAG_NAME, "summary").click()
        assert secret not in browser.page_source and "…" + secret[-4:] in browser.find_element(By.ID, "webhook").text
        browser.find_element(By.CSS_SELECTOR, "#webhook-test button").click()
        wait_for(browser, lambda d: d.find_elements(By.ID, "webhook-test-result"), "the receiver's answer")
        assert browser.find_element(By.ID, "webhook-test-result").text == \
            "Получатель принял тестовое сообщение (ответ 204)."
        assert len(receiver.received) == 1
        assert fits(browser)
        assert axe_problems(browser) == []
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        browser.find_element(By.ID, "webhook").screenshot(str(SCREENSHOTS / "webhook-connection.png"))
