"""Bitrix24 and the outbound webhook connected from the settings page.

Bitrix24: the admin pastes the handler URL the page shows into the portal's local application; the fake
portal installs the application by posting ONAPPINSTALL there over real HTTP; the tokens are stored
encrypted, a later event with another application_token is refused with nothing written, and a running
worker delivers to the installed portal without a restart.
The webhook: the admin enters a URL, the connector generates a whsec_ secret shown in full once, then masked;
a test message is signed and checked by a fake receiver; a failing receiver is said in words."""
import logging
import re
from contextlib import contextmanager
from urllib.parse import urlsplit

import pytest
import requests
import responses
from sqlalchemy import select

from app import create_app
from connector.core.accounts import account_row
from connector.core.models import SettingsAudit
from connector.core.users import add_user
from connector.wiring import build_workers
from connector.delivery.targets.bitrix24.models import portal_row
from tests.conftest import MANGO_KEY, MANGO_SALT, console_login, csrf_token, make_config
from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.receiver import FakeReceiver, create_receiver
from tests.fakes.server import serving
from tests.test_bitrix24_target import Later, Portal

MEMBER = "a223c6b3710f85df22e9377d6c4f7553"


@contextmanager
def connector(db_url, fake: FakeBitrix24, **overrides):
    """The connector served over HTTP (the portal posts to it), beside the fake portal and a fake MANGO; no
    Bitrix24 portal or code in the environment: the install brings them."""
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings={"rec-call-1"})
    later = Later()
    with serving(create_fake_bitrix24(fake)) as portal_url, serving(create_fake_mango(pbx)) as pbx_url, \
            serving(later) as connector_url:
        config = make_config(db_url, **{"CRM": "bitrix24", "BITRIX24_OAUTH_URL": f"{portal_url}/oauth/token/",
                                        **overrides}, BITRIX24_CLIENT_ID=fake.client_id,
                             BITRIX24_CLIENT_SECRET=fake.client_secret,
                             BITRIX24_USER_MAP="101:5551", BITRIX24_RATE_LIMIT=5, SURVEY_WAIT_SECONDS=0,
                             PUBLIC_BASE_URL=connector_url, MANGO_API_URL=pbx_url + "/vpbx/")
        app = later.app = create_app(config)
        app.config["TESTING"] = True
        db = app.extensions["connector"].db
        with db.transaction() as s:
            add_user(s, "anna", "admin", "admin-pass-123")
            add_user(s, "sveta", "supervisor", "super-pass-123")
            add_user(s, "olga", "operator", "oper-pass-123", ["101"])
        try:
            yield app, config, portal_url
        finally:
            db.dispose()


def logged_in(app, username="anna", password="admin-pass-123"):
    client = app.test_client()
    console_login(client, username, password)
    return client


def handler_url(page: str) -> str:
    return re.search(r'id="bitrix24-handler" type="text" readonly size="70" value="([^"]+)"', page).group(1)


def stored(app) -> tuple:
    with app.extensions["connector"].db.transaction() as s:
        row = account_row(s, "bitrix24")
        return row.access_token_enc, row.refresh_token_enc, row.secret_enc, row.endpoint_url, portal_row(s).member_id


def audits(app, scope: str) -> list[SettingsAudit]:
    with app.extensions["connector"].db.reading() as s:
        return list(s.scalars(select(SettingsAudit).where(SettingsAudit.scope == scope).order_by(SettingsAudit.id)))


