"""The rating link in the console and the settings API: an admin sets the channel on the settings page's card
(each refusal beside its field, nothing saved), keeps the do-not-contact list, and reads both through the API;
the call page shows a call's request in words and local times; other roles see none of the settings."""
import html as html_text
import re
from datetime import datetime, timedelta, timezone

import pytest

from connector.core.models import (Call, RatingRequest, RequestReason, RequestStatus, ScoreOrigin,
                                   SettingsAudit)
from connector.core.users import add_user
from connector.inbound.link import contacts, settings as link_settings
from tests.conftest import csrf_token

PASSWORD = "correct horse battery"
NUMBER = "79161234567"
# 09:30 UTC on 20 November 2026: 12:30 in Moscow.
ENDED = datetime(2026, 11, 20, 9, 30, tzinfo=timezone.utc)


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # roles, not hashing cost
    with db.transaction() as s:
        add_user(s, "ann", "admin", PASSWORD, [])
        add_user(s, "sam", "supervisor", PASSWORD, [])
        add_user(s, "olga", "operator", PASSWORD, ["101"])


def log_in(client, name):
    token = csrf_token(client.get("/login"))
    assert client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token}).status_code == 302


def text_of(response) -> str:
    """The page as a person reads it: tags dropped, entities decoded, white space collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.get_data(as_text=True))
    return re.sub(r"\s+", " ", html_text.unescape(body))


def card_form(client, **changes) -> dict:
    """The card's form as the page fills it (the values in force), with `changes` typed over it."""
    page = client.get("/settings").get_data(as_text=True)
    form = {"csrf_token": csrf_token(client.get("/settings"))}
    card = page[page.index('id="rating-link-form"'):page.index("</form>", page.index('id="rating-link-form"'))]
    for name, value in re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', card):
        if name != "csrf_token":
            form[name] = html_text.unescape(value)
    for name in ("enabled", "also_scored"):
        form.pop(name, None)
        if re.search(rf'<input[^>]*checked[^>]*name="{name}"|<input[^>]*name="{name}"[^>]*checked', card):
            form[name] = "y"
    for name, body in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', card, re.S):
        chosen = re.search(r'<option[^>]*selected[^>]*value="([^"]*)"|<option value="([^"]*)"[^>]*selected', body)
        form[name] = html_text.unescape(next(g for g in chosen.groups() if g is not None)) if chosen else ""
    form["template"] = html_text.unescape(re.search(r'<textarea[^>]*name="template"[^>]*>\r?\n?(.*?)</textarea>',
                                                    card, re.S).group(1))
    for name, value in changes.items():
        if value is None:
            form.pop(name, None)
        else:
            form[name] = value
    return form


def stored(db):
    with db.reading() as s:
        return link_settings.read(s)


# --- the settings card --------------------------------------------------------------------------------------

def test_an_admin_turns_the_channel_on_and_sees_what_was_saved(client, db, people):
    log_in(client, "ann")
    page = text_of(client.get("/settings"))
    assert "Оценка по ссылке (SMS)" in page and "Ещё не сохранялись: оценка по ссылке выключена." in page
    assert "хорошо или плохо (хорошо = 10, плохо = 1)" in page
    assert "от 1 до 5 (1→1, 2→3, 3→6, 4→8, 5→10)" in page
    assert "По времени аккаунта: Москва (UTC+3)" in page
    assert "Оплата SMS списывается по этому сотруднику" in page
    assert "От 1 до 10: клиент, звонивший несколько раз" in page and "не больше 268 символов с кириллицей" in page

    answer = client.post("/settings/rating-link", data=card_form(
        client, enabled="y", delay_minutes="90", send_from_hour="10", send_until_hour="20", daily_cap="2",
        valid_days="5", scale="five", template="Оцените разговор с {operator} {date}: {link}",
        from_extension="555", sms_sender="Shop", company="ООО «Ромашка»"))
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/settings?link_saved=1#rating-link")
    settings, saved_at = stored(db)
    assert (settings.enabled, settings.delay_minutes, settings.send_from_hour, settings.send_until_hour,
            settings.daily_cap, settings.valid_days, settings.scale, settings.from_extension, settings.sms_sender,
            settings.company) == (True, 90, 10, 20, 2, 5, "five", "555", "Shop", "ООО «Ромашка»")
    assert settings.template == "Оцените разговор с {operator} {date}: {link}" and saved_at is not None

    page = text_of(client.get("/settings?link_saved=1"))
    assert "Настройки оценки по ссылке сохранены." in page and "Сохранены " in page
    shown = card_form(client)  # what the card's fields now hold
    assert (shown["company"], shown["template"], shown["delay_minutes"], shown["scale"], shown.get("enabled")) == \
        ("ООО «Ромашка»", "Оцените разговор с {operator} {date}: {link}", "90", "five", "y")
    with db.reading() as s:
        audit = s.query(SettingsAudit).filter_by(scope=link_settings.SCOPE).one()
    assert audit.actor == "ann" and audit.after["delay_minutes"] == 90
    audit_page = text_of(client.get("/audit"))
    assert "Оценка по ссылке (SMS)" in audit_page
    assert "Через сколько минут после звонка: не задано → 90" in audit_page
    assert "Шкала на странице оценки: не задано → от 1 до 5" in audit_page
    assert "Отправлять SMS со ссылкой на оценку: не задано → вкл." in audit_page


