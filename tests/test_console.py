"""The QA console's pages and exports through real HTTP semantics (the Flask client keeps the cookie):
login with CSRF, role rules on every page and export, the player's signed link, reviews, exports read back."""
import html as html_text
import io
import re
import time
from datetime import timedelta

import pytest
from openpyxl import load_workbook

from connector.console.exports import COLUMNS
from connector.core.users import add_user
from tests.conftest import EXPORT_HEADERS, console_login, csrf_token, csv_rows, dtmf, recording, summary

PASSWORD = "correct horse battery"
PEOPLE = [("ann", "admin", []), ("sam", "supervisor", []), ("olga", "operator", ["101"]),
          ("oleg", "operator", ["102"])]


@pytest.fixture
def config_overrides():
    """Exports and reports built in this process: the pages' rules are what is asserted here, and a child process
    builds the same files, role rules included (tests/test_heavy_reads.py proves it), so these need not pay a
    child's start-up."""
    return {"HEAVY_READS_IN_CHILDREN": "false"}


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # roles, not hashing cost
    with db.transaction() as s:
        for name, role, extensions in PEOPLE:
            add_user(s, name, role, PASSWORD, extensions)


@pytest.fixture
def calls(mango_post):
    """call-1 is olga's (101, score 3, recorded), call-2 is oleg's (102, score 9)."""
    for entry_id, extension, digits in [("call-1", "101", "3"), ("call-2", "102", "9")]:
        mango_post("events/summary", summary(entry_id, extension=extension))
        mango_post("events/dtmf", dtmf(entry_id, digits))
    mango_post("events/recording", recording("call-1", "rec-1"))


csrf = csrf_token


def log_in(client, name, password=PASSWORD):
    return console_login(client, name, password)


def test_the_root_leads_to_login_and_login_to_the_calls(client, people):
    assert client.get("/").headers["Location"].endswith("/login")
    assert client.get("/calls").headers["Location"].startswith("/login?next=")
    response = log_in(client, "sam")
    assert response.status_code == 302 and response.headers["Location"] == "/calls"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert client.get("/calls").status_code == 200
    assert client.get("/").headers["Location"].endswith("/calls")


def test_wrong_password_and_forged_csrf_are_refused(client, people):
    wrong = log_in(client, "sam", "not the password")
    assert wrong.status_code == 401 and "Неверное имя пользователя или пароль" in wrong.get_data(as_text=True)
    forged = client.post("/login", data={"username": "sam", "password": PASSWORD, "csrf_token": "forged"})
    assert forged.status_code == 401 and "подделана" in forged.get_data(as_text=True)
    assert client.get("/calls").status_code == 302  # still logged out


def test_a_login_link_cannot_send_people_elsewhere(client, people):
    token = csrf(client.get("/login"))
    response = client.post("/login?next=//evil.example/x", data={"username": "sam", "password": PASSWORD,
                                                                 "csrf_token": token})
    assert response.headers["Location"] == "/calls"


def test_logout_needs_the_form_and_ends_the_session(client, people):
    log_in(client, "sam")
    assert client.post("/logout", data={}).status_code == 400  # no CSRF token: not a logout
    page = client.get("/calls")
    assert client.post("/logout", data={"csrf_token": csrf(page)}).headers["Location"].endswith("/login")
    assert client.get("/calls").status_code == 302


def test_an_expired_or_disabled_session_goes_back_to_login(app, client, people, db, monkeypatch):
    from itsdangerous.timed import TimestampSigner

    from connector.core.users import disable_user

    log_in(client, "sam")
    with db.transaction() as s:
        disable_user(s, "sam")
    assert client.get("/calls").headers["Location"].startswith("/login")
    log_in(client, "ann")
    cookie = client.get_cookie("session").value
    app.permanent_session_lifetime = timedelta(seconds=1)
    # 2.1 s later on the clock the session cookie is checked by (it was a sleep of 2.1 s)
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self, now=time.time: int(now() + 2.1))
    client.set_cookie("session", cookie)  # even a client that keeps the cookie past its expiry
    assert client.get("/calls").headers["Location"].startswith("/login")


PAGES = [
    ("/calls", {"ann", "sam", "olga"}),
    ("/calls?score_lte=5", {"ann", "sam", "olga"}),
    ("/calls/call-1", {"ann", "sam", "olga"}),
    ("/calls/call-2", {"ann", "sam"}),  # oleg's call: 404 for olga
    ("/calls/export.csv", {"ann", "sam", "olga"}),
    ("/calls/export.xlsx", {"ann", "sam", "olga"}),
    ("/reports", {"ann", "sam", "olga"}),
    ("/reports/export.xlsx", {"ann", "sam", "olga"}),
    ("/notifications", {"ann", "sam", "olga"}),
]


