"""amoCRM connected from the browser (the settings page's amoCRM section), against the fake amoCRM.

The admin enters the account's address and the integration's keys, is sent to amoCRM's authorization page,
allows access there, and amoCRM redirects back with a code and the state; the connector checks the state,
trades the code and stores the tokens encrypted. Or the admin pastes a long-lived token, checked first. The
worker, started before, uses the console's connection without a restart."""
import logging
import re
from contextlib import contextmanager
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from app import create_app
from connector.core.accounts import account_row, pause_state
from connector.core.models import SettingsAudit
from connector.core.users import add_user
from connector.wiring import build_worker
from connector.delivery.targets.amocrm.models import connection_row
from tests.conftest import console_login, csrf_token, dtmf, make_config, summary
from tests.delivery_helpers import Harness
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.server import serving

CLIENT_ID, CLIENT_SECRET = "3f1c9a2e-integration-7b41", "sEcReT-kEy-9d8c7b6a5f4e"
CALLBACK = "http://127.0.0.1:8080/settings/amocrm/callback"  # PUBLIC_BASE_URL's, as the integration registers it
PHONE = "79001234567"


@contextmanager
def connector(db_url, *, people: bool = True, **settings):
    fake = FakeAmo(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, redirect_uri=CALLBACK)
    with serving(create_fake_app(fake)) as amo_url:
        config = make_config(db_url, CRM="amocrm", AMOCRM_AUTHORIZE_URL=amo_url + "/oauth",
                             SURVEY_WAIT_SECONDS=0, **settings)
        app = create_app(config)
        app.config["TESTING"] = True
        db = app.extensions["connector"].db
        with db.transaction() as s:
            if people:  # False: the same database again, with its people
                add_user(s, "anna", "admin", "admin-pass-123")
                add_user(s, "sveta", "supervisor", "super-pass-123")
                add_user(s, "olga", "operator", "oper-pass-123", ["101"])
        worker = build_worker(config, db)  # started before anything is connected: it must not need a restart
        try:
            yield Harness(app, db, worker, fake, amo_url)
        finally:
            db.dispose()


@pytest.fixture
def h(db_url):
    with connector(db_url) as harness:
        yield harness


def logged_in(app, username="anna", password="admin-pass-123"):
    client = app.test_client()
    console_login(client, username, password)
    return client