@pytest.mark.parametrize("template, said", [
    ("Оцените нас, пожалуйста", "В тексте должна быть {link}: на её место встанет ссылка."),
    ("Я" * 250 + " {link}", "Со ссылкой, самым длинным именем оператора и датой текст займёт 297 символов, "
                            "а SMS вмещает 268 (с кириллицей)"),  # 250 + 1 + http://127.0.0.1:8080/r/ + 22
    ("{link} {name}", "Можно только {link}, {operator} и {date}"),
    ("{link.upper}", "Можно только {link}, {operator} и {date}"),
])
def test_a_template_that_cannot_go_is_refused_beside_it_and_nothing_is_saved(client, db, people, template, said):
    log_in(client, "ann")
    answer = client.post("/settings/rating-link", data=card_form(client, enabled="y", template=template))
    assert answer.status_code == 422
    body = answer.get_data(as_text=True)
    error = re.search(r'<span class="error" id="link-error-template">(.*?)</span>', body, re.S).group(1)
    assert said in html_text.unescape(error) and "Ничего не сохранено" in html_text.unescape(error)
    assert 'id="link-template" aria-invalid="true"' in body or ('aria-invalid="true"' in body and
                                                                 'id="link-template"' in body)
    assert html_text.escape(template, quote=False) in body  # kept as typed
    assert stored(db) == (link_settings.LinkSettings(), None)


@pytest.mark.parametrize("changes, field, said", [
    ({"send_from_hour": "21", "send_until_hour": "9"}, "hours", "Часы отправки: конец позже начала"),
    ({"delay_minutes": "-5"}, "delay_minutes", "Задержка: от 0 до 10080 минут"),
    ({"delay_minutes": "два часа"}, "delay_minutes", "Задержка: от 0 до 10080 минут"),
    ({"daily_cap": "0"}, "daily_cap", "Целое число от 1 до 10"),
    ({"from_extension": "10a"}, "from_extension", "Добавочный сотрудника: только цифры"),
    ({"sms_sender": "Очень длинное"}, "sms_sender", "Латинские буквы, цифры"),
    ({"scale": "stars"}, "scale", "Выберите значение из списка"),
])
def test_each_bad_value_is_said_beside_its_field(client, db, people, changes, field, said):
    log_in(client, "ann")
    answer = client.post("/settings/rating-link", data=card_form(client, **changes))
    assert answer.status_code in (400, 422)
    body = html_text.unescape(answer.get_data(as_text=True))
    assert said in re.search(rf'id="link-error-{field}">(.*?)</span>', body, re.S).group(1)
    assert stored(db) == (link_settings.LinkSettings(), None)


