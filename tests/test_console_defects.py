"""The console defects people hit (issue #17, item 1), each as a person meets it, through HTTP with the
console's own forms: a line's override that silently switched the feature on, `?lang=` refused or lost at
login, reports whose parts did not add up after a threshold change, notifications that could not be cleared,
and raw JSON or English text where a page was expected."""
import io
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from openpyxl import load_workbook

from connector.core.models import Notification
from connector.core.users import add_user
from tests.conftest import console_login, counted_statements, csrf_token as csrf, dtmf, summary

PASSWORD = "correct horse battery"
SALES, SUPPORT = "74950000001", "74950000002"


@pytest.fixture
def config_overrides():
    """Exports and reports built in this process: the pages' answers are what is asserted here, and a child
    process builds the same files (tests/test_heavy_reads.py proves it), so these need not pay a child's start-up."""
    return {"HEAVY_READS_IN_CHILDREN": "false"}


@pytest.fixture
def people(db, monkeypatch):
    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")
    with db.transaction() as s:
        for name, role, extensions in [("ann", "admin", []), ("sam", "supervisor", []),
                                       ("olga", "operator", ["101"]), ("oleg", "operator", ["102"])]:
            add_user(s, name, role, PASSWORD, extensions)


def scored(mango_post, entry_id, digits, *, line=SALES, extension="101"):
    mango_post("events/summary", summary(entry_id, extension=extension, line=line))
    mango_post("events/dtmf", dtmf(entry_id, digits))


def log_in(client, name):
    return console_login(client, name, PASSWORD)


def text(response) -> str:
    return response.get_data(as_text=True)


# --- 1. a line's override stores only what the admin chose ------------------------------------------------

def test_a_line_given_only_a_threshold_stays_under_the_global_switch(client, people, auth, mango_post):
    log_in(client, "ann")
    page = client.get("/settings")
    saved = client.post("/settings/lines", data={"line_number": SALES, "enabled": "", "max_threshold": "5",
                                                 "high_scores": "", "csrf_token": csrf(page)})
    assert saved.status_code == 302
    assert client.get(f"/api/v1/settings/lines/{SALES}", headers=auth).json == {"line_number": SALES,
                                                                                "max_threshold": 5}
    assert client.put("/api/v1/settings", json={"enabled": False}, headers=auth).status_code == 200
    scored(mango_post, "c1", "2")  # below the line's threshold, but the feature is off everywhere
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert call["customer_score"] == 2 and call["decision"]["tag"] is None and call["decision"]["record"] is False
    row = text(client.get("/settings")).split('id="lines"')[1].split("</tr>", 2)[1]
    assert '<td class="enabled"><span class="muted">как в общих: выключена</span>' in row
    assert '<td class="threshold"><strong>5</strong>' in row


def test_the_line_form_offers_inherit_on_off_and_says_what_is_inherited(client, people, auth):
    log_in(client, "ann")
    client.put("/api/v1/settings", json={"max_threshold": 8, "enabled": False}, headers=auth)
    form = text(client.get("/settings")).split('id="line-form"')[1].split("</form>")[0]
    assert re.findall(r'<option[^>]*value="([^"]*)"[^>]*>([^<]*)</option>', form.split('name="enabled"')[1]
                      .split("</select>")[0]) == [("", "как в общих настройках (сейчас: выключена)"),
                                                 ("on", "включена на этой линии"), ("off", "выключена на этой линии")]
    assert 'placeholder="8"' in form and "Пусто — как в общих настройках (сейчас 8)" in form
    english = text(client.get("/settings?lang=en")).split('id="line-form"')[1]
    assert "as in the general settings (now: off)" in english and "Empty: as in the general settings (now 8)" in english