def start(admin, amo_url, **fields):
    """Press «Подключить amoCRM»: the answer sends the browser to amoCRM's authorization page."""
    data = {"base_url": amo_url, "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, **fields}
    return admin.post("/settings/amocrm/connect", data={**data, "csrf_token": csrf_token(admin.get("/settings"))})


def allow(amo_url, authorize_location) -> str:
    """What the browser does on amoCRM's page: opens it, presses «Разрешить»; returns where amoCRM sends it."""
    page = requests.get(authorize_location, timeout=5)
    assert page.status_code == 200 and "Разрешить" in page.text
    state = parse_qs(urlsplit(authorize_location).query)["state"][0]
    answer = requests.post(amo_url + "/oauth/allow", data={"state": state}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302 and answer.headers["Location"].startswith(CALLBACK + "?")
    return answer.headers["Location"].removeprefix("http://127.0.0.1:8080")


def stored(h) -> tuple:
    with h.db.transaction() as s:
        row = account_row(s, "amocrm")
        return connection_row(s, "amocrm").connection_enc, row.access_token_enc, row.refresh_token_enc


def page(client, query="") -> str:
    return client.get("/settings" + query).get_data(as_text=True)


def deliver(h, entry_id):
    h.post("events/summary", summary(entry_id))
    h.post("events/dtmf", dtmf(entry_id, "2"))
    h.drain(make_due=True)


def test_an_admin_connects_amocrm_through_its_authorization_page(h, caplog):
    caplog.set_level(logging.DEBUG)
    h.fake.add_contact(PHONE)
    admin = logged_in(h.app)
    assert "amoCRM не подключён." in page(admin)
    deliver(h, "call-1")  # nothing connected yet: the target waits, paused with the reason
    paused, reason, _at = pause_state(h.db, "amocrm")
    assert paused and "connect it on the settings page" in reason

    answer = start(admin, h.amo_url)
    assert answer.status_code == 303
    location = answer.location
    assert location.startswith(h.amo_url + "/oauth?")
    query = parse_qs(urlsplit(location).query)
    assert query["client_id"] == [CLIENT_ID] and query["mode"] == ["post_message"] and len(query["state"][0]) >= 32
    assert stored(h) == (None, None, None)  # nothing stored before amoCRM said yes

    back = admin.get(allow(h.amo_url, location))
    assert back.status_code == 302 and back.location.endswith("/settings?amocrm_saved=1#amocrm")
    shown = page(admin, "?amocrm_saved=1")
    assert "amoCRM подключён: токены сохранены и действуют." in shown
    assert f"Действует подключение, сделанное в консоли ({h.amo_url})." in shown
    assert "Токены сохранены." in shown and "Токен доступа действует до" in shown
    sources = re.search(r'<table id="amocrm-sources">.*?</table>', shown, re.S).group(0)
    assert "…7b41" in sources and "…5f4e" in sources  # masked
    [access], [refresh] = list(h.fake.access_tokens), list(h.fake.refresh_tokens)
    connection_enc, access_enc, refresh_enc = stored(h)
    at_rest = f"{connection_enc} {access_enc} {refresh_enc}"
    assert access_enc and refresh_enc and connection_enc
    for secret in (access, refresh, CLIENT_SECRET, CLIENT_ID):
        assert secret not in at_rest  # encrypted at rest

    audit = logged_in(h.app).get("/audit").get_data(as_text=True)
    assert "Подключение amoCRM" in audit and "amocrm_connection" not in audit and "…5f4e" in audit
    for secret in (access, refresh, CLIENT_SECRET):
        assert secret not in shown and secret not in audit and secret not in caplog.text

    # The worker, built before, now delivers with the console's tokens: no restart.
    h.drain(make_due=True)
    assert h.call("call-1")["crm"]["status"] == "delivered"
    assert pause_state(h.db, "amocrm")[0] is False  # the new authorization lifted the pause

    # A day later the access token has run out: the worker refreshes it with the console's keys, once.
    h.fake.expire_access_tokens()
    deliver(h, "call-2")
    assert h.call("call-2")["crm"]["status"] == "delivered" and h.fake.refreshes == 1
    assert h.fake.refresh_tokens[refresh] is False  # rotated


def test_the_state_is_checked_wrong_reused_expired(h):
    admin = logged_in(h.app)
    location = start(admin, h.amo_url).location
    back = allow(h.amo_url, location)
    forged = re.sub(r"state=[^&]+", "state=forged-state", back)
    answer = admin.get(forged)
    assert answer.location.endswith("/settings?amocrm_problem=wrong_state#amocrm")
    shown = page(admin, "?amocrm_problem=wrong_state")
    assert "Ответ amoCRM не относится к подключению, начатому в этом браузере" in shown
    assert stored(h) == (None, None, None)

    # Another admin's session, with the right state: refused too (the state is bound to the session).
    with h.db.transaction() as s:
        add_user(s, "boris", "admin", "admin-pass-456")
    other = logged_in(h.app, "boris", "admin-pass-456")
    assert other.get(back).location.endswith("amocrm_problem=wrong_state#amocrm")

    assert admin.get(back).location.endswith("amocrm_saved=1#amocrm")  # the admin's own, still waiting: works
    replayed = admin.get(back)  # the same state again
    assert replayed.location.endswith("amocrm_problem=not_pending#amocrm")
    assert "ответ amoCRM использован" in page(admin, "?amocrm_problem=not_pending")

    # Expired: more than 10 minutes between the button and amoCRM's redirect. Nothing stored, state spent.
    admin.post("/settings/amocrm/forget", data={"csrf_token": csrf_token(admin.get("/settings"))})
    location = start(admin, h.amo_url).location
    back = allow(h.amo_url, location)
    store = h.app.extensions["amocrm_connection"]
    real = store.clock
    store.clock = lambda: real() + 601
    assert admin.get(back).location.endswith("amocrm_problem=expired#amocrm")
    assert "Подключение устарело" in page(admin, "?amocrm_problem=expired")
    store.clock = real
    assert stored(h) == (None, None, None)
    assert admin.get(back).location.endswith("amocrm_problem=not_pending#amocrm")


def test_a_refused_code_stores_nothing_and_says_why(h):
    admin = logged_in(h.app)
    back = allow(h.amo_url, start(admin, h.amo_url, client_secret="wrong-secret-1234").location)
    assert admin.get(back).location.endswith("amocrm_problem=code_refused#amocrm")
    shown = page(admin, "?amocrm_problem=code_refused")
    assert "amoCRM отклонил код авторизации" in shown and "Ничего не сохранено." in shown
    assert stored(h) == (None, None, None)
    assert "amoCRM не подключён." in shown
    with h.db.transaction() as s:
        assert not s.scalars(select(SettingsAudit).where(SettingsAudit.scope == "amocrm_connection")).all()


def test_access_granted_in_another_account_or_not_at_all_stores_nothing(h):
    admin = logged_in(h.app)
    back = allow(h.amo_url, start(admin, h.amo_url).location)
    elsewhere = re.sub(r"referer=[^&]+", "referer=other.amocrm.ru", back)
    assert admin.get(elsewhere).location.endswith("amocrm_problem=wrong_account#amocrm")
    assert "Доступ разрешён в другом аккаунте amoCRM" in page(admin, "?amocrm_problem=wrong_account")

    back = allow(h.amo_url, start(admin, h.amo_url).location)
    assert admin.get(re.sub(r"code=[^&]+&", "", back)).location.endswith("amocrm_problem=no_code#amocrm")
    assert "amoCRM не передал код авторизации" in page(admin, "?amocrm_problem=no_code")
    assert stored(h) == (None, None, None)


def test_a_long_lived_token_is_checked_then_stored_and_disconnect_removes_it(h, caplog):
    caplog.set_level(logging.DEBUG)
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE5MjQ5OTIwMDB9.c2lnbmF0dXJlLXRva2VuLXRhaWw"  # exp 2031-01-01
    admin = logged_in(h.app)

    def paste(value):
        return admin.post("/settings/amocrm/token", data={"base_url": h.amo_url, "token": value,
                                                          "csrf_token": csrf_token(admin.get("/settings"))})

    refused = paste("not-the-token-0000")  # the fake knows no long-lived token yet: 401
    assert refused.status_code == 422
    assert "amoCRM не принял долгосрочный токен. Ничего не сохранено." in refused.get_data(as_text=True)
    assert stored(h) == (None, None, None)

    h.fake.long_lived_token = token
    assert paste(token).location.endswith("/settings?amocrm_saved=1#amocrm")
    assert ("GET", "/api/v4/account", 200) in [(m, p, s) for _, m, p, s in h.fake.requests]
    shown = page(admin)
    assert "Действует подключение, сделанное в консоли" in shown and "…haWw" in shown
    assert "Токен доступа действует до 01.01.2031" in shown
    assert token not in shown and token not in caplog.text and token not in (stored(h)[0] or "")

    h.fake.add_contact(PHONE)
    deliver(h, "call-2")
    assert h.call("call-2")["crm"]["status"] == "delivered"

    assert admin.post("/settings/amocrm/forget", data={"csrf_token": csrf_token(admin.get("/settings"))}
                      ).status_code == 302
    assert stored(h) == (None, None, None)
    assert "amoCRM не подключён." in page(admin)
    audit = admin.get("/audit").get_data(as_text=True)
    assert token not in audit and "…haWw" in audit


@pytest.mark.parametrize("who", [("sveta", "super-pass-123"), ("olga", "oper-pass-123")])
def test_only_an_admin_may_connect_or_disconnect(h, who):
    client = logged_in(h.app, *who)
    token = csrf_token(client.get("/calls"))
    assert client.post("/settings/amocrm/connect", data={"base_url": h.amo_url, "client_id": CLIENT_ID,
                                                         "client_secret": CLIENT_SECRET, "csrf_token": token}
                       ).status_code == 403
    assert client.post("/settings/amocrm/token", data={"token": "x" * 20, "csrf_token": token}).status_code == 403
    assert client.post("/settings/amocrm/forget", data={"csrf_token": token}).status_code == 403
    assert client.get("/settings/amocrm/callback?code=c&state=s").status_code == 403


def test_a_post_without_its_csrf_token_is_refused(h):
    admin = logged_in(h.app)
    answer = admin.post("/settings/amocrm/connect", data={"base_url": h.amo_url, "client_id": CLIENT_ID,
                                                          "client_secret": CLIENT_SECRET})
    assert answer.status_code == 400 and "Форма устарела или подделана" in answer.get_data(as_text=True)
    assert admin.post("/settings/amocrm/forget").status_code == 400


def test_an_address_that_is_not_an_account_is_refused(h):
    admin = logged_in(h.app)
    answer = start(admin, h.amo_url, base_url="http://example.amocrm.ru/path")
    assert answer.status_code == 400
    assert "Укажите адрес аккаунта в виде https://поддомен.amocrm.ru" in answer.get_data(as_text=True)


def test_the_page_in_english(h):
    admin = logged_in(h.app)
    shown = page(admin, "?lang=en")
    assert "amoCRM is not connected." in shown and "Connect amoCRM" in shown


def test_only_the_settings_page_lets_its_form_go_on_to_amocrm(h):
    """The browser checks a form's redirect against the page's form-action: the settings page names amoCRM's
    authorization page's origin, every other page keeps 'self' alone."""
    admin = logged_in(h.app)
    settings_policy = admin.get("/settings").headers["Content-Security-Policy"]
    assert f"form-action 'self' {h.amo_url};" in settings_policy and "script-src 'none'" in settings_policy
    assert "form-action 'self';" in admin.get("/calls").headers["Content-Security-Policy"]


def test_a_connection_the_secret_key_no_longer_opens_is_said_and_pauses_deliveries(db_url):
    token = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE5MjQ5OTIwMDB9.c2lnbmF0dXJlLXRva2VuLXRhaWw"
    with connector(db_url) as h:
        h.fake.long_lived_token = token
        admin = logged_in(h.app)
        admin.post("/settings/amocrm/token", data={"base_url": h.amo_url, "token": token,
                                                   "csrf_token": csrf_token(admin.get("/settings"))})
        assert stored(h)[0]
    with connector(db_url, people=False, SECRET_KEY="another-secret-key") as h:
        shown = page(logged_in(h.app))
        assert "Сохранённое в консоли подключение не расшифровывается (сменился SECRET_KEY?)" in shown
        deliver(h, "call-3")
        paused, reason, _at = pause_state(h.db, "amocrm")
        assert paused and "cannot be decrypted" in reason


def test_the_page_shows_the_environments_values_masked_and_which_connection_is_in_force(db_url):
    env_token = "env-long-lived-token-3c9d"
    with connector(db_url, AMOCRM_BASE_URL="https://example.amocrm.ru", AMOCRM_LONG_LIVED_TOKEN=env_token) as h:
        admin = logged_in(h.app)
        shown = page(admin)
        assert "Действует подключение из переменных окружения AMOCRM_*." in shown
        sources = re.search(r'<table id="amocrm-sources">.*?</table>', shown, re.S).group(0)
        rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>", sources, re.S)
        assert "не задано" in rows[0] and rows[0].rstrip().endswith("<td>нет</td>")  # the console: nothing
        assert "https://example.amocrm.ru" in rows[1] and "…3c9d" in rows[1] and "<td>да</td>" in rows[1]
        assert env_token not in shown

        back = allow(h.amo_url, start(admin, h.amo_url).location)
        assert admin.get(back).location.endswith("amocrm_saved=1#amocrm")
        rows = re.findall(r"<tr><th scope=\"row\">(.*?)</tr>",
                          re.search(r'<table id="amocrm-sources">.*?</table>', page(admin), re.S).group(0), re.S)
        assert "<td>да</td>" in rows[0] and "<td>нет</td>" in rows[1]  # the console's wins