def test_a_line_is_switched_off_alone(client, db, people):
    with db.transaction() as s:
        s.add_all([Call(entry_id="a", line_number="74950000001"), Call(entry_id="b", line_number="74950000002")])
    log_in(client, "ann")
    page = text_of(client.get("/settings"))
    assert "74950000001" in page and "74950000002" in page and "как выше (сейчас: выключена)" in page
    answer = client.post("/settings/rating-link", data=card_form(client, enabled="y", **{"line:74950000002": "off"}))
    assert answer.status_code == 302
    settings, _ = stored(db)
    assert settings.lines == {"74950000002": {"enabled": False}}
    assert settings.for_line("74950000001").enabled and not settings.for_line("74950000002").enabled
    body = client.get("/settings").get_data(as_text=True)
    assert re.search(r'name="line:74950000002"[^>]*>.*?<option value="off" selected', body, re.S)


def test_a_forged_form_saves_nothing(client, db, people):
    log_in(client, "ann")
    form = card_form(client, enabled="y", csrf_token="forged")
    answer = client.post("/settings/rating-link", data=form)
    assert answer.status_code == 400
    assert "Форма устарела или подделана" in text_of(answer)
    assert stored(db) == (link_settings.LinkSettings(), None)


@pytest.mark.parametrize("name", ["sam", "olga"])
def test_only_an_admin_sees_or_posts_the_card(client, db, people, name):
    log_in(client, name)
    assert client.get("/settings").status_code == 403
    token = csrf_token(client.get("/calls"))
    for path, data in [("/settings/rating-link", {"enabled": "y", "template": "{link}"}),
                       ("/settings/do-not-contact", {"number": NUMBER}),
                       ("/settings/do-not-contact/remove", {"number": NUMBER})]:
        answer = client.post(path, data={**data, "csrf_token": token})
        assert answer.status_code == 403, path
        assert "Оценка по ссылке" not in text_of(answer)
    assert stored(db) == (link_settings.LinkSettings(), None)
    with db.reading() as s:
        assert contacts.listed(s) == []


# --- the do-not-contact list ------------------------------------------------------------------------------

def add_number(client, number):
    return client.post("/settings/do-not-contact", data={"number": number, "csrf_token": csrf_token(
        client.get("/settings"))})


def test_an_admin_adds_a_number_once_and_removes_it(client, db, people):
    log_in(client, "ann")
    assert "Номеров в списке: 0." in text_of(client.get("/settings"))
    answer = add_number(client, "8 (916) 123-45-67")
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/settings?dnc=added#do-not-contact")
    assert "916" not in answer.headers["Location"]  # the number stays out of addresses
    page = text_of(client.get("/settings?dnc=added"))
    assert "Номер добавлен в список" in page and "Номеров в списке: 1." in page
    assert "+79161234567 ann " in page and "20" in page  # the number in full, who, when

    again = add_number(client, "+7 916 123 45 67")
    assert again.headers["Location"].endswith("?dnc=already#do-not-contact")
    assert "Этот номер уже в списке: ничего не изменилось." in text_of(client.get("/settings?dnc=already"))
    with db.reading() as s:
        assert [(r.number, r.source, r.actor) for r in contacts.listed(s)] == [(NUMBER, "admin", "ann")]

    removed = client.post("/settings/do-not-contact/remove", data={"number": NUMBER, "csrf_token": csrf_token(
        client.get("/settings"))})
    assert removed.headers["Location"].endswith("?dnc=removed#do-not-contact")
    assert "Номер убран из списка." in text_of(client.get("/settings?dnc=removed"))
    with db.reading() as s:
        assert contacts.listed(s) == []
        audit = [(a.actor, a.before, a.after) for a in s.query(SettingsAudit).filter_by(scope=contacts.SCOPE)
                 .order_by(SettingsAudit.id)]
    assert audit == [("ann", {}, {"number": NUMBER, "source": "admin"}),
                     ("ann", {"number": NUMBER, "source": "admin"}, {})]
    audit_page = text_of(client.get("/audit"))
    assert "Список «не беспокоить»" in audit_page
    assert "Номер: 79161234567 → не задано" in audit_page and "Кто добавил: не задано → администратор" in audit_page


