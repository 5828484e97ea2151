"""The «Оповещения» page: a supervisor or an admin sets their own channels (an address, on or off, a mute, a test
message through a real SMTP server and through the fake Telegram, linking a chat by the bot's deep link); an
admin also sets the rules (the settings, who gets which line's alerts) and sees the channels' setup and the
refused chats. Each refusal is said beside its field and nothing is saved; an operator never sees the page."""
from __future__ import annotations

import html as html_text
import re
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from app import create_app
from connector.core import alert_people
from connector.core.alerting import Channel
from connector.core.models import AlertChannel, AlertRoute, SettingsAudit, User
from connector.core.users import add_user
from connector.delivery.alerts import settings as alert_settings
from connector.wiring import build_telegram_linker
from tests.conftest import csrf_token, make_config
from tests.fakes.smtp import smtp_settings
from tests.fakes.telegram import telegram_settings

PASSWORD = "correct horse battery"
CHAT = 700_100_200
LINE = "74950000001"


@pytest.fixture
def config_overrides(smtp, telegram):
    return {**smtp_settings(smtp[1]), **telegram_settings(telegram)}


@pytest.fixture
def inbox(smtp):
    return smtp[0]


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # roles, not hashing cost
    with db.transaction() as s:
        users = {name: add_user(s, name, role, PASSWORD, ["101"] if role == "operator" else [])
                 for name, role in (("ann", "admin"), ("sam", "supervisor"), ("olga", "operator"))}
        s.flush()
        return {name: user.id for name, user in users.items()}


@pytest.fixture
def linker(app, db):
    return build_telegram_linker(app.extensions["connector"].config, db)


def log_in(client, name):
    token = csrf_token(client.get("/login"))
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}).status_code == 302


def text_of(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, white space collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", html_text.unescape(body))


def post(client, url, **data):
    return client.post(url, data={"csrf_token": csrf_token(client.get("/alerts")), **data})


def after(client, answer):
    """The page a redirect leads to."""
    assert answer.status_code == 302, answer.status_code
    return client.get(answer.headers["Location"])


def settings_form(**changes) -> dict:
    form = {"supervisor_below": "0", "divergence": "0", "quiet_from_hour": "0", "quiet_until_hour": "0",
            "cap_per_hour": "0"}
    form.update(changes)
    return form


# --- who sees what ------------------------------------------------------------------------------------------

def test_an_operator_neither_sees_nor_opens_the_page(client, people):
    log_in(client, "olga")
    calls = client.get("/calls")
    assert 'href="/alerts"' not in calls.get_data(as_text=True) and "Оповещения" not in text_of(calls)
    page = client.get("/alerts")
    assert page.status_code == 403 and "Нет доступа" in text_of(page)
    assert post(client, "/alerts/email", email="olga@example.ru").status_code == 403
    assert post(client, "/alerts/routes", user="1").status_code == 403


def test_a_supervisor_sees_only_their_channels(client, people):
    log_in(client, "sam")
    assert 'href="/alerts"' in client.get("/calls").get_data(as_text=True)
    page = text_of(client.get("/alerts"))
    assert "Мои каналы" in page and "Правила" not in page and "Кто получает оповещения" not in page
    assert 'id="rules"' not in client.get("/alerts").get_data(as_text=True)
    assert "адрес не указан" in page and "не подключён" in page
    assert post(client, "/alerts/settings", **settings_form(cap_per_hour="5")).status_code == 403
    assert post(client, "/alerts/routes", user=str(people["sam"])).status_code == 403


def test_an_admin_sees_both_and_the_channels_setup(client, people, telegram, linker):
    log_in(client, "ann")
    page = text_of(client.get("/alerts"))
    assert "Мои каналы" in page and "Правила" in page
    assert "Сервер 127.0.0.1:" in page and "отправитель qa@example.ru" in page
    assert "Из настроек окружения (SMTP_HOST)" in page
    assert "Бот ещё не ответил коннектору." in page and "Токен из настроек окружения" in page
    assert "AAH-fake-token" not in client.get("/alerts").get_data(as_text=True)  # the token never on the page
    linker.run_once()  # learns the bot's name
    assert "Бот @quality_alerts_bot." in text_of(client.get("/alerts"))
    assert "По времени аккаунта: Москва (UTC+3)" in page
    assert "Пока никто: оповещения не приходят никому." in page


def test_without_smtp_or_a_bot_each_channel_says_who_sets_it_up(db_url, people_without_channels):
    client = people_without_channels
    log_in(client, "ann")
    page = text_of(client.get("/alerts"))
    assert "Почта не настроена: администратор указывает почтовый сервер на этой странице" in page  # my channel
    assert "Не настроена: укажите почтовый сервер." in page  # the setup
    assert "Telegram не настроен: администратор сохраняет токен бота на этой странице" in page
    assert "Не настроен: сохраните токен бота, который выдал @BotFather." in page
    assert "Отправить проверочное сообщение" not in page and "Подключить Telegram" not in page
    answer = post(client, "/alerts/telegram/link")
    assert answer.status_code == 409 and "Telegram не настроен" in text_of(answer)


@pytest.fixture
def people_without_channels(db_url, monkeypatch):
    app = create_app(make_config(db_url))
    app.config["TESTING"] = True
    db = app.extensions["connector"].db
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD, [])
    client = app.test_client()
    client.db = db  # the tests that read back what the page stored
    yield client
    app.extensions["connector"].reads.close()
    db.dispose()


