"""No internal code where a person reads (issue #17, items 3 and 5): each page, rendered in Russian, names
score sources, statuses, the policy's reasons, PBX events, connection states, audit fields and values in
people's words, at local time; the codes stay in the JSON API and the database."""
import re
from datetime import datetime, timedelta, timezone

import pytest

from connector.core.accounts import account_row
from connector.core.calls import get_call
from connector.core.models import DeliveryJob, JobStatus, PbxScan, ScanProblem
from connector.core.policy import Policy, ScoreReason, decide, score_reason
from connector.inbound.mango.scanner import ScanFailed, scan_problem
from connector.inbound.pbx import PbxBlocked, PbxBusy, PbxCoolingDown, PbxUnavailable, PbxWrongRequest
from connector.inbound.mango.models import mango_row
from tests.conftest import console_login, csrf_token as csrf, dtmf, summary
from tests.test_console_defects import SALES, log_in, people, scored, text  # noqa: F401 (fixture)

SECRET = "whsec_" + "c2VjcmV0LWZvci10aGUtd2ViaG9vay10YXJnZXQtMzI="


@pytest.fixture
def config_overrides(request):
    """The settings a test asks for with indirect parametrisation (none otherwise)."""
    return getattr(request, "param", {})


def visible(response) -> str:
    """What a person reads: the page's text without its tags, its head (but with its title) or its links."""
    html = text(response)
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    body = re.sub(r"<head>.*?</head>", "", html, flags=re.S)
    return " ".join((title + " " + re.sub(r"<[^>]+>", " ", body)).split())


def section(response, marker: str, end: str = "</table>") -> str:
    inside = text(response).split(marker, 1)[1].split(">", 1)[1]  # after the marked tag
    return " ".join(re.sub(r"<[^>]+>", " ", inside.split(end, 1)[0]).split())


# --- the call page -----------------------------------------------------------------------------------------

def test_the_call_page_names_sources_statuses_reasons_and_events_in_russian(client, people, mango_post, auth):
    scored(mango_post, "c1", "3")  # below the threshold 9: tagged
    mango_post("events/dtmf", dtmf("c1", "7", seq=6))  # a second score: the first stays in force
    mango_post("events/dtmf", dtmf("c1", "55", seq=7))  # outside the scale
    log_in(client, "sam")
    page = client.get("/calls/c1")
    scores = section(page, 'id="scores"')
    assert scores.count("клиент опрос АТС (клавиши)") == 3
    assert "3 принята ниже порога: тег «Оценка 3»" in scores
    assert "7 сохранена, в силе первая в силе остаётся первая оценка клиента" in scores
    assert "55 отклонена не оценка: не число или вне шкалы" in scores
    assert "(ниже порога: тег «Оценка 3»)" in visible(page)
    assert "Направление: входящий · Опрос: ответ получен" in visible(page)  # as the exports name them too
    timeline = section(page, 'id="timeline"')
    assert "итоги звонка АТС (MANGO)" in timeline and "клиент нажал клавиши (опрос) АТС (MANGO)" in timeline
    for code in ("customer", "mango_dtmf", "accepted", "refused", "kept", "events/", "mango ", "below the threshold",
                 "score locked", "outside the scale", "inbound", "answered"):
        assert code not in visible(page), code
    # The API keeps its codes and sentences: they are the contract.
    call = client.get("/api/v1/calls/c1", headers=auth).json
    assert [(s["source"], s["origin"], s["status"]) for s in call["scores"]] == [
        ("customer", "mango_dtmf", "accepted"), ("customer", "mango_dtmf", "kept"),
        ("customer", "mango_dtmf", "refused")]
    assert call["decision"]["reason"] == "score 3 is below the threshold 9: record and tag"


def test_a_score_at_or_above_the_threshold_and_one_with_the_feature_off_say_why(client, people, mango_post, auth):
    assert client.put("/api/v1/settings", json={"high_scores": "record"}, headers=auth).status_code == 200
    scored(mango_post, "c1", "10")
    assert client.put("/api/v1/settings", json={"enabled": False}, headers=auth).status_code == 200
    scored(mango_post, "c2", "2")
    log_in(client, "sam")
    high = visible(client.get("/calls/c1"))
    assert "10 принята на пороге и выше: писать текст оценки, без тега" in high
    assert "score at or above the threshold" not in high and "record only" not in high
    off = visible(client.get("/calls/c2"))
    assert "2 принята функция выключена: оценка сохранена, в CRM ничего не отправлено" in off
    assert "feature off" not in off