@pytest.mark.parametrize("number", ["12345", "+8 916 123 45 67", "79161234567890", "abc", "", "+7 916 123 45 6x"])
def test_a_number_that_is_none_is_refused_in_words(client, db, people, number):
    log_in(client, "ann")
    answer = add_number(client, number)
    assert answer.status_code == 422
    assert "Номер: 11 цифр, начиная с +7, 7 или 8" in text_of(answer)
    with db.reading() as s:
        assert contacts.listed(s) == []


def test_a_customer_added_on_the_page_is_named_so(client, db, people):
    with db.transaction() as s:
        assert contacts.add(s, NUMBER, contacts.ContactSource.CUSTOMER, None)
    log_in(client, "ann")
    assert "+79161234567 клиент, на странице оценки" in text_of(client.get("/settings"))


@pytest.mark.parametrize("written", ["+79161234567", "89161234567", "79161234567", "+7 (916) 123-45-67",
                                     "8.916.123.45.67"])
def test_every_way_of_writing_a_russian_number_is_the_same_number(db, written):
    assert contacts.normalised(written) == NUMBER
    with db.transaction() as s:
        contacts.add(s, written, "admin", "ann")
    with db.reading() as s:
        assert contacts.is_listed(s, "+7 916 123-45-67") and not contacts.is_listed(s, "79160000000")
        assert contacts.count(s) == 1


# --- the settings API -------------------------------------------------------------------------------------

def test_the_api_reads_and_changes_the_settings(client, db, auth):
    got = client.get("/api/v1/settings/rating-link", headers=auth)
    assert got.status_code == 200
    assert got.json == {**link_settings.LinkSettings().as_dict(), "saved_at": None}
    changed = client.patch("/api/v1/settings/rating-link", headers=auth, json={
        "enabled": True, "daily_cap": 3, "lines": {"74950000001": {"enabled": False}}})
    assert changed.status_code == 200
    assert (changed.json["enabled"], changed.json["daily_cap"], changed.json["lines"]) == \
        (True, 3, {"74950000001": {"enabled": False}})
    assert changed.json["saved_at"] is not None
    assert client.get("/api/v1/settings/rating-link", headers=auth).json == changed.json
    with db.reading() as s:
        assert s.query(SettingsAudit).filter_by(scope=link_settings.SCOPE).one().actor == "admin token"


@pytest.mark.parametrize("body, status, field", [
    ({"daily_cap": 0}, 422, "daily_cap"),
    ({"daily_cap": True}, 422, "daily_cap"),
    ({"scale": "stars"}, 422, "scale"),
    ({"template": "Оцените нас"}, 422, "template"),
    ({"template": "{link.upper}"}, 422, "template"),
    ({"from_extension": "١٢٣"}, 422, "from_extension"),  # digits of another script
    ({"lines": {"line one": {"enabled": True}}}, 422, "lines"),
    ({"colour": "red"}, 422, "colour"),
    ({"template": "Я" * 260 + "{link}"}, 409, "template"),  # fits the field, not an SMS with the link
    ({"send_from_hour": 22, "send_until_hour": 8}, 409, "send_until_hour"),
])
def test_the_api_refuses_a_bad_change_naming_the_field_and_saves_nothing(client, db, auth, body, status, field):
    answer = client.patch("/api/v1/settings/rating-link", headers=auth, json=body)
    assert answer.status_code == status
    assert answer.json["error"].startswith(f"{field}: ")
    assert stored(db) == (link_settings.LinkSettings(), None)


