"""MANGO connected from the browser, and operators shown by name.

An admin enters the PBX's key and salt on the settings page; the connector checks them at once with a
harmless signed command (the PBX's user list) against the fake MANGO, stores them encrypted only when the
PBX accepts them, and from then on the callbacks' signature check and the command API use them. The user
list fills the operator directory, read again on a schedule; the console names operators by it."""
import logging
import re
import time
from datetime import datetime, timezone

import pytest
import responses
from responses import matchers
from sqlalchemy import select

from app import create_app
from connector.core.db import Database
from connector.core.models import Operator, PbxScan, SettingsAudit
from connector.core.users import add_user
from connector.inbound import directory
from connector.inbound.mango.api import MangoApi, MangoGuard
from connector.inbound.mango.callbacks import sign
from connector.inbound.pbx import OperatorEntry, PbxError, PbxWrongRequest
from connector.wiring import build_directory, build_pbx_api
from connector.inbound.mango.models import mango_row
from tests.conftest import (ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, MangoPoster, console_login, csrf_token, make_config,
                            summary)
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

NEW_KEY, NEW_SALT = "vpbx-key-7f3a9c2e41", "salt-5b8d0e6f92ab"  # the pair the admin enters (not the environment's)
USERS = [  # as the PBX lists them (general / telephony / groups)
    {"general": {"name": "Ирина Петрова", "email": "irina@example.ru"}, "telephony": {"extension": "101"},
     "groups": [7]},
    {"general": {"name": ""}, "telephony": {"extension": "102"}},  # no name in the PBX
    {"general": {"name": "Без номера"}, "telephony": {}},  # no extension: takes no calls
]


@pytest.fixture
def pbx():
    return FakeMango(NEW_KEY, NEW_SALT, users=[dict(u) for u in USERS])


@pytest.fixture
def setup(db_url, pbx):
    with serving(create_fake_mango(pbx)) as pbx_url:
        config = make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/")
        app = create_app(config)
        app.config["TESTING"] = True
        db = app.extensions["connector"].db
        with db.transaction() as s:
            add_user(s, "anna", "admin", "admin-pass-123")
            add_user(s, "sveta", "supervisor", "super-pass-123")
            add_user(s, "olga", "operator", "oper-pass-123", ["102"])
        yield app, config
        db.dispose()


def logged_in(app, username, password):
    client = app.test_client()
    console_login(client, username, password)
    return client


def post_pair(client, key=NEW_KEY, salt=NEW_SALT, lang=""):
    token = csrf_token(client.get("/settings" + lang))
    return client.post("/settings/mango" + lang, data={"api_key": key, "api_salt": salt, "csrf_token": token})


def stored_row(app):
    with app.extensions["connector"].db.transaction() as s:
        row = mango_row(s)
        return row.api_key_enc, row.api_salt_enc


def test_an_admin_connects_mango_and_the_secret_is_never_shown_nor_logged(setup, pbx, caplog):
    caplog.set_level(logging.DEBUG)
    app, _config = setup
    admin = logged_in(app, "anna", "admin-pass-123")
    page = admin.get("/settings").get_data(as_text=True)
    assert "Действуют данные из переменных окружения MANGO_API_KEY и MANGO_API_SALT." in page

    answer = admin.post("/settings/mango", data={"api_key": NEW_KEY, "api_salt": NEW_SALT,
                                                 "csrf_token": csrf_token(admin.get("/settings"))})
    assert answer.status_code == 302 and answer.location.endswith("/settings?mango_saved=1#mango")
    # Checked at once with the user list, signed with the pair entered.
    [(path, body, status, _result)] = pbx.commands("config/users/request")
    assert (path, body, status) == ("config/users/request", {}, 200)

    page = admin.get("/settings?mango_saved=1").get_data(as_text=True)
    assert "MANGO принял ключ и подпись: они сохранены и действуют." in page
    assert "Действуют данные, сохранённые в консоли" in page and "Они важнее переменных окружения." in page
    sources = re.search(r'<table id="mango-sources">.*?</table>', page, re.S).group(0)
    assert "…2e41" in sources and "…92ab" in sources  # the console's, masked
    assert "…" + MANGO_KEY[-4:] in sources  # the environment's, masked too
    assert "Операторов в справочнике: 2." in page  # read from the check's answer
    audit = admin.get("/audit").get_data(as_text=True)
    assert "Подключение MANGO OFFICE" in audit and "mango_credentials" not in audit and "…92ab" in audit
    for secret in (NEW_KEY, NEW_SALT):
        assert secret not in page and secret not in audit and secret not in caplog.text
    key_enc, salt_enc = stored_row(app)
    assert key_enc and salt_enc and NEW_KEY not in key_enc and NEW_SALT not in salt_enc  # encrypted at rest

    # The console's pair is in force for the callbacks at once (this process; others within a second).
    poster = MangoPoster(app.test_client())
    assert poster("events/summary", summary("call-new"), key=NEW_KEY, salt=NEW_SALT).status_code == 200
    assert poster("events/summary", summary("call-old"), key=MANGO_KEY, salt=MANGO_SALT).status_code == 403