def test_the_portal_installs_the_application_and_a_running_worker_delivers_to_it(db_url, caplog):
    caplog.set_level(logging.DEBUG)
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, config, portal_url):
        [worker] = build_workers(config, app.extensions["connector"].db)  # started before the install
        admin = logged_in(app)
        page = admin.get("/settings").get_data(as_text=True)
        # chosen in CRM and not installed: the section's line says so, and the section is open
        assert '<details class="card connection" id="bitrix24" open>' in page
        assert '<summary><h2>Bitrix24</h2> <span class="state attention">— не подключено</span></summary>' in page
        assert "Приложение ещё не установлено: звонки в Bitrix24 не передаются." in page
        url = handler_url(page)
        assert url.startswith(config.PUBLIC_BASE_URL + "/bitrix24/app/")

        answer = fake.install_application(url, portal_url, member_id=MEMBER)
        assert answer.status_code == 200 and answer.json() == {"result": "installed"}

        access, refresh, app_token, endpoint, member = stored(app)
        issued = set(fake.access_tokens) | set(fake.refresh_tokens)
        assert access and refresh and app_token  # stored encrypted: none of the portal's values in clear
        assert not any(t in (access + refresh + app_token) for t in issued | {fake.application_token})
        assert (endpoint, member) == (portal_url, MEMBER)
        page = admin.get("/settings").get_data(as_text=True)
        assert f"Приложение установлено на портале {portal_url} (member_id {MEMBER})" in page
        [audit] = audits(app, "bitrix24_install")
        assert audit.after["application_token"] == "…" + fake.application_token[-4:]
        for secret in issued | {fake.application_token}:
            assert secret not in page and secret not in caplog.text and secret not in str(audit.after)

        # The worker built before the install uses the stored tokens and portal: no restart.
        portal = Portal(app, app.extensions["connector"].db, worker, fake)
        portal.scored_call()
        portal.drain()
        [call] = fake.finished()
        assert call["finished"]["VOTE"] == "2"


def test_a_later_event_with_another_application_token_is_refused_and_nothing_is_written(db_url):
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, _config, portal_url):
        url = handler_url(logged_in(app).get("/settings").get_data(as_text=True))
        assert fake.install_application(url, portal_url).status_code == 200
        before = stored(app)

        forged = fake.send_event(url, "ONAPPUNINSTALL", application_token="0" * 32)
        assert forged.status_code == 401
        # A second install with another token (someone else's portal) is refused too.
        other = FakeBitrix24()
        assert other.install_application(url, "https://evil.example", member_id="evil").status_code == 401
        assert stored(app) == before and len(audits(app, "bitrix24_install")) == 1

        assert fake.send_event(url, "ONAPPUPDATE").json() == {"result": "accepted"}  # the right token
        assert fake.send_event(url, "ONAPPUNINSTALL").json() == {"result": "uninstalled"}
        assert stored(app) == (None, None, None, None, None)


def test_the_handler_refuses_what_the_portal_does_not_send(db_url):
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, _config, portal_url):
        url = handler_url(logged_in(app).get("/settings").get_data(as_text=True))
        client = app.test_client()
        path = url.removeprefix(app.extensions["connector"].config.PUBLIC_BASE_URL)
        assert client.get(path).status_code == 405
        assert client.post(path, json={"event": "ONAPPINSTALL"}).status_code == 415
        assert client.post("/bitrix24/app/" + "0" * 32, data={"event": "ONAPPINSTALL"}).status_code == 404
        # An install without its tokens stores nothing.
        assert client.post(path, data={"event": "ONAPPINSTALL", "auth[domain]": "p.bitrix24.ru",
                                       "auth[application_token]": "t" * 32}).status_code == 400
        # A later event before any install: no token to compare with.
        assert fake.send_event(url, "ONAPPUPDATE", application_token="x" * 32).status_code == 401
        assert stored(app) == (None, None, None, None, None)