def test_the_api_keeps_the_do_not_contact_list(client, db, auth):
    assert client.get("/api/v1/do-not-contact", headers=auth).json == {"items": []}
    added = client.post("/api/v1/do-not-contact", headers=auth, json={"number": "+79161234567"})
    assert added.status_code == 201
    assert {k: added.json[k] for k in ("number", "source", "actor")} == \
        {"number": NUMBER, "source": "admin", "actor": "admin token"}
    again = client.post("/api/v1/do-not-contact", headers=auth, json={"number": "89161234567"})
    assert again.status_code == 200 and again.json["number"] == NUMBER
    assert [i["number"] for i in client.get("/api/v1/do-not-contact", headers=auth).json["items"]] == [NUMBER]
    for bad in ({"number": "12345"}, {"number": "+7 916 123 45 67"}, {"number": 79161234567}, {}, [NUMBER],
                {"number": NUMBER, "why": "asked"}):
        refused = client.post("/api/v1/do-not-contact", headers=auth, json=bad)
        assert refused.status_code == 422 and refused.json["error"].startswith("number: "), bad
    assert client.delete("/api/v1/do-not-contact/79161234567", headers=auth).status_code == 204
    assert client.delete("/api/v1/do-not-contact/79161234567", headers=auth).status_code == 404
    assert client.delete("/api/v1/do-not-contact/abc", headers=auth).status_code == 404
    assert client.get("/api/v1/do-not-contact", headers=auth).json == {"items": []}


def test_only_an_admin_token_reaches_them(client, db, people):
    from connector.core.users import issue_token

    with db.transaction() as s:
        tokens = {name: issue_token(s, name, days=1) for name in ("sam", "olga")}
    for token in tokens.values():
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/settings/rating-link", headers=headers).status_code == 403
        assert client.patch("/api/v1/settings/rating-link", headers=headers, json={"enabled": True}).status_code == 403
        assert client.get("/api/v1/do-not-contact", headers=headers).status_code == 403
        assert client.post("/api/v1/do-not-contact", headers=headers, json={"number": NUMBER}).status_code == 403
        assert client.delete(f"/api/v1/do-not-contact/{NUMBER}", headers=headers).status_code == 403
    assert client.get("/api/v1/do-not-contact").status_code == 401
    assert stored(db) == (link_settings.LinkSettings(), None)


# --- the call page ----------------------------------------------------------------------------------------

@pytest.fixture
def rated_call(db):
    """Olga's call (extension 101) whose customer was asked by link and answered with a comment."""
    with db.transaction() as s:
        call = Call(entry_id="linked", direction="inbound", operator_extension="101", customer_phone=NUMBER,
                    line_number="74950000001", created_at=ENDED - timedelta(minutes=5), ended_at=ENDED,
                    talk_seconds=240)
        s.add(call)
        s.flush()
        s.add(RatingRequest(call_row=call.id, number=NUMBER, line_number="74950000001",
                            status=RequestStatus.DELIVERED, due_at=ENDED + timedelta(hours=2),
                            expires_at=ENDED + timedelta(days=7), queued_at=ENDED + timedelta(hours=2),
                            sent_at=ENDED + timedelta(hours=2, minutes=1),
                            delivered_at=ENDED + timedelta(hours=2, minutes=2),
                            opened_at=ENDED + timedelta(hours=3), rated_at=ENDED + timedelta(hours=3, minutes=1),
                            rating=1, comment="<b>Спасибо</b>, всё решили"))
    return "linked"


def request_block(client, call_id) -> str:
    answer = client.get(f"/calls/{call_id}")
    assert answer.status_code == 200
    body = answer.get_data(as_text=True)
    start = body.index('id="rating-request"')
    return body[start:body.index("</div>", start)]


def test_the_call_page_says_what_became_of_the_request_in_local_times(client, people, rated_call):
    log_in(client, "sam")
    block = request_block(client, rated_call)
    shown = re.sub(r"\s+", " ", html_text.unescape(re.sub(r"<[^>]+>", " ", block)))
    assert "Запрос оценки по ссылке" in shown and "Состояние доставлен " in shown
    # 09:30 UTC + 2 h = 14:30 in Moscow; sent a minute later, delivered two, opened at 15:30, answered 15:31.
    assert "Отправка назначена 20.11.2026, 14:30" in shown and "Отправлен 20.11.2026, 14:31" in shown
    assert "Доставлен 20.11.2026, 14:32" in shown and "Клиент открыл ссылку 20.11.2026, 15:30" in shown
    assert "Клиент ответил 20.11.2026, 15:31" in shown and "Ссылка действует до 27.11.2026, 12:30" in shown
    assert "Ответ на странице оценки Хорошо" in shown and "Комментарий клиента <b>Спасибо</b>, всё решили" in shown
    assert "&lt;b&gt;Спасибо&lt;/b&gt;" in block and "<b>" not in block  # escaped, never markup
    assert "Номер 79161234567" in shown  # a supervisor sees the number, as on the card above