def test_a_call_is_titled_by_its_local_time_masked_customer_and_operator(client, people, mango_post):
    scored(mango_post, "c1", "3")  # started 2025-11-22 08:26:40 UTC: 11:26 in Moscow
    log_in(client, "sam")
    html = text(client.get("/calls/c1"))
    title = re.search(r"<title>(.*?)</title>", html, re.S).group(1)
    heading = re.search(r"<h1>(.*?)</h1>", html, re.S).group(1)
    for shown in (title, heading):
        shown = " ".join(shown.split())
        assert shown.startswith("Звонок 22.11.2025, 11:26 · клиент …4567 · оператор olga (101)"), shown
        assert "c1" not in shown and "79001234567" not in shown and "08:26" not in shown
    english = text(client.get("/calls/c1?lang=en"))
    assert re.search(r"<h1>Call 11/22/25, 11:26\s*AM · customer …4567 · operator olga \(101\)</h1>", english), english


def test_a_call_without_scores_says_so(client, people, mango_post):
    mango_post("events/summary", summary("c1"))
    log_in(client, "sam")
    assert section(client.get("/calls/c1"), 'id="scores"') == "Оценок пока нет"


def test_no_time_on_the_call_page_has_seconds_microseconds_or_utc(client, people, mango_post):
    scored(mango_post, "c1", "3")
    log_in(client, "sam")
    page = visible(client.get("/calls/c1"))
    assert not re.search(r"\d\d:\d\d:\d\d|\d{4}-\d\d-\d\dT|\+00:00|\bUTC\b|\d\d:\d\dZ", page), page


def test_the_call_page_reads_in_english_too(client, people, mango_post):
    scored(mango_post, "c1", "3")
    log_in(client, "sam")
    page = visible(client.get("/calls/c1?lang=en"))
    assert "customer PBX survey (keypad) 3 accepted below the threshold: tag “Оценка 3”" in page
    assert "call summary PBX (MANGO)" in page


def _job(db, entry_id: str, kind: str, status: JobStatus, crm: str = "amocrm", error: str | None = None) -> None:
    with db.transaction() as s:
        call = get_call(s, entry_id)
        s.add(DeliveryJob(crm=crm, key=f"{crm}:{kind}:{call.id}", kind=kind, call_id=call.id, status=status,
                          attempts=3, last_error=error))


def test_deliveries_are_named_by_what_and_where_on_the_call_page_and_the_settings(client, db, people, mango_post):
    scored(mango_post, "c1", "3")
    _job(db, "c1", "log_call", JobStatus.DONE)
    _job(db, "c1", "note", JobStatus.DEAD, error="HTTP 400: bad note")
    log_in(client, "ann")
    timeline = section(client.get("/calls/c1"), 'id="timeline"')
    assert "звонок в журнал CRM: выполнено amoCRM" in timeline
    assert "примечание с оценкой: не выполнено amoCRM" in timeline
    assert "crm " not in timeline and "log_call" not in timeline and ": done" not in timeline
    dead = section(client.get("/settings"), 'id="dead"')
    assert "примечание с оценкой в amoCRM, звонок 22.11.2025, 11:26" in dead
    assert "amocrm:note" not in dead and "note" not in dead.replace("bad note", "")


# --- the settings page -------------------------------------------------------------------------------------

def test_connection_states_and_the_scan_problem_are_said_in_russian(client, db, people):
    until = datetime.now(timezone.utc) + timedelta(minutes=30)
    with db.transaction() as s:
        mango_row(s).blocked_until = until
        s.add(PbxScan(name="recent", next_at=until, last_calls=0, last_error="the statistics report was not ready in "
                      "time", last_problem=ScanProblem.REPORT_LATE))
    log_in(client, "ann")
    connections = section(client.get("/settings"), 'id="connections"', "</ul>")
    local = until.astimezone(timezone(timedelta(hours=3)))
    assert f"АТС (MANGO): заблокирована до {local:%d.%m.%Y, %H:%M}" in connections
    assert ("Сбор оценок из статистики АТС (за последние полчаса) не удаётся: отчёт статистики АТС не был готов "
            "вовремя; следующая попытка") in connections
    assert "очередь событий: 0 (в порядке)" in connections
    assert "CRM (не подключена): не подключена" in connections
    for code in ("not ready in time", "blocked", "(ok)", "none", "+00:00", "T0", "T1", "T2"):
        assert code not in connections, code