def test_an_admin_disconnects_bitrix24_and_only_an_admin_may(db_url):
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, _config, portal_url):
        admin = logged_in(app)
        url = handler_url(admin.get("/settings").get_data(as_text=True))
        fake.install_application(url, portal_url)
        for name, password in (("sveta", "super-pass-123"), ("olga", "oper-pass-123")):
            other = logged_in(app, name, password)
            token = csrf_token(admin.get("/settings"))
            assert other.get("/settings").status_code == 403
            assert other.post("/settings/bitrix24/disconnect", data={"csrf_token": token}).status_code == 403
        assert admin.post("/settings/bitrix24/disconnect", data={}).status_code == 400  # no CSRF token
        assert stored(app)[0] is not None
        answer = admin.post("/settings/bitrix24/disconnect", data={"csrf_token": csrf_token(admin.get("/settings"))})
        assert answer.status_code == 302
        assert stored(app) == (None, None, None, None, None)
        assert "Приложение ещё не установлено" in admin.get("/settings").get_data(as_text=True)
        english = admin.get("/settings?lang=en").get_data(as_text=True)
        assert "<h2>Bitrix24</h2> <span class=\"state attention\">— not connected</span>" in english
        assert "The application is not installed yet" in english
        assert "Outbound webhook" in english and "Send a test message" not in english  # no URL: nothing to test
        assert audits(app, "bitrix24_install")[-1].actor == "anna"


def test_the_worker_binds_the_uninstall_handler_and_the_portal_s_uninstall_forgets_it(db_url):
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, config, portal_url):
        [worker] = build_workers(config, app.extensions["connector"].db)
        admin = logged_in(app)
        url = handler_url(admin.get("/settings").get_data(as_text=True))
        assert fake.install_application(url, portal_url).json() == {"result": "installed"}
        page = admin.get("/settings").get_data(as_text=True)
        assert "Обработчик удаления приложения (ONAPPUNINSTALL) ещё не зарегистрирован" in page
        # The fake's OAuth server is plain http on 127.0.0.1: not trusted, so BITRIX24_OAUTH_URL renews.
        assert f"токены обновляются по BITRIX24_OAUTH_URL ({portal_url}/oauth/token/)" in page
        assert fake.bound == []  # the install request itself bound nothing: the portal never waited on us

        fake.failing = True  # the portal is down when the worker first tries
        assert worker.run_once() == 0
        assert fake.bound == []
        page = admin.get("/settings").get_data(as_text=True)
        assert "Не удалось зарегистрировать обработчик удаления приложения (ONAPPUNINSTALL), попыток: 1" in page
        assert "event.bind: 500 INTERNAL_SERVER_ERROR" in page
        with app.extensions["connector"].db.transaction() as s:  # the pause is over
            portal_row(s, lock=True).bind_next_at = None
        worker.target.uninstall._checked = float("-inf")
        fake.failing = False
        worker.run_once()
        assert fake.bound == [{"event": "ONAPPUNINSTALL", "handler": url}]
        page = admin.get("/settings").get_data(as_text=True)
        assert "Обработчик удаления приложения (ONAPPUNINSTALL) зарегистрирован на портале" in page
        worker.target.uninstall._checked = float("-inf")
        worker.run_once()
        assert len(fake.bound) == 1  # once per install

        [answer] = fake.uninstall_application()  # posted to the bound handler, without tokens
        assert answer.json() == {"result": "uninstalled"}
        assert stored(app) == (None, None, None, None, None)
        assert "Приложение ещё не установлено" in admin.get("/settings").get_data(as_text=True)
        assert audits(app, "bitrix24_install")[-1].after == {"portal": None}


def test_an_uninstall_reaches_no_handler_that_was_never_bound(db_url):
    fake = FakeBitrix24()
    with connector(db_url, fake) as (app, _config, portal_url):
        url = handler_url(logged_in(app).get("/settings").get_data(as_text=True))
        fake.install_application(url, portal_url)
        assert fake.uninstall_application() == []  # no worker ran: nothing bound, nothing posted (the old defect)
        assert stored(app)[3] == portal_url