def test_an_operator_sees_their_own_request_with_the_number_in_full_as_on_the_card(client, people, rated_call):
    log_in(client, "olga")
    page = text_of(client.get(f"/calls/{rated_call}"))
    block = request_block(client, rated_call)
    assert f"Клиент {NUMBER}" in page  # the card above: operators call customers back
    assert re.search(rf'id="rating-request-number">{NUMBER}<', block) and "…" not in block


@pytest.mark.parametrize("status", [RequestStatus.SKIPPED, RequestStatus.SCHEDULED, RequestStatus.QUEUED])
def test_a_request_whose_sms_never_went_shows_no_link(client, db, people, rated_call, status):
    with db.transaction() as s:
        row = s.query(RatingRequest).one()
        row.status = status
        row.reason = RequestReason.DO_NOT_CONTACT if status == RequestStatus.SKIPPED else None
        row.sent_at = row.delivered_at = row.opened_at = row.rated_at = row.rating = row.comment = None
        if status != RequestStatus.QUEUED:
            row.queued_at = None
    log_in(client, "sam")
    block = request_block(client, rated_call)
    shown = re.sub(r"\s+", " ", html_text.unescape(re.sub(r"<[^>]+>", " ", block)))
    assert "Ссылка действует до" not in shown and "expires_at" not in block
    assert "Клиент открыл ссылку" not in shown and "Ответ на странице оценки" not in shown
    if status == RequestStatus.SKIPPED:
        assert "Отправка была назначена 20.11.2026, 14:30" in shown
        assert "не будет отправлен — номер в списке «не беспокоить»" in shown
        assert "SMS не отправлялось: ссылки на оценку у клиента нет." in shown
    else:
        assert "Отправка назначена 20.11.2026, 14:30" in shown
        assert "SMS ещё не отправлено: ссылка появится у клиента после отправки." in shown
    english = client.get(f"/calls/{rated_call}?lang=en").get_data(as_text=True)
    assert "Link valid until" not in english and "Ссылка" not in english


def test_a_request_whose_sms_went_shows_its_link(client, db, people, rated_call):
    with db.transaction() as s:
        row = s.query(RatingRequest).one()
        row.status, row.delivered_at, row.opened_at, row.rated_at, row.rating = RequestStatus.SENT, None, None, \
            None, None
    log_in(client, "sam")
    shown = text_of(client.get(f"/calls/{rated_call}"))
    assert "Ссылка действует до 27.11.2026, 12:30" in shown and "Отправка назначена 20.11.2026, 14:30" in shown
    assert "SMS не отправлялось" not in shown and "SMS ещё не отправлено" not in shown


def test_another_operator_sees_neither_the_call_nor_its_request(client, db, people, rated_call):
    with db.transaction() as s:
        add_user(s, "petr", "operator", PASSWORD, ["102"])
    log_in(client, "petr")
    answer = client.get(f"/calls/{rated_call}")
    assert answer.status_code == 404 and "Запрос оценки по ссылке" not in text_of(answer)


def test_a_skipped_request_says_why_and_a_call_without_one_shows_no_block(client, db, people, rated_call):
    with db.transaction() as s:
        row = s.query(RatingRequest).one()
        row.status, row.reason, row.detail = RequestStatus.FAILED, RequestReason.BILLING, "2001"
        row.sent_at = row.delivered_at = row.opened_at = row.rated_at = row.rating = row.comment = None
        s.add(Call(entry_id="plain", direction="inbound", operator_extension="101", customer_phone=NUMBER))
    log_in(client, "ann")
    block = request_block(client, rated_call)
    assert "не удался — АТС: недостаточно средств или ограничение тарифа (2001)" in html_text.unescape(block)
    assert re.search(r'id="rating-request-sent_at">—<', block)
    assert 'id="rating-request"' not in client.get("/calls/plain").get_data(as_text=True)