def test_another_process_uses_a_pair_saved_in_the_console_without_a_restart(setup, pbx):
    """A worker process has its own store: it sees the saved pair within its cache's second."""
    app, config = setup

    worker_db = Database(config.DATABASE_URL)
    try:
        worker_api = build_pbx_api(config, worker_db)
        assert worker_api.credentials() == (MANGO_KEY, MANGO_SALT)  # the environment's, before
        assert post_pair(logged_in(app, "anna", "admin-pass-123")).status_code == 302
        time.sleep(1.1)  # CredentialStore.CACHE_SECONDS
        assert worker_api.credentials() == (NEW_KEY, NEW_SALT)
        assert [e.extension for e in worker_api.users()] == ["101", "102"]  # signed with the new pair: accepted
    finally:
        worker_db.dispose()


def test_another_web_process_accepts_the_new_pair_and_soon_refuses_the_old_one(setup, pbx):
    """A callback reads no row (one INSERT is all it costs): each process checks against its copy, reads again
    at once when its copy refuses a signature, and at the latest every CALLBACK_SECONDS."""
    app, config = setup
    others = [create_app(config), create_app(config)]  # two other web processes, started before the change
    try:
        now = [1000.0]
        for other in others:
            store = other.extensions["connector"].pbx_credentials
            store.clock = lambda: now[0]
            store.warm()
        assert post_pair(logged_in(app, "anna", "admin-pass-123")).status_code == 302
        first, second = (MangoPoster(other.test_client()) for other in others)
        now[0] += 1.5
        assert first("events/summary", summary("call-a"), key=NEW_KEY, salt=NEW_SALT).status_code == 200
        assert first("events/summary", summary("call-b"), key=MANGO_KEY, salt=MANGO_SALT).status_code == 403
        # The second has seen no new-pair callback: its copy holds the old pair until CALLBACK_SECONDS.
        assert second("events/summary", summary("call-c"), key=MANGO_KEY, salt=MANGO_SALT).status_code == 200
        now[0] += 30
        assert second("events/summary", summary("call-d"), key=MANGO_KEY, salt=MANGO_SALT).status_code == 403
    finally:
        for other in others:
            other.extensions["connector"].db.dispose()


@pytest.mark.parametrize("lang, message", [
    ("", "MANGO не принял подпись: ключ для создания подписи неверен. Ничего не сохранено."),
    ("?lang=en", "MANGO did not accept the signature: the signing key is wrong. Nothing was saved."),
])
def test_a_wrong_salt_is_refused_in_the_page_language_and_nothing_is_stored(setup, pbx, lang, message, caplog):
    caplog.set_level(logging.DEBUG)
    app, _config = setup
    admin = logged_in(app, "anna", "admin-pass-123")
    answer = post_pair(admin, salt="wrong-salt-000000", lang=lang)
    page = answer.get_data(as_text=True)
    assert answer.status_code == 422 and message in page
    assert "wrong-salt-000000" not in page and "wrong-salt-000000" not in caplog.text
    assert 'value=""' in re.search(r'<input[^>]*id="mango-api_key"[^>]*>', page).group(0)  # not shown back
    assert stored_row(app) == (None, None)
    with app.extensions["connector"].db.reading() as s:
        assert s.scalars(select(SettingsAudit)).all() == [] and s.scalars(select(Operator)).all() == []
    assert [r[3] for r in pbx.commands("config/users/request")] == [3102]

    # A second try within MANGO's 2 minutes would block the account's API: it is not sent, and the page says so.
    again = post_pair(admin, salt="another-wrong-salt", lang=lang)
    assert again.status_code == 422 and len(pbx.commands("config/users/request")) == 1 and pbx.blocks == 0
    assert ("Повторите после" if not lang else "Try again after") in again.get_data(as_text=True)