@pytest.mark.parametrize("who", ["ann", "sam", "olga", None])
def test_page_permissions(client, people, calls, who):
    if who:
        log_in(client, who)
    for path, allowed in PAGES:
        response = client.get(path)
        if who is None:
            assert response.status_code == 302 and "/login" in response.headers["Location"], path
        elif who in allowed:
            assert response.status_code == 200, (who, path)
        else:
            assert response.status_code == 404, (who, path)


def test_the_operator_sees_only_their_calls_in_the_list_and_exports(client, people, calls):
    log_in(client, "olga")
    page = client.get("/calls").get_data(as_text=True)
    assert "/calls/call-1" in page and "/calls/call-2" not in page
    rows = csv_rows(client.get("/calls/export.csv"))
    assert [r[0] for r in rows[1:]] == ["call-1"]


def test_the_call_page_shows_the_timeline_of_its_events(client, people, calls):
    log_in(client, "sam")
    timeline = client.get("/calls/call-1").get_data(as_text=True).split('id="timeline"')[1].split("</table>")[0]
    assert re.findall(r"<tr><td[^>]*>[^<]+</td><td[^>]*>([^<]+)</td>", timeline) == [
        "итоги звонка", "клиент нажал клавиши (опрос)", "запись разговора"]


def test_the_player_plays_the_signed_recording_link(client, people, calls):
    log_in(client, "sam")
    page = client.get("/calls/call-1").get_data(as_text=True)
    src = re.search(r'<audio[^>]* src="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert re.fullmatch(r"/recordings/call-1\?exp=\d+&sig=[0-9a-f]{64}", src)
    tampered = src[:-1] + ("0" if src[-1] != "0" else "1")
    assert client.get(tampered).status_code == 403


def test_a_supervisor_reviews_from_the_page_and_the_operator_sees_it(client, people, calls):
    log_in(client, "sam")
    page = client.get("/calls/call-1")
    bad = client.post("/calls/call-1/reviews", data={"score": "42", "csrf_token": csrf(page)})
    assert bad.status_code == 422 and "Оценка: целое число от 1 до 10" in bad.get_data(as_text=True)
    forged = client.post("/calls/call-1/reviews", data={"score": "6", "csrf_token": "forged"})
    assert forged.status_code == 400
    done = client.post("/calls/call-1/reviews", data={"score": "6", "comment": "Не представился",
                                                      "csrf_token": csrf(page)})
    assert done.status_code == 302
    client.post("/logout", data={"csrf_token": csrf(client.get("/calls"))})

    log_in(client, "olga")
    assert 'title="Новые уведомления">1<' in client.get("/calls").get_data(as_text=True)
    page = client.get("/calls/call-1").get_data(as_text=True)
    assert "sam: 6 «Не представился»" in page
    assert 'id="review-form"' not in page  # operators do not review
    assert 'id="mark-read"' in page  # opening the call reads nothing: a GET changes nothing
    assert 'title="Новые уведомления">1<' in client.get("/calls").get_data(as_text=True)
    listed = client.get("/notifications").get_data(as_text=True)
    assert "Разбор вашего звонка" in listed and "/calls/call-1" in listed
    assert client.post("/calls/call-1/read", data={"csrf_token": "forged"}).status_code == 400
    read = client.post("/calls/call-1/read", data={"csrf_token": csrf(client.get("/calls/call-1"))})
    assert read.status_code == 302 and read.headers["Location"].endswith("/calls/call-1")
    page = client.get("/calls/call-1").get_data(as_text=True)
    assert 'id="mark-read"' not in page and 'id="unread"' not in page
    assert client.post("/calls/call-1/reviews", data={"score": "9", "csrf_token": csrf(client.get("/calls"))}) \
        .status_code == 403


def test_the_xlsx_export_reads_back_with_the_filters_applied(client, people, calls):
    log_in(client, "sam")
    response = client.get("/calls/export.xlsx?tagged=true")
    assert response.headers["Content-Type"].startswith("application/vnd.openxmlformats")
    sheet = load_workbook(io.BytesIO(response.data), read_only=True).active
    rows = [list(r) for r in sheet.iter_rows(values_only=True)]
    assert rows[0] == list(EXPORT_HEADERS) and len(rows) == 2
    row = dict(zip(COLUMNS, rows[1]))
    assert (row["call_id"], row["operator"], row["customer_score"], row["tag"]) == ("call-1", "101", 3, "Оценка 3")


@pytest.mark.parametrize("sort, order", [("lowest_score", ["call-1", "call-2"]),
                                         ("highest_score", ["call-2", "call-1"])])
def test_the_list_and_its_export_sort_by_score(client, people, calls, sort, order):
    log_in(client, "sam")
    page = client.get(f"/calls?sort={sort}").get_data(as_text=True)
    assert f'<option value="{sort}" selected>' in page
    assert sorted(order, key=lambda call: page.index(f"/calls/{call}\"")) == order
    rows = csv_rows(client.get(f"/calls/export.csv?sort={sort}"))
    assert [r[0] for r in rows[1:]] == order
    assert client.get("/calls?sort=loudest").status_code == 400


def settings_form(page, **changes) -> dict:
    """The settings form as the browser would post it: current values, then the changes."""
    html = page.get_data(as_text=True)
    data = {"csrf_token": csrf(page)}
    for name in ("scale_min", "scale_max", "max_threshold", "tag_template", "score_text_template",
                 "rating_window_days"):
        data[name] = re.search(rf'<input[^>]*\bid="{name}"[^>]*\bvalue="([^"]*)"', html).group(1)
    for name in ("enabled", "lock_score"):
        if re.search(rf'<input checked id="{name}"', html):
            data[name] = "y"
    data["high_scores"] = re.search(r'<select id="high_scores".*?<option selected value="([^"]*)"', html, re.S).group(1)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def test_an_admin_changes_the_settings_and_reads_the_audit(client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    assert page.status_code == 200 and 'id="connections"' in page.get_data(as_text=True)
    saved = client.post("/settings", data=settings_form(page, max_threshold="5", enabled=None))
    assert saved.status_code == 200 and 'id="saved"' in saved.get_data(as_text=True)
    api = client.get("/api/v1/settings", headers=auth).json
    assert api["max_threshold"] == 5 and api["enabled"] is False and api["tag_template"] == "Оценка {score}"
    audit = client.get("/audit").get_data(as_text=True)
    assert "ann" in audit and "Порог: оценка ниже него получает тег: 9 → 5" in audit
    assert "Функция включена: вкл. → выкл." in audit


@pytest.mark.parametrize("changes, field, needle", [
    ({"max_threshold": "42"}, "max_threshold", "Порог: от 1 до 11"),
    ({"scale_max": "x"}, "scale_max", "Неверное целое число"),  # WTForms speaks Russian too
    ({"tag_template": "Оценка {score!r}"}, "tag_template", "{score}"),
    ({"rating_window_days": ""}, "rating_window_days", "обязательное поле"),
    ({"high_scores": "skip"}, "high_scores", "Неверный вариант"),
])
def test_a_bad_setting_is_shown_beside_its_field_and_nothing_is_saved(client, people, auth, changes, field, needle):
    log_in(client, "ann")
    page = client.get("/settings")
    refused = client.post("/settings", data=settings_form(page, **{"max_threshold": "4", **changes}))
    assert refused.status_code == 422
    shown = re.search(rf'id="error-{field}">([^<]*)<', refused.get_data(as_text=True)).group(1)
    assert needle in shown.replace("&#39;", "'").replace("&#34;", '"')
    assert client.get("/api/v1/settings", headers=auth).json["max_threshold"] == 9  # not even the good field
    assert client.get("/api/v1/settings/audit", headers=auth).json["items"] == []


@pytest.mark.parametrize("who", ["sam", "olga"])
def test_settings_and_audit_are_for_admins(client, people, who):
    log_in(client, who)
    assert client.get("/settings").status_code == 403
    assert client.get("/audit").status_code == 403
    assert client.post("/settings/replay", data={"csrf_token": csrf(client.get("/calls"))}).status_code == 403
    assert "/settings" not in client.get("/calls").get_data(as_text=True)


def test_the_replay_button_needs_its_csrf_token(client, people):
    log_in(client, "ann")
    assert client.post("/settings/replay", data={"csrf_token": "forged"}).status_code == 400
    page = client.get("/settings")
    assert client.post("/settings/replay", data={"csrf_token": csrf(page)}).headers["Location"] == "/settings"


def test_the_rule_for_high_scores_is_shown_explained_and_changed_on_the_settings_page(client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    html = page.get_data(as_text=True)
    assert re.search(r'<option selected value="default">как принято в каждой CRM', html)
    assert 'id="help-high_scores">MANGO не пишет её в CRM, считая ненадёжной' in html
    english = client.get("/settings?lang=en").get_data(as_text=True)
    assert "A score at or above the threshold" in english and "leave it out of the CRM (as MANGO does)" in english
    assert "MANGO deems it unreliable and leaves it out of the CRM" in english
    saved = client.post("/settings", data=settings_form(page, high_scores="ignore"))
    assert saved.status_code == 200 and 'id="saved"' in saved.get_data(as_text=True)
    assert client.get("/api/v1/settings", headers=auth).json["high_scores"] == "ignore"
    audit = html_text.unescape(client.get("/audit").get_data(as_text=True))
    assert ("A score at or above the threshold: each CRM's default (amoCRM: leave out, Bitrix24: write) → "
            "leave it out of the CRM (as MANGO does)") in audit


def test_a_line_gets_its_own_rule_for_high_scores_on_the_settings_page(client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    client.post("/settings/lines", data={"line_number": "74950000001", "enabled": "on", "high_scores": "record",
                                         "csrf_token": csrf(page)})
    client.post("/settings/lines", data={"line_number": "74950000002", "enabled": "", "max_threshold": "5",
                                         "high_scores": "", "csrf_token": csrf(page)})  # empty: the global rule
    overrides = client.get("/api/v1/settings/lines", headers=auth).json["items"]
    assert overrides == [{"line_number": "74950000001", "enabled": True, "high_scores": "record"},
                         {"line_number": "74950000002", "max_threshold": 5}]
    shown = client.get("/settings").get_data(as_text=True).split('id="lines"')[1]
    cells = re.findall(r'<td class="high-scores">(.*?)</td>', shown)
    assert cells == ["<strong>писать текст оценки, без тега</strong>",
                     '<span class="muted">как в общих: как принято в каждой CRM (amoCRM: не писать, Bitrix24: писать)'
                     "</span>"]


def test_an_admin_sets_and_removes_a_line_override_on_the_settings_page(client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    saved = client.post("/settings/lines", data={"line_number": "74950000001", "enabled": "off", "max_threshold": "5",
                                                 "csrf_token": csrf(page)})
    assert saved.headers["Location"] == "/settings?line_saved=1#lines"
    assert client.get("/api/v1/settings/lines/74950000001", headers=auth).json == {
        "line_number": "74950000001", "enabled": False, "max_threshold": 5}
    refused = client.post("/settings/lines", data={"line_number": "74950000002", "enabled": "on",
                                                   "max_threshold": "99", "csrf_token": csrf(page)})
    problem = re.search(r'id="line-problem">([^<]*)<', refused.get_data(as_text=True)).group(1)
    assert refused.status_code == 422 and problem.startswith("Порог: от 1 до 11")
    shown = client.get("/settings").get_data(as_text=True).split('id="lines"')[1]
    assert "74950000001" in shown and "74950000002" not in shown
    client.post("/settings/lines/74950000001/delete", data={"csrf_token": csrf(page)})
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []


def test_notifications_are_marked_read_all_at_once_only_by_the_button(client, people, calls, mango_post):
    log_in(client, "sam")
    for entry_id in ("low-1", "low-2"):
        mango_post("events/summary", summary(entry_id, extension="101"))
        mango_post("events/dtmf", dtmf(entry_id, "2"))
    page = client.get("/notifications")
    assert 'id="mark-all-read"' in page.get_data(as_text=True)
    client.get("/calls/low-1")  # opening a call or the list reads nothing
    assert 'id="unread"' in client.get("/calls").get_data(as_text=True)
    assert client.post("/notifications/read", data={}).status_code == 400  # no CSRF token: nothing read
    done = client.post("/notifications/read", data={"csrf_token": csrf(client.get("/notifications"))})
    assert done.status_code == 302 and done.headers["Location"].endswith("/notifications")
    listed = client.get("/notifications").get_data(as_text=True)
    assert 'id="mark-all-read"' not in listed and 'id="unread"' not in listed


def test_another_operators_call_cannot_be_marked_read(client, people, calls):
    log_in(client, "olga")
    token = csrf(client.get("/calls"))
    assert client.post("/calls/call-2/read", data={"csrf_token": token}).status_code == 404