def test_a_scan_problem_stored_before_it_had_a_code_is_still_said_in_russian(client, db, people):
    with db.transaction() as s:
        s.add(PbxScan(name="day", next_at=datetime.now(timezone.utc), last_calls=0, last_error="queries: 3102"))
    log_in(client, "ann")
    connections = section(client.get("/settings"), 'id="connections"', "</ul>")
    assert "(за последние сутки) не удаётся: причина не записана" in connections
    assert "3102" not in connections


@pytest.mark.parametrize("config_overrides", [{"CRM": "webhook", "WEBHOOK_TARGET_URL": "https://hook.example/",
                                               "WEBHOOK_TARGET_SECRET": SECRET}], indirect=True)
def test_a_paused_target_is_said_in_russian_with_the_systems_answer_tucked_away(client, db, people):
    with db.transaction() as s:
        row = account_row(s, "webhook")
        row.paused, row.paused_reason = True, "receiver asks to stop sending (410 Gone)"
        row.paused_at = datetime(2026, 11, 26, 9, 30, tzinfo=timezone.utc)
    log_in(client, "ann")
    html = text(client.get("/settings"))
    state = " ".join(re.sub(r"<[^>]+>", " ", html.split('class="target-state">', 1)[1].split("<details>")[0]).split())
    assert state == ("CRM (вебхук): приостановлена: задания не отправляются, пока подключение не восстановят "
                     "с 26.11.2026, 12:30")
    assert '<details><summary>Что ответила система</summary><p lang="en">receiver asks' in html


@pytest.mark.parametrize("error, problem", [
    (PbxBlocked("x", datetime.now(timezone.utc)), ScanProblem.BLOCKED),
    (PbxCoolingDown("x", datetime.now(timezone.utc)), ScanProblem.COOLING_DOWN),
    (PbxBusy("x", datetime.now(timezone.utc)), ScanProblem.RATE_LIMITED),
    (PbxUnavailable("x", datetime.now(timezone.utc)), ScanProblem.UNAVAILABLE),
    (PbxWrongRequest("x", result=3102), ScanProblem.REFUSED),
    (ScanFailed("x", ScanProblem.REPORT_FAILED), ScanProblem.REPORT_FAILED),
])
def test_a_failed_scan_is_classed_by_its_error_not_its_text(error, problem):
    assert scan_problem(error) == problem


# --- the audit log -----------------------------------------------------------------------------------------

def test_the_audit_names_fields_scopes_and_values_in_russian(client, db, people, auth):
    assert console_login(client, "olga", "wrong password").status_code == 401  # a failure to lift below
    log_in(client, "ann")
    page = client.get("/settings")
    form = {"csrf_token": csrf(page), "scale_min": "1", "scale_max": "10", "max_threshold": "8",
            "tag_template": "Оценка {score}", "score_text_template": "Оценка качества: {score}",
            "rating_window_days": "0", "lock_score": "y", "high_scores": "record"}  # `enabled` unticked: off
    assert client.post("/settings", data=form).status_code == 200
    assert client.post("/settings/lines", data={"csrf_token": csrf(page), "line_number": SALES, "enabled": "on",
                                                "max_threshold": "", "high_scores": ""}).status_code == 302
    assert client.post(f"/settings/lines/{SALES}/delete", data={"csrf_token": csrf(page)}).status_code == 302
    assert client.put("/api/v1/settings", json={"enabled": True}, headers=auth).status_code == 200
    assert client.post("/users/unlock", data={"csrf_token": csrf(page), "username": "olga",
                                              "address": "10.0.0.7"}).status_code == 302
    audit = client.get("/audit")
    rows = [" ".join(re.sub(r"<[^>]+>", " ", row).split())
            for row in text(audit).split('id="audit"')[1].split("<tbody>")[1].split("</tr>")[:-1]]
    assert re.search(r"ann Вход olga с адреса 10\.0\.0\.7 Неудачных входов: [1-9]\d* → 0$", rows[0]), rows[0]
    assert rows[1].endswith("токен администратора (ADMIN_TOKEN) Общие настройки Функция включена: выкл. → вкл.")
    assert rows[2].endswith(f"ann Настройки линии {SALES} Функция включена: вкл. → не задано")
    assert rows[3].endswith(f"ann Настройки линии {SALES} Функция включена: не задано → вкл.")
    assert rows[4].endswith("ann Общие настройки Функция включена: вкл. → выкл. "
                            "Порог: оценка ниже него получает тег: 9 → 8 "
                            "Оценка на пороге и выше: как принято в каждой CRM (amoCRM: не писать, Bitrix24: писать) "
                            "→ писать текст оценки, без тега"), rows[4]
    shown = visible(audit)
    for code in ("high_scores", "max_threshold", "enabled", "None", "True", "False", "global", "line:", "login:",
                 "admin token", "record", " from "):
        assert code not in shown, code