def test_a_wrong_key_says_so(setup, pbx):
    app, _config = setup
    answer = post_pair(logged_in(app, "anna", "admin-pass-123"), key="no-such-key-12345")
    assert answer.status_code == 422
    assert "MANGO не знает такого уникального кода АТС." in answer.get_data(as_text=True)
    assert stored_row(app) == (None, None)


def test_an_empty_field_is_refused_beside_the_form(setup, pbx):
    app, _config = setup
    answer = post_pair(logged_in(app, "anna", "admin-pass-123"), salt="")
    assert answer.status_code == 400 and "Укажите ключ подписи" in answer.get_data(as_text=True)
    assert pbx.commands("config/users/request") == []


@pytest.mark.parametrize("username, password", [("sveta", "super-pass-123"), ("olga", "oper-pass-123")])
def test_a_supervisor_or_an_operator_can_neither_see_nor_post_the_form(setup, pbx, username, password):
    app, _config = setup
    client = logged_in(app, username, password)
    token = csrf_token(client.get("/calls"))
    assert client.get("/settings").status_code == 403
    for path in ("/settings/mango", "/settings/mango/forget"):
        answer = client.post(path, data={"api_key": NEW_KEY, "api_salt": NEW_SALT, "csrf_token": token})
        assert answer.status_code == 403 and "Нет доступа" in answer.get_data(as_text=True)
    assert pbx.commands("config/users/request") == [] and stored_row(app) == (None, None)


def test_removing_the_console_pair_puts_the_environment_back_in_force(setup, pbx):
    app, _config = setup
    admin = logged_in(app, "anna", "admin-pass-123")
    assert post_pair(admin).status_code == 302
    token = csrf_token(admin.get("/settings"))
    assert admin.post("/settings/mango/forget", data={"csrf_token": token}).status_code == 302
    assert "Действуют данные из переменных окружения" in admin.get("/settings").get_data(as_text=True)
    assert stored_row(app) == (None, None)
    poster = MangoPoster(app.test_client())
    assert poster("events/summary", summary("call-env"), key=MANGO_KEY, salt=MANGO_SALT).status_code == 200