def test_a_line_switched_on_by_its_own_setting_is_pointed_out_while_the_feature_is_off(client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    client.post("/settings/lines", data={"line_number": SUPPORT, "enabled": "on", "csrf_token": csrf(page)})
    assert 'id="switched-on"' not in text(client.get("/settings"))  # the feature is on: nothing to say
    client.put("/api/v1/settings", json={"enabled": False}, headers=auth)
    notice = text(client.get("/settings")).split('id="switched-on">')[1].split("</p>")[0]
    assert SUPPORT in notice and "«как в общих настройках»" in notice


def test_a_line_is_edited_in_its_form_and_choosing_nothing_own_returns_it_to_the_general_settings(
        client, people, auth):
    log_in(client, "ann")
    page = client.get("/settings")
    client.post("/settings/lines", data={"line_number": SALES, "enabled": "off", "max_threshold": "4",
                                         "high_scores": "record", "csrf_token": csrf(page)})
    form = text(client.get(f"/settings?line={SALES}")).split('id="line-form"')[1].split("</form>")[0]
    assert f'value="{SALES}"' in form and 'value="4"' in form
    assert '<option selected value="off">' in form and '<option selected value="record">' in form
    nothing = {"line_number": SUPPORT, "enabled": "", "max_threshold": "", "high_scores": "", "csrf_token": csrf(page)}
    refused = client.post("/settings/lines", data=nothing)  # a line with no override: nothing to save
    assert refused.status_code == 422 and "Для линии ничего не выбрано" in text(refused)
    assert client.post("/settings/lines", data={**nothing, "line_number": SALES}).status_code == 302
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []
    audit = client.get("/api/v1/settings/audit", headers=auth).json["items"]
    assert audit[0]["scope"] == f"line:{SALES}" and audit[0]["after"] == {}


@pytest.mark.parametrize("data, problem", [
    ({"line_number": "   "}, "Укажите линию"),
    ({"line_number": SALES, "max_threshold": "пять"}, "Неверное целое число"),  # WTForms speaks Russian too
    ({"line_number": SALES, "enabled": "maybe"}, "Неверный вариант"),
])
def test_a_refused_line_is_said_on_its_form_and_keeps_what_was_typed(client, people, auth, data, problem):
    log_in(client, "ann")
    page = client.get("/settings")
    refused = client.post("/settings/lines", data={**data, "csrf_token": csrf(page)})
    html = text(refused)
    assert refused.status_code == 400 and problem in html.split('id="line-problem">')[1].split("</p>")[0]
    assert refused.headers["Content-Type"].startswith("text/html") and "<h1>Настройки</h1>" in html
    assert client.get("/api/v1/settings/lines", headers=auth).json["items"] == []


# --- 2. ?lang= on every page, through the login ------------------------------------------------------------

@pytest.mark.parametrize("path", ["/calls?lang=en", "/calls?lang=en&score_lte=5", "/reports?lang=en",
                                  f"/reports?line={SALES}&lang=en", "/calls/export.csv?lang=en",
                                  "/calls/export.xlsx?lang=en&tagged=true", "/reports/export.xlsx?lang=en",
                                  "/notifications?lang=en", "/calls/c1?lang=en", "/settings?lang=en"])
def test_lang_is_accepted_on_every_page_and_export(client, people, mango_post, path):
    scored(mango_post, "c1", "3")
    log_in(client, "ann")
    response = client.get(path)
    assert response.status_code == 200, text(response)[:300]
    if response.mimetype == "text/html":
        assert '<html lang="en">' in text(response)


def test_the_language_links_keep_the_page_and_its_filters(client, people):
    log_in(client, "sam")
    html = text(client.get(f"/calls?score_lte=5&line={SALES}&lang=ru"))
    english = re.search(r'href="([^"]+)" id="lang-en"', html).group(1).replace("&amp;", "&")
    assert urlsplit(english).path == "/calls"
    assert parse_qs(urlsplit(english).query) == {"score_lte": ["5"], "line": [SALES], "lang": ["en"]}
    page = text(client.get(english))
    assert '<html lang="en">' in page and 'name="score_lte" size="3" value="5"' in page
    assert "<h1>Reports</h1>" in text(client.get("/reports"))  # the choice stays for the session


def test_the_language_chosen_on_the_login_page_survives_the_login_and_the_logout(client, people):
    assert "Username" in text(client.get("/login?lang=en"))
    response = log_in(client, "sam")
    assert response.status_code == 302
    calls = text(client.get("/calls"))
    assert '<html lang="en">' in calls and "<h1>Calls</h1>" in calls
    client.post("/logout", data={"csrf_token": csrf(client.get("/calls"))})
    assert "Username" in text(client.get("/login"))


def test_a_link_with_a_language_opened_logged_out_keeps_both_through_the_login(client, people):
    to_login = client.get("/calls?score_lte=5&lang=en")
    assert to_login.status_code == 302
    login_page = client.get(to_login.headers["Location"])
    assert "Username" in text(login_page)  # the language is taken before the login is asked for
    token = csrf(login_page)
    done = client.post(to_login.headers["Location"], data={"username": "sam", "password": PASSWORD,
                                                           "csrf_token": token})
    assert urlsplit(done.headers["Location"]).path == "/calls"
    assert parse_qs(urlsplit(done.headers["Location"]).query) == {"score_lte": ["5"], "lang": ["en"]}
    page = text(client.get(done.headers["Location"]))
    assert '<html lang="en">' in page and 'value="5"' in page


# --- 3. the reports split the rated calls one way -----------------------------------------------------------

def _totals(client, path="/api/v1/reports/operators", **params):
    from tests.conftest import ADMIN_TOKEN

    return client.get(path, query_string=params, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json["totals"]


def test_after_a_threshold_change_satisfied_and_dissatisfied_add_up_to_the_rated(client, people, auth, mango_post):
    for entry_id, digits in [("a1", "3"), ("a2", "6"), ("a3", "10")]:  # threshold 9: 3 and 6 tagged
        scored(mango_post, entry_id, digits)
    client.put("/api/v1/settings", json={"max_threshold": 5}, headers=auth)
    for entry_id, digits in [("b1", "4"), ("b2", "7")]:  # threshold 5: 4 tagged
        scored(mango_post, entry_id, digits)
    tagged = [c["call_id"] for c in client.get("/api/v1/calls?tagged=true", headers=auth).json["items"]]
    assert sorted(tagged) == ["a1", "a2", "b1"]  # each tag was decided by the threshold of its time
    totals = _totals(client)
    assert (totals["rated"], totals["positive"], totals["negative"]) == (5, 3, 2)  # by the threshold in force: 5
    assert totals["positive"] + totals["negative"] == totals["rated"] and totals["csat"] == 60.0

    log_in(client, "sam")
    page = text(client.get("/reports"))
    cells = re.findall(r"<td>([^<]*)</td>", page.split('id="report-operator"')[1].split("Итого")[1])
    rated, positive, negative = int(cells[4]), int(cells[7]), int(cells[8])
    assert (rated, positive, negative) == (5, 3, 2)
    rule = page.split('id="split-rule"')[1].split("</p>")[0]
    assert "по порогу, который действует сейчас: оценка ниже 5 — недоволен" in rule
    assert "by the threshold in force now" in text(client.get("/reports?lang=en"))
    days = page.split("<th>CSAT, %</th></tr></thead>")[-1]
    assert "<td>5</td>" in days and "<td>60.0</td>" in days  # the daily CSAT splits the same way


def test_a_line_with_its_own_threshold_is_split_by_it(client, people, auth, mango_post):
    client.put(f"/api/v1/settings/lines/{SUPPORT}", json={"max_threshold": 4}, headers=auth)
    for entry_id, digits, line in [("s1", "5", SALES), ("s2", "5", SUPPORT), ("s3", "3", SUPPORT)]:
        scored(mango_post, entry_id, digits, line=line)
    lines = {row["line"]: row for row in client.get("/api/v1/reports/lines", headers=auth).json["items"]}
    assert (lines[SALES]["positive"], lines[SALES]["negative"]) == (0, 1)  # 5 < 9
    assert (lines[SUPPORT]["positive"], lines[SUPPORT]["negative"]) == (1, 1)  # 5 >= 4 > 3
    totals = _totals(client, "/api/v1/reports/lines")
    assert (totals["rated"], totals["positive"], totals["negative"]) == (3, 1, 2)
    log_in(client, "sam")
    rule = text(client.get("/reports")).split('id="split-rule"')[1].split("</p>")[0]
    assert f"У линий со своим порогом ({SUPPORT}) — по их порогу." in rule
    colours = text(client.get(f"/reports?line={SUPPORT}")).split('id="distribution"')[1].split("</svg>")[0]
    assert re.findall(r'fill="(#\w+)"><title>(\d+):', colours) == [("#b3261e", "3"), ("#2f7d32", "5")]


# --- 4. notifications: pages, operator and score, all read at once -------------------------------------------

def _many_notifications(db, mango_post, count: int) -> None:
    """`count` low-score notifications for each supervisor: three real ones, the rest copies of them."""
    for entry_id, digits, extension in [("n1", "2", "101"), ("n2", "3", "102"), ("n3", "4", "101")]:
        scored(mango_post, entry_id, digits, extension=extension)
    with db.transaction() as s:
        first = s.query(Notification).order_by(Notification.id).all()
        for i in range(count - len(first)):
            model = first[i % len(first)]
            s.add(Notification(user_id=model.user_id, call_id=model.call_id, kind=model.kind, read=False))


def test_notifications_come_a_page_at_a_time_with_the_operator_and_the_score(client, db, people, mango_post):
    _many_notifications(db, mango_post, 120)
    log_in(client, "sam")
    page = text(client.get("/notifications"))
    assert "Непрочитанных: 120" in page and "Всего: 120" in page and "«Москва»" in page
    rows, path = [], "/notifications"
    with counted_statements(db) as statements:
        while path:
            html = text(client.get(path))
            body = html.split('id="notifications"')[1].split("</tbody>")[0]
            rows += re.findall(r'<td [^>]*class="operator">([^<]+)</td>\s*<td [^>]*class="score low">(\d+)</td>', body)
            older = re.search(r'href="([^"]+)" id="older"', html)
            path = older.group(1).replace("&amp;", "&") if older else None
    # Each operator named as the console's account linked to their extension (no PBX directory here).
    assert len(rows) == 120 and set(rows) == {("olga (101)", "2"), ("oleg (102)", "3"), ("olga (101)", "4")}
    assert len(statements) < 3 * 12  # three pages, a handful of queries each: no query per row


def test_mark_all_read_marks_what_the_page_knew_of_and_only_by_post(client, db, people, mango_post):
    _many_notifications(db, mango_post, 60)
    log_in(client, "sam")
    page = client.get("/notifications?unread=1")
    html = text(page)
    up_to = re.search(r'id="up_to" name="up_to" type="hidden" value="(\d+)"', html).group(1)
    assert client.get("/notifications/read").status_code == 405  # a link never reads anything
    scored(mango_post, "late", "1")  # comes after the page was shown
    done = client.post("/notifications/read", data={"csrf_token": csrf(page), "up_to": up_to})
    assert done.status_code == 302
    after = text(client.get("/notifications?unread=1"))
    assert "Непрочитанных: 1" in after and after.count('class="unread"') == 1 and "/calls/late" in after
    assert client.post("/notifications/read", data={"csrf_token": csrf(page), "up_to": "x"}).status_code == 400


def test_a_bad_page_argument_is_a_page_not_a_crash(client, people):
    log_in(client, "sam")
    response = client.get("/notifications?before=-1")
    assert response.status_code == 400 and "<h1>Запрос не понят</h1>" in text(response)


# --- 5. refusals as pages, translated; the API keeps JSON -----------------------------------------------------

def test_another_operators_call_is_a_translated_page_not_json(client, people, mango_post):
    scored(mango_post, "theirs", "3", extension="102")
    log_in(client, "olga")
    response = client.get("/calls/theirs")
    html = text(response)
    assert response.status_code == 404 and response.mimetype == "text/html"
    assert "<h1>Не найдено</h1>" in html and "оператор видит свои звонки" in html and "olga" in html
    shown = re.sub(r"<[^>]+>", "", html.split("<main>")[1].split("</main>")[0])
    assert "theirs" not in shown and "404" not in shown  # neither whether the call exists nor a code
    english = text(client.get("/calls/theirs?lang=en"))
    assert "<h1>Not found</h1>" in english and "an operator sees their own calls" in english


def test_a_page_for_another_role_is_a_translated_page(client, people):
    log_in(client, "sam")
    response = client.get("/settings")
    assert response.status_code == 403 and "<h1>Нет доступа</h1>" in text(response)
    assert "sam" in text(response)  # the header: who is refused, and the way elsewhere


@pytest.mark.parametrize("path", ["/no-such-page", "/settings/nothing/here"])
def test_an_unknown_address_is_a_page_for_a_browser_and_json_for_the_rest(client, people, path):
    browser = client.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert browser.status_code == 404 and browser.mimetype == "text/html"
    machine = client.get(path)
    assert machine.status_code == 404 and machine.json == {"error": "not found"}


def test_the_api_keeps_json_even_for_a_browser(client, people, auth):
    browser = {"Accept": "text/html", **auth}
    for path in ("/api/v1/calls/nope", "/api/v1/no-such-thing"):
        response = client.get(path, headers=browser)
        assert response.status_code == 404 and response.is_json and set(response.json) == {"error"}
    wrong = client.get("/api/v1/calls?lang=en", headers=browser)
    assert wrong.status_code == 400 and wrong.json["error"].startswith("lang")  # the API's own strict query


def test_a_wrong_method_and_a_forged_form_are_pages(client, people):
    log_in(client, "sam")
    wrong = client.get("/logout", headers={"Accept": "text/html"})
    assert wrong.status_code == 405 and "<h1>Так открыть нельзя</h1>" in text(wrong) and wrong.headers["Allow"]
    forged = client.post("/logout", data={"csrf_token": "forged"})
    assert forged.status_code == 400 and "<h1>Запрос не понят</h1>" in text(forged)


@pytest.mark.parametrize("query, field, problem", [
    ("score_lte=abc", "score_lte", "«Оценка до»: введите целое число"),
    ("date_from=yesterday", "date_from", "«С»: введите дату (день, месяц, год)"),
    ("sort=loudest", "sort", "«Порядок»: выберите значение из списка"),
    ("after=forged", None, "Ссылка «Дальше» устарела или повреждена"),
    ("colour=red", None, "Ссылка повреждена или устарела"),
])
def test_a_refused_filter_is_said_on_the_filter_form(client, people, query, field, problem):
    log_in(client, "sam")
    response = client.get(f"/calls?{query}")
    html = text(response)
    assert response.status_code == 400 and "<h1>Звонки</h1>" in html
    assert problem in html.split('id="filter-problem">')[1].split("</p>")[0]
    if field:
        assert re.search(rf'name="{field}"[^>]* aria-invalid="true" aria-describedby="filter-problem"', html)
    export = client.get(f"/calls/export.csv?{query}")
    assert export.status_code == 400 and problem in text(export) and "<h1>Запрос не понят</h1>" in text(export)
    back = re.search(r'href="([^"]+)" id="back"', text(export)).group(1).replace("&amp;", "&")
    assert urlsplit(back).path == "/calls"


def test_a_refused_report_filter_is_said_on_its_form_in_english_too(client, people):
    log_in(client, "sam")
    response = client.get("/reports?date_to=31.12.2026&lang=en")
    assert response.status_code == 400 and "“Before”: enter a date (day, month, year)" in text(response)
    export = client.get("/reports/export.xlsx?date_to=31.12.2026")
    assert export.status_code == 400 and "/reports?date_to=31.12.2026" in text(export)


def test_the_review_form_says_the_scale_in_the_page_language(client, people, mango_post):
    scored(mango_post, "c1", "3")
    log_in(client, "sam")
    page = client.get("/calls/c1?lang=en")
    bad = client.post("/calls/c1/reviews", data={"score": "42", "csrf_token": csrf(page)})
    assert bad.status_code == 422 and "Score: a whole number from 1 to 10" in text(bad)
    assert 'href="/calls/c1?lang=ru" id="lang-ru"' in text(bad)  # the page's other language is the call's page


def test_a_refused_global_setting_is_said_in_the_page_language(client, people):
    log_in(client, "ann")
    page = client.get("/settings?lang=en")
    from tests.test_console import settings_form

    refused = client.post("/settings", data=settings_form(page, rating_window_days="5000"))
    shown = re.search(r'id="error-rating_window_days">([^<]*)<', text(refused)).group(1)
    assert refused.status_code == 422 and shown == "Window: 0 (no limit) to 3650 days"


def test_the_exports_still_answer_with_the_filters_applied(client, people, mango_post):
    scored(mango_post, "c1", "3")
    scored(mango_post, "c2", "9")
    log_in(client, "sam")
    book = load_workbook(io.BytesIO(client.get("/calls/export.xlsx?tagged=true&lang=en").data), read_only=True)
    assert [r[0] for r in book.active.iter_rows(values_only=True)][1:] == ["c1"]


@pytest.mark.parametrize("path", ["//evil.example/x", "/\\evil.example/x"])
def test_an_unknown_address_page_never_links_to_another_site(client, people, path):
    page = client.get("/", environ_overrides={"PATH_INFO": path}, headers={"Accept": "text/html"})
    assert page.status_code == 404
    english = re.search(r'href="([^"]+)" id="lang-en"', text(page)).group(1)
    assert english.startswith("/") and not english.startswith(("//", "/\\", "/%5C"))
