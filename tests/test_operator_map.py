"""Operators mapped to CRM users from the settings page (issue #17, item 2).

The admin sees each PBX operator (the directory's, and extensions only seen in calls) beside a choice of each
CRM's users read from the CRM (the fakes answer `GET /api/v4/users` and `user.get` page by page, as the
vendors do), saves every row in one post, and the next delivery names the chosen user. A CRM that does not
answer is said so, and its values stay editable as numbers."""
import re
from contextlib import contextmanager

import pytest
from sqlalchemy import select

from app import create_app
from connector.core.models import Operator, SettingsAudit
from connector.core.users import add_user
from connector.wiring import build_worker
from tests.conftest import ADMIN_TOKEN, console_login, csrf_token, dtmf, make_config, recording, summary
from tests.delivery_helpers import connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo
from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
from tests.fakes.server import serving

PHONE = "+79001234567"
TOKEN = "long-lived-test-token"


def amo_people(n: int) -> dict:
    """`n` amoCRM users; the last one is named so a test can find it on the second page (250 a page)."""
    people = {7000 + i: {"name": f"Сотрудник {i:03d}"} for i in range(n)}
    people[5551] = {"name": "Ирина Петрова"}
    people[7777] = {"name": "Олег Смирнов"}
    people[8888] = {"name": "Уволенный", "is_active": False}
    return people


def seed(db) -> None:
    with db.transaction() as s:
        add_user(s, "anna", "admin", "admin-pass-123")
        add_user(s, "sveta", "supervisor", "super-pass-123")
        add_user(s, "olga", "operator", "oper-pass-123", ["102"])
        s.add(Operator(extension="101", name="Ирина Петрова", groups=[]))
        s.add(Operator(extension="102", name="Олег Смирнов", groups=[]))


@pytest.fixture
def h(db_url):
    fake = FakeAmo(long_lived_token=TOKEN, people=amo_people(260))
    with connector_with_fake_amo(db_url, fake) as harness:
        seed(harness.db)
        console_login(harness.client, "anna", "admin-pass-123")
        yield harness


def section(page) -> str:
    html = page.get_data(as_text=True)
    return html[html.index('id="operators"'):html.index('id="connections"')]


def row(html: str, extension: str) -> str:
    match = re.search(rf'<tr id="operator-\d+" data-extension="{extension}"[^>]*>.*?</tr>', html, re.S)
    assert match, f"no row for {extension}"
    return match.group(0)


def selected(row_html: str) -> str:
    match = re.search(r'<option value="(\d*)"[^>]*selected[^>]*>([^<]*)<', row_html)
    return match.group(2) if match else ""


def save(client, mapping: dict, page_url="/settings"):
    token = csrf_token(client.get(page_url))
    return client.post("/settings/operators", data={"csrf_token": token, **mapping})


def deliver(h, entry_id: str, extension: str) -> None:
    h.fake.add_contact(PHONE)
    assert h.post("events/dtmf", dtmf(entry_id, "3")).status_code == 200
    assert h.post("events/recording", recording(entry_id, f"rec-{entry_id}")).status_code == 200
    assert h.post("events/summary", summary(entry_id, extension=extension, customer=PHONE)).status_code == 200
    h.drain()


def test_each_operator_gets_a_choice_of_amocrm_users_read_page_by_page(h):
    deliver(h, "call-1", "105")  # an extension the directory does not know
    html = section(h.client.get("/settings"))
    assert "Операторы и пользователи CRM" in html
    assert "Не сопоставлено операторов: 2 из 3." in html  # 101 is mapped by the environment (AMOCRM_USER_MAP)
    first, second, unknown = row(html, "101"), row(html, "102"), row(html, "105")
    assert "Ирина Петрова (101)" in first and selected(first) == "Ирина Петрова (#5551)"
    assert 'class="unmapped"' not in first and "не сопоставлен</small>" not in first
    assert "Олег Смирнов (102)" in second and 'class="unmapped"' in second and "не сопоставлен</small>" in second
    assert "нет в справочнике АТС" in unknown and 'class="unmapped"' in unknown
    # 263 users on two pages of 250: the last of them (the second page's) is offered too
    assert "Сотрудник 259 (#7259)" in second and "Уволенный (#8888) — отключён в CRM" in second
    users_requests = [r for r in h.fake.requests if r[2] == "/api/v4/users"]
    assert len(users_requests) == 2


def test_the_mapping_is_saved_in_one_post_audited_and_used_by_the_next_delivery(h):
    answer = save(h.client, {"map-amocrm-101": "5551", "map-amocrm-102": "7777", "map-amocrm-105": ""})
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/settings?operators_saved=1#operators")
    html = section(h.client.get("/settings?operators_saved=1"))
    assert "Сопоставление сохранено" in html and "Не сопоставлено операторов: 0 из 2." in html
    assert selected(row(html, "102")) == "Олег Смирнов (#7777)"

    deliver(h, "call-2", "102")
    [call] = h.fake.calls
    assert (call["uniq"], call["responsible_user_id"]) == ("call-2", 7777)

    with h.db.reading() as s:
        [entry] = s.scalars(select(SettingsAudit).where(SettingsAudit.scope == "amocrm_user_map")).all()
        assert (entry.actor, entry.before, entry.after) == ("anna", {"101": 5551}, {"101": 5551, "102": 7777})
    audit = h.client.get("/audit").get_data(as_text=True)
    assert "anna" in audit and "7777" in audit
    # the API reads the same map
    api = h.client.get("/api/v1/settings", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).get_json()
    assert api["amocrm_user_map"] == {"101": 5551, "102": 7777}