def test_the_audit_names_a_revoked_token_and_a_disabled_user(client, db, people):
    from connector.core.users import CLI_ACTOR, disable_user, issue_token, list_tokens, revoke_token

    with db.transaction() as s:
        issue_token(s, "olga", days=30, name="script")
        token_id = list_tokens(s, "olga")[0][0].id
    with db.transaction() as s:
        revoke_token(s, token_id, actor="ann")
        disable_user(s, "oleg", actor=CLI_ACTOR)
    log_in(client, "ann")
    shown = visible(client.get("/audit"))
    assert "командная строка Пользователь oleg Отключён: нет → да" in shown
    assert f"ann Пользователь olga Токен {token_id}: действует → отозван" in shown
    assert "active" not in shown and "revoked" not in shown and "user:" not in shown and "cli " not in shown


# --- roles, notifications, reports ------------------------------------------------------------------------

def test_roles_and_token_states_are_words(client, people):
    log_in(client, "ann")
    users = section(client.get("/users"), 'id="users"')
    assert "olga оператор 101" in users and "sam супервизор" in users and "ann администратор" in users
    assert "operator" not in users and "supervisor" not in users and "admin" not in users


def test_the_call_list_names_the_crm_status(client, people, mango_post, auth):
    scored(mango_post, "c1", "3")  # no target configured: stored and reported only
    log_in(client, "sam")
    rows = section(client.get("/calls"), 'id="calls"')
    assert rows.endswith("Оценка 3 не отправлялся") and "skipped" not in rows
    assert client.get("/api/v1/calls/c1", headers=auth).json["crm"]["status"] == "skipped"


def test_a_notification_names_its_call_by_time_not_by_id(client, people, mango_post):
    scored(mango_post, "c-77", "2")
    log_in(client, "sam")
    rows = section(client.get("/notifications"), 'id="notifications"')
    assert "Низкая оценка 22.11.2025, 11:26 olga (101) 2" in rows and "c-77" not in rows and "low_score" not in rows


def test_the_reports_days_are_written_as_the_page_writes_dates(client, people, mango_post):
    scored(mango_post, "c1", "3")
    log_in(client, "sam")
    page = text(client.get("/reports?date_from=2025-11-20&date_to=2025-11-24"))
    assert "22.11.2025" in page and not re.search(r">\s*2025-11-2\d\s*<", page)


# --- the domain's reason codes ------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, raw, previous, reason", [
    (Policy(), "3", None, ScoreReason.BELOW_THRESHOLD),
    (Policy(), "9", None, ScoreReason.AT_OR_ABOVE_THRESHOLD),
    (Policy(enabled=False), "3", None, ScoreReason.FEATURE_OFF),
    (Policy(), "3", 3, ScoreReason.ALREADY_IN_FORCE),
    (Policy(), "5", 3, ScoreReason.LOCKED),
    (Policy(lock_score=False), "5", 3, ScoreReason.BELOW_THRESHOLD),
    (Policy(), "x", None, ScoreReason.NOT_A_SCORE),
    (Policy(), "11", None, ScoreReason.NOT_A_SCORE),
])
def test_every_decision_has_a_reason_code_read_from_what_is_stored(policy, raw, previous, reason):
    decision = decide(policy, raw, previous=previous)
    assert decision.code == reason
    assert score_reason(decision.status, decision.value, decision.record, decision.tag) == reason


def test_a_score_after_the_rating_window_is_too_late():
    ended = datetime(2026, 11, 1, tzinfo=timezone.utc)
    decision = decide(Policy(rating_window_days=1), "5", rated_at=ended + timedelta(days=2), call_ended_at=ended)
    assert decision.code == ScoreReason.TOO_LATE



@pytest.mark.parametrize("username, address", [("olga", None), (None, "10.0.0.7"), ("olga", "2001:db8::1")])
def test_an_audit_scope_of_a_lifted_throttle_names_its_user_and_address(username, address):
    from connector.console.audit import AuditScope, audit_subject
    from connector.core.users import login_scope

    subject = audit_subject(login_scope(username, address))
    assert (subject.kind, subject.name, subject.address) == (AuditScope.LOGIN, username, address)