def test_the_tokens_are_renewed_at_the_server_the_portal_named(db_url):
    """The portal names the vendor's west server; `responses` stands in for it by handing each grant to the
    fake's own token endpoint. BITRIX24_OAUTH_URL names the east server, which must never be asked."""
    fake = FakeBitrix24(oauth_endpoint="https://oauth.bitrix.info/rest/")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as wire, \
            connector(db_url, fake, BITRIX24_OAUTH_URL="https://oauth.bitrix24.tech/oauth/token/") \
            as (app, config, portal_url):
        wire.add_passthru(re.compile(r"http://127\.0\.0\.1:\d+"))

        def west(request):
            answer = requests.get(f"{portal_url}/oauth/token/?{urlsplit(request.url).query}", timeout=10)
            return answer.status_code, {"Content-Type": "application/json"}, answer.content

        wire.add_callback(responses.GET, "https://oauth.bitrix.info/oauth/token/", callback=west)
        [worker] = build_workers(config, app.extensions["connector"].db)
        url = handler_url(logged_in(app).get("/settings").get_data(as_text=True))
        fake.install_application(url, portal_url)
        page = logged_in(app).get("/settings").get_data(as_text=True)
        assert "Токены обновляются на сервере авторизации, который назвал портал: https://oauth.bitrix.info." in page

        fake.expire_access_tokens()  # an hour later
        portal = Portal(app, app.extensions["connector"].db, worker, fake)
        portal.scored_call()
        portal.drain()
        assert len(fake.finished()) == 1 and fake.refreshes == 1
        asked = {urlsplit(c.request.url).hostname for c in wire.calls if c.request.url.startswith("https://")}
        assert asked == {"oauth.bitrix.info"}


# --- the outbound webhook ------------------------------------------------------------------------

@pytest.fixture
def plain(db_url):
    app = create_app(make_config(db_url, CRM="webhook"))
    app.config["TESTING"] = True
    db = app.extensions["connector"].db
    with db.transaction() as s:
        add_user(s, "anna", "admin", "admin-pass-123")
        add_user(s, "sveta", "supervisor", "super-pass-123")
    yield app
    db.dispose()


def save_url(admin, url):
    return admin.post("/settings/webhook", data={"url": url, "csrf_token": csrf_token(admin.get("/settings"))})


def test_the_admin_enters_a_url_the_secret_is_shown_once_then_masked_and_a_test_is_received(plain, caplog):
    caplog.set_level(logging.DEBUG)
    admin = logged_in(plain)
    page = admin.get("/settings").get_data(as_text=True)
    assert "Вебхук не настроен: сообщения ждут, пока не будет указан адрес." in page
    assert "Отправить тестовое сообщение" not in page

    answer = save_url(admin, "https://bi.example/hook")  # the receiver is not up yet: saving does not call it
    assert answer.status_code == 200 and answer.headers["Cache-Control"] == "no-store"
    page = answer.get_data(as_text=True)
    secret = re.search(r'<code id="webhook-secret">(whsec_[A-Za-z0-9+/=]+)</code>', page).group(1)
    assert "полностью он больше показан не будет" in page
    later = admin.get("/settings").get_data(as_text=True)
    assert secret not in later and "…" + secret[-4:] in later
    assert "Действуют адрес и секрет, сохранённые в консоли" in later

    receiver = FakeReceiver(secret)
    with serving(create_receiver(receiver)) as receiver_url:
        page = save_url(admin, receiver_url + "/hook").get_data(as_text=True)
        assert "Адрес сохранён; секрет подписи прежний." in page and secret not in page
        page = admin.post("/settings/webhook/test", data={"csrf_token": csrf_token(admin.get("/settings"))}) \
            .get_data(as_text=True)
    assert "Получатель принял тестовое сообщение (ответ 204)." in page
    [(message_id, body)] = receiver.received  # verified with the secret by the receiver
    assert message_id.startswith("test_") and body["type"] == "connector.test"
    trail = audits(plain, "webhook_connection") + audits(plain, "webhook_test")
    assert len(trail) == 3 and trail[-1].after["result"] == "accepted"
    assert all(secret not in str(a.after) + str(a.before) for a in trail) and secret not in caplog.text
    assert trail[0].after["secret"] == "…" + secret[-4:]
    audit_page = admin.get("/audit").get_data(as_text=True)
    assert secret not in audit_page and "…" + secret[-4:] in audit_page