# --- «Правила» ----------------------------------------------------------------------------------------------

def test_an_admin_saves_the_rules_audited(client, db, people):
    log_in(client, "ann")
    answer = post(client, "/alerts/settings", **settings_form(
        supervisor_below="4", divergence="5", quiet_from_hour="22", quiet_until_hour="8", cap_per_hour="3"))
    assert answer.status_code == 302
    page = text_of(client.get(answer.headers["Location"]))
    assert "Настройки оповещений сохранены." in page
    with db.reading() as s:
        stored = alert_settings.read(s)
        audit = s.scalars(select(SettingsAudit).where(SettingsAudit.scope == alert_settings.SCOPE)).one()
    assert (stored.supervisor_below, stored.divergence, stored.quiet_from_hour, stored.quiet_until_hour,
            stored.cap_per_hour) == (4, 5, 22, 8, 3)
    assert audit.actor == "ann"
    form_html = client.get("/alerts").get_data(as_text=True)
    assert re.search(r'<option selected value="22">22:00</option>', form_html)
    audit_page = text_of(client.get("/audit"))
    assert "Оповещения: правила" in audit_page and "Тихие часы с: не задано → 22:00" in audit_page


@pytest.mark.parametrize("field, value, said", [
    ("cap_per_hour", "500", "Целое число от 0 до 100 (0 — без ограничения)"),
    ("supervisor_below", "-1", "Целое число от 0 до 100 (0 — не оповещать)"),
    ("divergence", "пять", "Целое число от 0 до 100 (0 — не оповещать)"),
    ("quiet_from_hour", "25", "Выберите час из списка"),
])
def test_a_refused_setting_is_said_beside_its_field_and_nothing_is_saved(client, db, people, field, value, said):
    log_in(client, "ann")
    answer = post(client, "/alerts/settings", **settings_form(**{"cap_per_hour": "7", field: value}))
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    shown = "quiet" if field.startswith("quiet") else field
    assert re.search(rf'id="rules-error-{shown}">{re.escape(said)}<', body)
    assert "Не сохранено: исправьте отмеченное ниже." in text_of(answer)
    with db.reading() as s:
        assert alert_settings.read(s) == alert_settings.AlertSettings()
        assert s.scalars(select(SettingsAudit)).all() == []