def test_clearing_a_row_unmaps_the_operator_and_the_page_marks_it(h):
    assert save(h.client, {"map-amocrm-101": ""}).status_code == 302
    html = section(h.client.get("/settings"))
    assert "Не сопоставлено операторов: 2 из 2." in html and 'class="unmapped"' in row(html, "101")
    deliver(h, "call-3", "101")
    assert "responsible_user_id" not in h.fake.calls[0]


def test_a_crm_that_does_not_answer_is_said_so_and_ids_stay_editable_as_numbers(h):
    h.fake.inject(500, path="/api/v4/users", method="GET", times=5)
    html = section(h.client.get("/settings"))
    assert "CRM сейчас не отвечает, список пользователей не получен" in html
    first = row(html, "101")
    assert "<select" not in first and re.search(r'name="map-amocrm-101" value="5551"', first)
    assert save(h.client, {"map-amocrm-101": "5551", "map-amocrm-102": "7777"}).status_code == 302
    deliver(h, "call-4", "102")
    assert h.fake.calls[0]["responsible_user_id"] == 7777


def test_a_bad_number_is_refused_in_words_and_nothing_is_saved(h):
    h.fake.inject(500, path="/api/v4/users", method="GET", times=5)
    answer = save(h.client, {"map-amocrm-101": "5551", "map-amocrm-102": "seven"})
    assert answer.status_code == 422
    html = section(answer)
    assert "Добавочный 102: номер пользователя CRM — целое число от 1 до 2147483647." in html
    assert re.search(r'name="map-amocrm-102" value="seven"', row(html, "102"))
    with h.db.reading() as s:
        assert s.scalars(select(SettingsAudit)).all() == []


def test_a_post_without_its_csrf_token_is_refused(h):
    h.client.get("/settings")
    answer = h.client.post("/settings/operators", data={"map-amocrm-102": "7777"})
    assert answer.status_code == 400 and "Форма устарела или подделана" in section(answer)
    with h.db.reading() as s:
        assert s.scalars(select(SettingsAudit)).all() == []


@pytest.mark.parametrize("who", [("sveta", "super-pass-123"), ("olga", "oper-pass-123")])
def test_only_an_admin_may_see_or_change_the_mapping(h, who):
    token = csrf_token(h.client.get("/settings"))
    h.client.post("/logout", data={"csrf_token": token})
    other = h.app.test_client()
    console_login(other, *who)
    assert other.get("/settings").status_code == 403
    login_page_token = csrf_token(other.get("/calls"))
    answer = other.post("/settings/operators", data={"csrf_token": login_page_token, "map-amocrm-102": "7777"})
    assert answer.status_code == 403
    with h.db.reading() as s:
        assert s.scalars(select(SettingsAudit)).all() == []


def test_the_english_page_says_the_same(h):
    html = section(h.client.get("/settings?lang=en"))
    assert "Operators and CRM users" in html and "Unmapped operators: 1 of 2." in html


@contextmanager
def bitrix24_console(db_url, fake: FakeBitrix24):
    with serving(create_fake_bitrix24(fake)) as url:
        config = make_config(db_url, CRM="bitrix24", SURVEY_WAIT_SECONDS=0, **fake.connector_settings(url))
        app = create_app(config)
        services = app.extensions["connector"]
        try:
            seed(services.db)
            client = app.test_client()
            console_login(client, "anna", "admin-pass-123")
            yield client, build_worker(config, services.db), services.db
        finally:
            services.db.dispose()


def test_bitrix24_users_are_read_with_user_get_page_by_page_and_the_map_saved(db_url):
    fake = FakeBitrix24(users={1, 5551, 5552, *range(9000, 9060)},
                        profiles={5551: {"NAME": "Ирина", "LAST_NAME": "Петрова"},
                                  5552: {"NAME": "Олег", "LAST_NAME": "Смирнов", "ACTIVE": False},
                                  9059: {"NAME": "Последний", "LAST_NAME": "Сотрудник"}})
    with bitrix24_console(db_url, fake) as (client, worker, db):
        html = section(client.get("/settings"))
        second = row(html, "102")
        assert selected(row(html, "101")) == "Ирина Петрова (#5551)"  # BITRIX24_USER_MAP 101:5551
        assert "Последний Сотрудник (#9059)" in second  # the second page of 50
        assert "Олег Смирнов (#5552) — отключён в CRM" in second
        assert [m for _, m, _ in fake.requests].count("user.get") == 2
        assert save(client, {"map-bitrix24-101": "5551", "map-bitrix24-102": "9059"}).status_code == 302
        with db.reading() as s:
            [entry] = s.scalars(select(SettingsAudit).where(SettingsAudit.scope == "bitrix24_user_map")).all()
            assert entry.after == {"101": 5551, "102": 9059}


def test_a_bitrix24_portal_in_trouble_is_said_so(db_url):
    fake = FakeBitrix24(failing=True)
    with bitrix24_console(db_url, fake) as (client, worker, db):
        html = section(client.get("/settings"))
        assert "Bitrix24" in html and "CRM сейчас не отвечает" in html
        assert re.search(r'name="map-bitrix24-101" value="5551"', row(html, "101"))


def test_a_portal_that_refuses_the_application_is_said_so(db_url):
    fake = FakeBitrix24()
    with bitrix24_console(db_url, fake) as (client, worker, db):
        fake.uninstalled = True  # the application was removed: 401 invalid_token, every grant refused
        html = section(client.get("/settings"))
        assert "CRM отказала коннектору в списке пользователей (доступ или оплата аккаунта)" in html
        assert re.search(r'name="map-bitrix24-101" value="5551"', row(html, "101"))