def test_the_directory_refresh_counts_its_failures_and_shows_them(setup, pbx):
    app, config = setup
    assert post_pair(logged_in(app, "anna", "admin-pass-123")).status_code == 302
    clock = [datetime.now(timezone.utc).timestamp()]
    refresher = build_directory(config, app.extensions["connector"].db)
    refresher.clock = lambda: clock[0]
    assert refresher.run_once() == 0  # just read at connect time: due in 6 hours

    clock[0] += 6 * 3600 + 1
    pbx.users.append({"general": {"name": "Новый Оператор"}, "telephony": {"extension": "103"}})
    assert refresher.run_once() == 1
    with app.extensions["connector"].db.reading() as s:
        assert directory.operator_names(s)["103"] == "Новый Оператор"

    clock[0] += 6 * 3600 + 1
    pbx.salt = "rotated-in-the-pbx"  # the PBX no longer accepts the stored pair: 3102
    assert refresher.run_once() == 1
    assert refresher.run_once() == 0  # not again at once: after RETRY (10 minutes)
    status = app.test_client().get("/api/v1/status", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json
    state = status["details"]["pbx"]["directory"]
    assert state["state"] == "failing" and state["failures"] == 1 and "3102" in state["last_error"]
    assert state["operators"] == 3  # the names last read stay
    page = logged_in(app, "anna", "admin-pass-123").get("/settings").get_data(as_text=True)
    assert "Не удаётся прочитать список сотрудников АТС (попыток подряд: 1)" in page
    metrics = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert "connector_operator_directory_failures 1.0" in metrics.get_data(as_text=True)

    clock[0] += 11 * 60
    pbx.advance(3 * 60)  # past the fake's 2-minute window: the second wrong request is not a block
    assert refresher.run_once() == 1
    with app.extensions["connector"].db.reading() as s:
        assert s.get(PbxScan, directory.SCAN).failures == 2
    pbx.salt = NEW_SALT
    del pbx.users[0]  # 101 left the PBX meanwhile
    clock[0] += 11 * 60
    assert refresher.run_once() == 1
    with app.extensions["connector"].db.reading() as s:
        row = s.get(PbxScan, directory.SCAN)
        assert (row.failures, row.last_error) == (0, None)
        assert "101" not in directory.operator_names(s)  # no longer named by the PBX


def test_the_directory_is_not_read_while_no_pair_is_in_force(db_url, pbx):
    with serving(create_fake_mango(pbx)) as pbx_url:
        config = make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/", MANGO_API_KEY="", MANGO_API_SALT="")
        db = Database(config.DATABASE_URL)
        try:
            assert build_directory(config, db).run_once() == 0
            assert pbx.requests == []  # nothing sent, no failure counted
            with db.reading() as s:
                assert directory.directory_state(s, datetime.now(timezone.utc))["failures"] == 0
        finally:
            db.dispose()


def test_the_console_names_operators_wherever_they_appear(setup, pbx):
    app, _config = setup
    admin = logged_in(app, "anna", "admin-pass-123")
    assert post_pair(admin).status_code == 302
    poster = MangoPoster(app.test_client())
    for entry_id, extension in [("call-1", "101"), ("call-2", "102"), ("call-3", "555")]:
        assert poster("events/summary", summary(entry_id, extension=extension),
                      key=NEW_KEY, salt=NEW_SALT).status_code == 200
    rows = re.findall(r'<td [^>]*class="operator">([^<]*)</td>', admin.get("/calls").get_data(as_text=True))
    # The PBX's name; the console account linked to 102 (the PBX has no name for it); an unknown extension.
    assert sorted(rows) == ["555", "olga (102)", "Ирина Петрова (101)"]
    assert 'id="operator">Ирина Петрова (101)</span>' in admin.get("/calls/call-1").get_data(as_text=True)
    report = admin.get("/reports").get_data(as_text=True)
    assert "<td>Ирина Петрова (101)</td>" in report and "<td>olga (102)</td>" in report
    page = admin.get("/calls/call-2")
    assert admin.post("/calls/call-2/reviews", data={"score": "6", "csrf_token": csrf_token(page)}).status_code == 302
    olga = logged_in(app, "olga", "oper-pass-123")  # told of the review: her call, named as everywhere
    assert re.search(r'<td [^>]*class="operator">olga \(102\)</td>', olga.get("/notifications").get_data(as_text=True))


# --- the client call, with `responses` ---------------------------------------------------------------------

@pytest.fixture
def api(db_url):
    db = Database(db_url)
    yield MangoApi("https://pbx.test/vpbx/", NEW_KEY, NEW_SALT, MangoGuard(db, 10.0))
    db.dispose()


@responses.activate(assert_all_requests_are_fired=True)
def test_users_is_a_signed_form_and_its_answer_is_read(api):
    responses.post("https://pbx.test/vpbx/config/users/request", json={"users": USERS},
                   match=[matchers.urlencoded_params_matcher(
                       {"vpbx_api_key": NEW_KEY, "sign": sign(NEW_KEY, "{}", NEW_SALT), "json": "{}"})])
    assert api.users() == (OperatorEntry("101", "Ирина Петрова", ("7",)), OperatorEntry("102", None, ()))


@responses.activate
def test_an_answer_without_a_user_list_is_an_error_not_an_empty_directory(api):
    responses.post("https://pbx.test/vpbx/config/users/request", json={"result": 1000})
    with pytest.raises(PbxError) as caught:
        api.users()
    assert "no users list" in caught.value.message


@responses.activate
@pytest.mark.parametrize("status", [200, 400])
def test_a_refused_signature_is_a_wrong_request_whatever_the_status(api, status):
    responses.post("https://pbx.test/vpbx/config/users/request", json={"result": 3102}, status=status)
    with pytest.raises(PbxWrongRequest) as caught:
        api.users(probing=True)
    assert caught.value.result == 3102
    assert api.guard.state().strike_at is not None  # remembered: the next request that may fail waits


def test_a_command_without_a_key_and_salt_is_never_sent(db_url):
    db = Database(db_url)
    try:
        api = MangoApi("https://pbx.test/vpbx/", "", "", MangoGuard(db, 10.0))
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
            with pytest.raises(PbxError):
                api.users()
            assert len(mocked.calls) == 0
    finally:
        db.dispose()