def test_a_customers_opt_out_is_said_in_words_in_the_audit(client, db, people):
    with db.transaction() as s:
        contacts.add(s, NUMBER, contacts.ContactSource.CUSTOMER, None)
    log_in(client, "ann")
    audit = client.get("/audit").get_data(as_text=True)
    assert "клиент, на странице оценки" in text_of(client.get("/audit"))
    assert contacts.CUSTOMER_ACTOR not in audit
    english = client.get("/audit?lang=en").get_data(as_text=True)
    assert "the customer, on the rating page" in html_text.unescape(english)
    assert contacts.CUSTOMER_ACTOR not in english


def test_a_phone_number_is_called_a_number_in_english(client, db, people, rated_call):
    log_in(client, "ann")
    assert add_number(client, NUMBER).status_code == 302
    settings = client.get("/settings?lang=en").get_data(as_text=True)
    card = settings[settings.index('id="do-not-contact-list"'):]
    assert "<th>Number</th>" in card and 'data-label="Number"' in card and "No." not in card
    block = request_block(client, rated_call)  # the language is remembered
    assert re.search(r"<dt>Number</dt><dd[^>]*>79161234567<", block) and "No." not in block
    audit = text_of(client.get("/audit"))
    assert "Number: not set → 79161234567" in audit and "No.:" not in audit


# --- the labels -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", ["ru", "en"])
def test_every_status_reason_and_origin_has_words_in_both_languages(app, lang):
    from webui.labels import request_reason_label, request_status_label, score_origin_label

    with app.test_request_context(f"/?lang={lang}"):
        for label, codes in [(request_status_label, RequestStatus), (request_reason_label, RequestReason),
                             (score_origin_label, ScoreOrigin)]:
            words = {code: label(code) for code in codes}
            assert all(code in label.words for code in codes), [c for c in codes if c not in label.words]
            if lang == "ru":  # a code shown as stored would be English
                assert all(word != code for code, word in words.items())
            cyrillic = [w for w in words.values() if re.search("[а-яё]", w, re.I)]
            assert len(cyrillic) == (len(words) if lang == "ru" else 0), words
        assert request_status_label(RequestStatus.QUEUED) == \
            {"ru": "в очереди на отправку", "en": "queued for sending"}[lang]
        assert score_origin_label(ScoreOrigin.LINK) == {"ru": "ссылка в SMS", "en": "SMS link"}[lang]


def test_the_card_and_its_refusals_read_in_english(client, db, people):
    log_in(client, "ann")
    page = text_of(client.get("/settings?lang=en"))
    assert "Rating by link (SMS)" in page and "good or bad (good = 10, bad = 1)" in page
    assert "1 to 5 (1→1, 2→3, 3→6, 4→8, 5→10)" in page and "The SMS is billed to this employee." in page
    assert "Do-not-contact list" in page and "Numbers on the list: 0." in page
    answer = client.post("/settings/rating-link", data=card_form(client, template="Rate us"))
    assert answer.status_code == 422
    assert "The text must contain {link}: the link goes in its place. Nothing was saved." in text_of(answer)
    refused = add_number(client, "12345")
    assert "Number: 11 digits starting with +7, 7 or 8" in text_of(refused)


@pytest.mark.parametrize("changes, field, said", [
    ({"company": "ООО\x00Ромашка"}, "company", "До 80 символов, без управляющих символов"),
    ({"company": "Я" * 81}, "company", "До 80 символов, без управляющих символов"),
    ({"template": "{link}\x1b[31m"}, "template", "Можно только {link}, {operator} и {date}"),
    ({"line:abc": "off"}, "lines", "Выберите значение из списка"),
])
def test_hostile_values_are_refused_in_words_and_nothing_is_saved(client, db, people, changes, field, said):
    log_in(client, "ann")
    answer = client.post("/settings/rating-link", data=card_form(client, enabled="y", **changes))
    assert answer.status_code == 422
    body = html_text.unescape(answer.get_data(as_text=True))
    assert said in re.search(rf'id="link-error-{field}">(.*?)</(span|p)>', body, re.S).group(1)
    assert stored(db) == (link_settings.LinkSettings(), None)