def test_a_stale_form_is_refused(client, people):
    log_in(client, "ann")
    answer = client.post("/alerts/settings", data=settings_form(csrf_token="forged"))
    assert answer.status_code == 400 and "Форма устарела или подделана" in text_of(answer)


def test_an_admin_routes_a_line_to_a_supervisor_and_removes_it(client, db, people, mango_post):
    from tests.conftest import summary
    assert mango_post("events/summary", summary("call-1", line=LINE)).status_code == 200
    log_in(client, "ann")
    page = client.get("/alerts").get_data(as_text=True)
    person_select = re.search(r'<select[^>]*name="user"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert ">ann<" in person_select and ">sam<" in person_select and "olga" not in person_select
    line_select = re.search(r'<select[^>]*name="line"[^>]*>(.*?)</select>', page, re.S).group(1)
    assert "все линии" in line_select and f">{LINE}<" in line_select

    answer = post(client, "/alerts/routes", user=str(people["sam"]), line=LINE, group="")
    assert answer.status_code == 302
    answer = post(client, "/alerts/routes", user=str(people["ann"]), line="", group="sales-2")
    page = text_of(client.get(answer.headers["Location"]))
    assert "Получатель добавлен." in page
    assert f"sam {LINE} все группы" in page and "ann все линии sales-2" in page
    with db.reading() as s:
        routes = s.scalars(select(AlertRoute).order_by(AlertRoute.id)).all()
        assert [(r.user_id, r.line_number, r.operator_group) for r in routes] == [
            (people["sam"], LINE, ""), (people["ann"], "", "sales-2")]
        assert len(s.scalars(select(SettingsAudit).where(SettingsAudit.scope == alert_people.ROUTES_SCOPE)).all()) == 2
    audit_page = text_of(client.get("/audit"))
    assert "Оповещения: кто получает" in audit_page and "Линия: не задано → все линии" in audit_page

    answer = post(client, f"/alerts/routes/{routes[0].id}/remove")
    page = text_of(client.get(answer.headers["Location"]))
    assert "Получатель убран." in page and f"sam {LINE}" not in page
    answer = post(client, f"/alerts/routes/{routes[0].id}/remove")
    assert "Этого получателя уже нет: ничего не изменилось." in text_of(client.get(answer.headers["Location"]))


@pytest.mark.parametrize("who, group, field, said", [
    ("olga", "", "user", "Оповещения получают только супервизоры и администраторы"),
    ("nobody", "", "user", "Такого пользователя нет или он отключён."),
    ("sam", "отдел продаж", "group", "Группа операторов: её код в АТС"),
])
def test_a_refused_route_is_said_beside_its_field_and_nothing_is_added(client, db, people, who, group, field, said):
    log_in(client, "ann")
    user_id = people.get(who, 999)
    answer = post(client, "/alerts/routes", user=str(user_id), line="", group=group)
    assert answer.status_code == 422
    assert re.search(rf'id="route-error-{field}">{re.escape(said)}', answer.get_data(as_text=True))
    with db.reading() as s:
        assert s.scalars(select(AlertRoute)).all() == []


def test_a_line_too_long_for_a_route_is_said_beside_it(client, db, people):
    log_in(client, "ann")
    answer = post(client, "/alerts/routes", user=str(people["sam"]), line="7" * 40, group="")
    assert answer.status_code == 422
    assert 'id="route-error-line">Линия: номер АТС, до 32 символов.' in answer.get_data(as_text=True)


# --- «Мои каналы» -------------------------------------------------------------------------------------------

def test_a_person_sets_their_address_and_sends_themselves_a_test_email(client, db, people, inbox):
    log_in(client, "sam")
    answer = post(client, "/alerts/email", email="not an address")
    assert answer.status_code == 422
    assert 'id="alerts-error-email">Адрес почты, например name@example.ru' in answer.get_data(as_text=True)
    with db.reading() as s:
        assert s.get(User, people["sam"]).email is None

    answer = post(client, "/alerts/email", email=" sam@example.ru ")
    page = text_of(client.get(answer.headers["Location"]))
    assert "Адрес почты сохранён." in page and "Адрес: sam@example.ru" in page and "оповещения включены" in page
    with db.reading() as s:
        assert s.scalars(select(SettingsAudit).where(SettingsAudit.scope == "user:sam")).one().after == {
            "email": "sam@example.ru"}

    answer = post(client, "/alerts/channels/email/test")
    assert answer.status_code == 302  # a reload of what follows shows the page, it sends nothing more
    page = text_of(client.get(answer.headers["Location"]))
    assert "Отправлено" in page and "Отправлено" not in text_of(client.get("/alerts"))  # said once
    [mail] = inbox.messages
    assert mail["To"] == "sam@example.ru" and mail["Subject"] == "Проверка оповещений"


@pytest.mark.parametrize("typed", ["sam\x00@example.ru", "sam\x7f@example.ru", "sam@example.ru\x00"])
def test_an_address_no_database_or_mail_server_can_take_is_refused_beside_its_field(client, db, people, typed):
    log_in(client, "sam")
    answer = post(client, "/alerts/email", email=typed)
    assert answer.status_code == 422
    assert 'id="alerts-error-email">Адрес почты, например name@example.ru' in answer.get_data(as_text=True)
    with db.reading() as s:
        assert s.get(User, people["sam"]).email is None


def test_a_refused_test_email_says_the_servers_words(client, db, people, inbox):
    with db.transaction() as s:
        s.get(User, people["sam"]).email = "nobody@example.ru"  # the fake server answers 550 for it
    log_in(client, "sam")
    answer = post(client, "/alerts/channels/email/test")
    page = text_of(client.get(answer.headers["Location"]))
    assert "Не отправлено:" in page and "No such user" in page and inbox.messages == []


def test_a_person_mutes_a_channel_and_turns_it_off(client, db, people):
    with db.transaction() as s:
        s.get(User, people["sam"]).email = "sam@example.ru"
    log_in(client, "sam")
    before = datetime.now(timezone.utc)
    answer = post(client, "/alerts/channels/email", enabled="y", mute="hour")
    assert answer.status_code == 302
    with db.reading() as s:
        row = s.get(AlertChannel, (people["sam"], "email"))
        until = row.muted_until
    assert row.enabled and before + timedelta(minutes=59) < until < before + timedelta(minutes=61)
    page = text_of(client.get(answer.headers["Location"]))
    assert "Настройки канала сохранены." in page and "заглушено до " in page
    assert "оставить: заглушено до" in page  # the mute's choice keeps it by default

    post(client, "/alerts/channels/email", enabled="y", mute="keep")
    with db.reading() as s:
        assert s.get(AlertChannel, (people["sam"], "email")).muted_until == until

    post(client, "/alerts/channels/email", mute="morning")  # the switch left unticked: off
    with db.reading() as s:
        row = s.get(AlertChannel, (people["sam"], "email"))
    local = row.muted_until.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Moscow"))
    assert not row.enabled and (local.hour, local.minute) == (9, 0)
    page = text_of(client.get("/alerts"))
    assert "оповещения выключены" in page and "заглушено до " in page

    post(client, "/alerts/channels/email", enabled="y", mute="none")
    with db.reading() as s:
        row = s.get(AlertChannel, (people["sam"], "email"))
    assert row.enabled and row.muted_until is None
    assert "заглушено до" not in text_of(client.get("/alerts")).replace("оставить: заглушено до", "")


def test_a_person_links_telegram_by_the_deep_link_then_tests_and_unlinks_it(client, db, people, telegram,
                                                                            linker):
    log_in(client, "sam")
    answer = post(client, "/alerts/telegram/link")
    assert answer.status_code == 409
    assert "Бот Telegram ещё не ответил коннектору" in text_of(answer)

    linker.run_once()  # the linker learns the bot's name
    answer = post(client, "/alerts/telegram/link")
    assert answer.status_code == 200
    page = text_of(answer)
    assert "Открыть Telegram" in page
    assert "Откройте ссылку и нажмите Start (Начать) — больше ничего вводить не нужно." in page
    assert "Ссылка действует до " in page
    link = re.search(r'href="(https://t\.me/quality_alerts_bot\?start=[^"]+)"', answer.get_data(as_text=True))
    code = html_text.unescape(link.group(1)).partition("start=")[2]

    telegram.user_sends(CHAT, f"/start {code}", first_name="Сэм")  # what the link's Start button sends
    assert linker.run_once() == 1
    page = text_of(client.get("/alerts"))
    assert "подключён" in page and "не подключён" not in page and "Отвязать" in page

    answer = post(client, "/alerts/channels/telegram/test")
    assert "Отправлено" in text_of(after(client, answer))
    assert "Проверка: оповещения о низких оценках будут приходить сюда (Telegram)." in telegram.texts_to(CHAT)

    answer = post(client, "/alerts/telegram/unlink")
    page = text_of(client.get(answer.headers["Location"]))
    assert "Telegram отвязан" in page and "не подключён" in page
    with db.reading() as s:
        assert alert_people.address(s, people["sam"], Channel.TELEGRAM) is None


def test_a_bot_that_does_not_answer_says_its_error_when_linking(client, db, people, telegram, linker):
    telegram.fail_next(500, method="getMe")
    with pytest.raises(Exception):
        linker.run_once()
    log_in(client, "sam")
    page = text_of(client.get("/alerts"))
    assert "Бот Telegram ещё не ответил коннектору: ссылка для подключения появится" in page
    assert "Последняя ошибка:" in page
    answer = post(client, "/alerts/telegram/link")
    page = text_of(answer)
    assert answer.status_code == 409
    assert "Бот Telegram ещё не ответил коннектору, поэтому ссылку пока не сделать" in page
    assert "Последняя ошибка:" in page


def test_a_chat_that_blocked_the_bot_shows_its_reason_to_its_person_and_the_admin(client, db, people, telegram):
    with db.transaction() as s:
        row = alert_people.channel_row(s, people["sam"], Channel.TELEGRAM)
        row.address = str(CHAT)
        s.flush()
        alert_people.refuse(s, people["sam"], Channel.TELEGRAM, "Telegram: Forbidden: bot was blocked by the user")
    log_in(client, "sam")
    page = text_of(client.get("/alerts"))
    assert "отключён: бот заблокирован в Telegram" in page  # in words, not the Bot API's English
    assert "Подключить Telegram заново" in page
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/alerts"))})
    log_in(client, "ann")
    page = text_of(client.get("/alerts"))
    assert "Отключённые каналы" in page
    assert "sam, Telegram: бот заблокирован в Telegram" in page


def test_a_test_message_with_no_address_says_what_to_do(client, db, people):
    log_in(client, "sam")
    assert "Сначала укажите адрес почты." in text_of(after(client, post(client, "/alerts/channels/email/test")))
    assert "Сначала подключите Telegram." in text_of(after(client, post(client, "/alerts/channels/telegram/test")))


def test_the_page_speaks_english_on_request(client, people):
    log_in(client, "ann")
    page = text_of(client.get("/alerts?lang=en"))
    assert "My channels" in page and "Rules" in page and "no address given" in page
    assert "Мои каналы" not in page



def test_an_admin_saves_a_mail_server_and_a_bot_token_in_the_console_and_they_are_used(people_without_channels):
    """Neither in the environment: the admin enters them on the page; a refusal is said beside its field; the
    password and the token never appear on the page, and each person's test message goes through them."""
    from tests.fakes.server import serving
    from tests.fakes.smtp import smtp_server
    from tests.fakes.telegram import FakeTelegram, create_fake_telegram

    client = people_without_channels
    db = client.db
    log_in(client, "ann")
    refused = post(client, "/alerts/smtp", host="smtp example", port="587", security="none", sender="qa@example.ru")
    assert refused.status_code == 422 and "Имя или адрес почтового сервера" in text_of(refused)
    with smtp_server(auth_require_tls=False) as (inbox, port):
        saved = post(client, "/alerts/smtp", host="127.0.0.1", port=str(port), security="none", username="",
                     password="s3cret-smtp-password", sender="Контроль качества <qa@example.ru>")
        assert saved.status_code == 302
        page = client.get("/alerts").get_data(as_text=True)
        assert "Из консоли." in page and "s3cret-smtp-password" not in page
        assert post(client, "/alerts/email", email="ann@example.ru").status_code == 302
        tried = after(client, post(client, "/alerts/channels/email/test"))
        assert "Отправлено" in text_of(tried)
        assert [m["To"] for m in inbox.messages] == ["ann@example.ru"]
        assert inbox.messages[0]["From"] == "Контроль качества <qa@example.ru>"
    assert "Токен, который выдал @BotFather" in text_of(post(client, "/alerts/telegram/token", token="not a token"))
    fake = FakeTelegram()
    with serving(create_fake_telegram(fake)) as fake.url:
        assert post(client, "/alerts/telegram/token", token=fake.token).status_code == 302
        page = client.get("/alerts").get_data(as_text=True)
        assert "Токен из консоли." in page and fake.token not in page
    with db.reading() as s:
        from connector.core.models import SettingsAudit
        audited = " ".join(str(a.after) for a in s.query(SettingsAudit).all())
    assert "s3cret-smtp-password" not in audited and fake.token not in audited and "…" in audited
    assert post(client, "/alerts/smtp/forget").status_code == 302
    assert "Не настроена: укажите почтовый сервер." in text_of(client.get("/alerts"))


def test_a_supervisor_schedules_their_report_e_mail(client, db, people):
    log_in(client, "sam")
    page = text_of(client.get("/alerts"))
    assert "Отчёт по почте" in page and "Не приходит." in page
    assert post(client, "/alerts/report", period="weekly", hour="9", weekday="4").status_code == 302
    page = text_of(client.get("/alerts"))
    assert "Приходит каждую неделю: пятница, 9:00, за 7 дней до этого дня." in page
    assert "Но адрес почты не указан, и отчёт не придёт" in page  # said, not left to be found out on Friday
    assert post(client, "/alerts/email", email="sam@example.ru").status_code == 302
    assert "отчёт не придёт" not in text_of(client.get("/alerts"))
    refused = post(client, "/alerts/report", period="hourly", hour="9", weekday="0")
    assert refused.status_code == 422 and "Выберите значения из списков" in text_of(refused)
    assert post(client, "/alerts/report", period="none", hour="9", weekday="0").status_code == 302
    assert "Не приходит." in text_of(client.get("/alerts"))
    with db.reading() as s:
        from connector.core.models import ReportSubscription
        assert s.scalars(select(ReportSubscription)).all() == []


def test_a_mail_server_or_telegram_problem_is_said_in_words_and_an_unknown_answer_as_it_came(app):
    from webui.labels import mail_problem_label, telegram_problem_label

    with app.test_request_context("/alerts"):
        assert mail_problem_label("the mail server at 127.0.0.1:2525 did not answer (ConnectionRefusedError)") == \
            "почтовый сервер не отвечает: проверьте его адрес и порт"
        assert telegram_problem_label("Telegram will not deliver to chat 7: Forbidden: bot was blocked by the user") \
            == "бот заблокирован в Telegram"
        assert mail_problem_label("550 5.1.1 No such user") == "550 5.1.1 No such user"