def test_a_failing_or_refusing_receiver_is_reported_in_words(plain):
    admin = logged_in(plain)
    receiver = FakeReceiver("whsec_" + "A" * 32, answers=[503])  # signed with another secret: refused 400
    with serving(create_receiver(receiver)) as receiver_url:
        save_url(admin, receiver_url + "/hook")

        def test():
            return admin.post("/settings/webhook/test", data={"csrf_token": csrf_token(admin.get("/settings"))}) \
                .get_data(as_text=True)

        assert "Получатель отклонил тестовое сообщение (ответ 400)" in test()
    assert "Получатель не ответил: адрес недоступен" in test()  # the receiver is gone
    assert [a.after["result"] for a in audits(plain, "webhook_test")] == ["refused", "no_answer"]

    page = save_url(admin, "ftp://bi.example").get_data(as_text=True)
    assert "Укажите адрес вида https://example.ru/hook" in page


def test_a_server_error_is_reported_and_a_new_secret_replaces_the_old(plain):
    admin = logged_in(plain)
    first = re.search(r'id="webhook-secret">([^<]+)<', save_url(admin, "http://127.0.0.1:9/hook")
                      .get_data(as_text=True)).group(1)
    receiver = FakeReceiver(first, answers=[500])
    with serving(create_receiver(receiver)) as receiver_url:
        save_url(admin, receiver_url + "/hook")
        page = admin.post("/settings/webhook/test", data={"csrf_token": csrf_token(admin.get("/settings"))}) \
            .get_data(as_text=True)
    assert "У получателя ошибка (ответ 500)" in page
    page = admin.post("/settings/webhook/secret", data={"csrf_token": csrf_token(admin.get("/settings"))}) \
        .get_data(as_text=True)
    second = re.search(r'id="webhook-secret">([^<]+)<', page).group(1)
    assert second != first and second.startswith("whsec_")


def test_the_environment_value_is_in_force_until_the_console_saves_one(db_url):
    app = create_app(make_config(db_url, CRM="webhook", WEBHOOK_TARGET_URL="https://env.example/hook",
                                 WEBHOOK_TARGET_SECRET="whsec_" + "B" * 32))
    app.config["TESTING"] = True
    with app.extensions["connector"].db.transaction() as s:
        add_user(s, "anna", "admin", "admin-pass-123")
    admin = logged_in(app)
    page = admin.get("/settings").get_data(as_text=True)
    assert "Действуют адрес и секрет из переменных окружения WEBHOOK_TARGET_URL и WEBHOOK_TARGET_SECRET." in page
    assert "https://env.example/hook" in page and "B" * 32 not in page
    save_url(admin, "https://console.example/hook")
    assert "сохранённые в консоли" in admin.get("/settings").get_data(as_text=True)
    admin.post("/settings/webhook/forget", data={"csrf_token": csrf_token(admin.get("/settings"))})
    assert "из переменных окружения WEBHOOK_TARGET_URL" in admin.get("/settings").get_data(as_text=True)
    app.extensions["connector"].db.dispose()


def test_non_admins_may_not_touch_the_webhook(plain):
    admin = logged_in(plain)
    other = logged_in(plain, "sveta", "super-pass-123")
    token = csrf_token(admin.get("/settings"))
    for path in ("/settings/webhook", "/settings/webhook/test", "/settings/webhook/secret",
                 "/settings/webhook/forget"):
        assert other.post(path, data={"csrf_token": token, "url": "https://x.example/h"}).status_code == 403
    assert admin.post("/settings/webhook", data={"url": "https://x.example/h"}).status_code == 400  # no CSRF
    assert audits(plain, "webhook_connection") == []
