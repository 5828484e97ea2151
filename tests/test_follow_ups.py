"""The follow-up loop (issue #20, part 2), end to end: a low score opens the call's follow-up; the worker makes its
CRM task against the fake over real HTTP; a manager completes it there; one read-back run makes the follow-up done
with the CRM's result, as the API, the console and the reports show it. A supervisor closes one in the console
(audited); the calls list filters by it; an overdue one, a task deleted in the CRM and a failing read each show."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from connector.core.models import FollowUp
from connector.wiring import build_follow_up_reader
from tests.conftest import ADMIN_TOKEN, console_login, csrf_token, dtmf, recording, summary
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo

PHONE = "79001234567"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def scored_call(post, entry_id="call-1", digits="3", *, extension="101"):
    for kind, payload in (("events/dtmf", dtmf(entry_id, digits)),
                          ("events/recording", recording(entry_id, f"rec-{entry_id}")),
                          ("events/summary", summary(entry_id, extension=extension, customer=PHONE))):
        assert post(kind, payload).status_code == 200


def read_back(app, session=None) -> int:
    """One round of the follow-ups' read-back, as the worker's loop runs it."""
    services = app.extensions["connector"]
    return build_follow_up_reader(services.config, services.db, session=session).run_once()


def api_call(client, entry_id="call-1") -> dict:
    response = client.get(f"/api/v1/calls/{entry_id}", headers=AUTH)
    assert response.status_code == 200, response.json
    return response.json


def listed(client, **query) -> list[str]:
    response = client.get("/api/v1/calls", query_string=query, headers=AUTH)
    assert response.status_code == 200, response.json
    return [c["call_id"] for c in response.json["items"]]


@contextmanager
def amocrm(db_url, **overrides):
    fake = FakeAmo(long_lived_token=TOKEN, rate_limit=70)
    with connector_with_fake_amo(db_url, fake, LOW_SCORE_TASK="true", AMOCRM_RATE_LIMIT=70, **overrides) as h:
        yield h


# --- amoCRM ------------------------------------------------------------------------------------------------------

def test_an_amocrm_task_completed_by_a_manager_makes_the_follow_up_done_with_its_result(db_url):
    with amocrm(db_url) as h:
        h.fake.add_contact(PHONE)
        scored_call(h.post, digits="3")
        assert api_call(h.client)["follow_up"]["status"] == "open"  # opened with the score, before any CRM task
        h.drain()
        [task] = h.fake.tasks
        follow_up = api_call(h.client)["follow_up"]
        assert follow_up["status"] == "open" and follow_up["task"]["target"] == "amocrm"
        assert follow_up["task"]["id"] == str(task["id"]) and follow_up["task"]["state"] == "open"
        assert follow_up["due_at"] == datetime.fromtimestamp(task["complete_till"], timezone.utc) \
            .isoformat().replace("+00:00", "Z")  # due when the CRM task is

        assert read_back(h.app) == 1  # still open in amoCRM: still open here
        assert api_call(h.client)["follow_up"]["status"] == "open"

        h.fake.complete_task(task["id"], "Перезвонил, клиент доволен")
        read_back(h.app)  # not yet due again: this round reads nothing
        assert api_call(h.client)["follow_up"]["status"] == "open"
        with h.db.transaction() as s:  # the next round comes (FOLLOW_UP_POLL_MINUTES later)
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
        assert read_back(h.app) == 1
        follow_up = api_call(h.client)["follow_up"]
        assert follow_up["status"] == "done" and follow_up["task"]["state"] == "completed"
        assert follow_up["task"]["result"] == "Перезвонил, клиент доволен" and follow_up["done_at"]
        totals = h.client.get("/api/v1/reports/follow-ups", headers=AUTH).json["operators"]["totals"]
        assert (totals["follow_ups"], totals["closed"], totals["follow_up_rate"], totals["overdue"]) == (1, 1, 100.0, 0)
        assert totals["with_outcome"] == 0 and totals["recovery_rate"] is None  # done in the CRM, no console outcome
        reads = [(m, p) for _, m, p, _ in h.fake.requests if p == "/api/v4/tasks" and m == "GET"]
        assert len(reads) == 2  # one per round that had something to read, each a batch
        assert read_back(h.app) == 0  # a done follow-up is never read again


def test_open_follow_ups_are_read_in_batches_and_a_paused_target_is_not_read(db_url):
    from connector.core.accounts import pause, resume

    with amocrm(db_url) as h:
        h.fake.add_contact(PHONE)
        for n in range(3):
            scored_call(h.post, f"call-{n}")
        h.drain()
        assert len(h.fake.tasks) == 3
        services = h.app.extensions["connector"]
        reader = build_follow_up_reader(services.config, services.db)
        reader.readers["amocrm"].read_batch = 2  # a smaller page, so that three make two batches
        for task in h.fake.tasks:
            h.fake.complete_task(task["id"], f"Готово {task['id']}")
        pause(h.db, "amocrm", "account blocked")
        assert reader.run_once() == 0  # a paused target is left alone
        resume(h.db, "amocrm")
        assert reader.run_once() == 2 and reader.run_once() == 1 and reader.run_once() == 0
        reads = [p for _, m, p, _ in h.fake.requests if p == "/api/v4/tasks" and m == "GET"]
        assert len(reads) == 2
        assert {api_call(h.client, f"call-{n}")["follow_up"]["status"] for n in range(3)} == {"done"}


def test_a_high_score_opens_no_follow_up_and_a_second_low_one_keeps_the_first(db_url):
    with amocrm(db_url, QA_LOCK_SCORE="false") as h:
        h.fake.add_contact(PHONE)
        scored_call(h.post, "call-1", digits="10")
        assert api_call(h.client, "call-1")["follow_up"] is None
        scored_call(h.post, "call-2", digits="2")
        h.drain()
        first = api_call(h.client, "call-2")["follow_up"]
        assert h.post("events/dtmf", dtmf("call-2", "1", seq=9)).status_code == 200
        h.drain()
        again = api_call(h.client, "call-2")["follow_up"]
        assert again["task"]["id"] == first["task"]["id"] and again["opened_at"] == first["opened_at"]
        with h.db.transaction() as s:
            assert len(s.scalars(select(FollowUp)).all()) == 1


def test_a_task_deleted_in_amocrm_is_said_and_not_read_again(db_url):
    with amocrm(db_url) as h:
        h.fake.add_contact(PHONE)
        scored_call(h.post)
        h.drain()
        h.fake.delete_task(h.fake.tasks[0]["id"])
        assert read_back(h.app) == 1
        follow_up = api_call(h.client)["follow_up"]
        assert follow_up["task"]["state"] == "deleted" and follow_up["status"] == "open"
        with h.db.transaction() as s:
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(days=1)))
        assert read_back(h.app) == 0  # never asked again


@pytest.mark.parametrize("failure, said", [(503, "TransientError: GET /api/v4/tasks: 503"),
                                           (403, "blocked: GET /api/v4/tasks: 403")])
def test_a_failing_read_leaves_its_error_on_the_follow_up_and_a_log_line(db_url, caplog, failure, said):
    with amocrm(db_url) as h:
        h.fake.add_contact(PHONE)
        scored_call(h.post)
        h.drain()
        h.fake.inject(failure, path="/api/v4/tasks", method="GET")
        assert read_back(h.app) == 1
        task = api_call(h.client)["follow_up"]["task"]
        assert task["state"] == "open" and task["last_error"].startswith(said) and task["checked_at"]
        assert any("follow-up task(s) back failed" in r.getMessage() for r in caplog.records)
        reads = h.status()["crm"]["follow_ups"]  # the status says it too, beside the outbox
        assert (reads["tracked"], reads["read_failing"]) == (1, 1) and reads["last_error"].startswith(said)
        assert read_back(h.app) == 0  # no hot loop: the next try is the next round
        with h.db.transaction() as s:
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
        assert read_back(h.app) == 1  # that round succeeds: the error is gone
        assert api_call(h.client)["follow_up"]["task"]["last_error"] is None


# --- Bitrix24 ----------------------------------------------------------------------------------------------------

def test_a_bitrix24_to_do_completed_in_the_portal_makes_the_follow_up_done(db_url):
    from tests.test_bitrix24_target import bitrix24

    with bitrix24(db_url, LOW_SCORE_TASK="true") as portal:
        portal.fake.add_contact(PHONE)
        portal.scored_call(digits="2")
        portal.drain()
        [todo] = portal.fake.todos
        follow_up = portal.call()["follow_up"]
        assert (follow_up["status"], follow_up["task"]["target"], follow_up["task"]["id"]) == \
            ("open", "bitrix24", str(todo["ID"]))
        assert read_back(portal.app) == 1 and portal.call()["follow_up"]["status"] == "open"

        portal.fake.complete_todo(todo["ID"])
        with portal.db.transaction() as s:
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
        assert read_back(portal.app) == 1
        follow_up = portal.call()["follow_up"]
        assert follow_up["status"] == "done" and follow_up["task"]["state"] == "completed"
        assert follow_up["task"]["result"] is None  # a to-do keeps no result text
        assert follow_up["done_at"] == follow_up["task"]["completed_at"]


def test_a_bitrix24_to_do_deleted_in_the_portal_is_said_and_a_failing_portal_leaves_its_error(db_url):
    from tests.test_bitrix24_target import bitrix24

    with bitrix24(db_url, LOW_SCORE_TASK="true") as portal:
        portal.fake.add_contact(PHONE)
        portal.scored_call("call-1", digits="2")
        portal.scored_call("call-2", digits="2")
        portal.drain()
        first, second = portal.fake.todos
        portal.fake.failing = True  # the portal answers 500 INTERNAL_SERVER_ERROR
        assert read_back(portal.app) == 2
        task = portal.call("call-2")["follow_up"]["task"]
        assert task["state"] == "open" and "INTERNAL_SERVER_ERROR" in task["last_error"]
        portal.fake.failing = False
        portal.fake.delete_todo(first["ID"])
        with portal.db.transaction() as s:
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
        assert read_back(portal.app) == 2  # both in one request
        assert portal.call("call-1")["follow_up"]["task"]["state"] == "deleted"
        after = portal.call("call-2")["follow_up"]["task"]
        assert (after["state"], after["last_error"]) == ("open", None)  # read again: the error is gone
        assert [m for _, m, _ in portal.fake.requests].count("crm.activity.list") == 2


# --- without a CRM task: due LOW_SCORE_TASK_HOURS after the score; overdue; the list's filter -----------------------

def test_without_a_crm_the_follow_up_is_due_the_task_hours_after_the_score_and_overdue_past_it(client, post_score,
                                                                                                db):
    # no target: nothing is read back, and the follow-up still opens, due LOW_SCORE_TASK_HOURS (24) later
    for call_id, score in (("c-low", 2), ("c-late", 3), ("c-fine", 10)):
        assert post_score({"call_id": call_id, "source": "customer", "score": score,
                           "rated_at": "2026-11-20T10:00:00Z"}).status_code in (200, 201, 202)
    follow_up = api_call(client, "c-low")["follow_up"]
    opened = datetime.fromisoformat(follow_up["opened_at"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(follow_up["due_at"].replace("Z", "+00:00"))
    assert due - opened == timedelta(hours=24) and follow_up["task"] is None and not follow_up["overdue"]
    assert api_call(client, "c-fine")["follow_up"] is None
    with db.transaction() as s:  # a day passes for one of them
        row = s.scalars(select(FollowUp).join(FollowUp.call).where(FollowUp.call.has(entry_id="c-late"))).one()
        row.due_at = datetime.now(timezone.utc) - timedelta(minutes=1)
    late = api_call(client, "c-late")["follow_up"]
    assert (late["status"], late["overdue"]) == ("overdue", True)
    assert sorted(listed(client, follow_up="open")) == ["c-late", "c-low"]
    assert listed(client, follow_up="overdue") == ["c-late"]
    assert listed(client, follow_up="recovered") == []
    assert client.get("/api/v1/calls", query_string={"follow_up": "lost"}, headers=AUTH).status_code == 400


# --- the console ----------------------------------------------------------------------------------------------------

PASSWORD = "correct horse battery"


@pytest.fixture
def config_overrides():
    return {"HEAVY_READS_IN_CHILDREN": "false"}  # the reports built in this process: their figures are asserted


@pytest.fixture
def people(db, monkeypatch):
    from connector.core.users import add_user

    monkeypatch.setattr("connector.core.users.PASSWORD_METHOD", "scrypt:1024:8:1")  # roles, not hashing cost
    with db.transaction() as s:
        for name, role, extensions in (("ann", "admin", []), ("sam", "supervisor", []), ("olga", "operator", ["101"]),
                                       ("oleg", "operator", ["102"])):
            add_user(s, name, role, PASSWORD, extensions)


@pytest.fixture
def low_calls(mango_post):
    """call-1 is olga's (101, score 3), call-2 oleg's (102, score 2), call-3 olga's (101, score 10)."""
    for entry_id, extension, digits in (("call-1", "101", "3"), ("call-2", "102", "2"), ("call-3", "101", "10")):
        mango_post("events/summary", summary(entry_id, extension=extension))
        mango_post("events/dtmf", dtmf(entry_id, digits))


def page_text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.get_data(as_text=True)))


def test_a_supervisor_closes_a_follow_up_on_the_call_page_and_it_is_audited(client, people, low_calls, auth):
    console_login(client, "sam", PASSWORD)
    page = client.get("/calls/call-1")
    shown = page_text(page)
    assert "Обратная связь с клиентом" in shown and "ждёт звонка" in shown and "Задача в CRM нет" in shown
    assert 'id="follow-up-form"' in page.get_data(as_text=True)
    assert client.post("/calls/call-1/follow-up", data={"outcome": "recovered", "csrf_token": "forged"}) \
        .status_code == 400
    refused = client.post("/calls/call-1/follow-up", data={"outcome": "lost", "csrf_token": csrf_token(page)})
    assert refused.status_code == 400 and "Выберите итог из списка" in page_text(refused)
    form = page.get_data(as_text=True)
    assert '<option value="">— выберите итог —</option>' in form  # no outcome until the supervisor picks one
    assert "selected" not in form.split('id="outcome"')[1][:400]
    unchosen = client.post("/calls/call-1/follow-up", data={"outcome": "", "csrf_token": csrf_token(page)})
    assert unchosen.status_code == 400 and "Выберите итог из списка" in page_text(unchosen)
    too_long = client.post("/calls/call-1/follow-up", data={"outcome": "recovered", "note": "х" * 501,
                                                            "csrf_token": csrf_token(page)})
    assert too_long.status_code == 400 and api_call(client, "call-1")["follow_up"]["status"] == "open"
    done = client.post("/calls/call-1/follow-up", data={
        "outcome": "recovered", "note": "Извинились, <b>клиент</b> доволен", "csrf_token": csrf_token(page)})
    assert done.status_code == 302 and done.headers["Location"].endswith("/calls/call-1")

    page = client.get("/calls/call-1")
    html, shown = page.get_data(as_text=True), page_text(page)
    assert "выполнена" in shown and "sam: перезвонили, клиент удовлетворён" in shown
    assert "Извинились, &lt;b&gt;клиент&lt;/b&gt; доволен" in html  # a note is plain text, shown escaped
    assert 'id="follow-up-form"' not in html  # closed once
    again = client.post("/calls/call-1/follow-up", data={"outcome": "unreachable", "csrf_token": csrf_token(
        client.get("/calls/call-2"))})
    assert again.status_code == 409 and "Обратная связь уже закрыта" in page_text(again)
    closing = api_call(client, "call-1")["follow_up"]
    assert closing["status"] == "done" and closing["closing"]["by"] == "sam"
    assert (closing["closing"]["outcome"], closing["closing"]["note"]) == \
        ("recovered", "Извинились, <b>клиент</b> доволен")

    [row] = [r for r in client.get("/api/v1/settings/audit", headers=auth).json["items"] if r["scope"] == "follow_up"]
    assert row["actor"] == "sam" and row["after"]["call_id"] == "call-1" and row["after"]["outcome"] == "recovered"
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    console_login(client, "ann", PASSWORD)
    audit = page_text(client.get("/audit"))
    assert "Обратная связь с клиентом" in audit and "перезвонили, клиент удовлетворён" in audit


def test_an_operator_sees_the_block_of_their_own_call_read_only(client, people, low_calls):
    console_login(client, "olga", PASSWORD)
    page = client.get("/calls/call-1")
    assert "Обратная связь с клиентом" in page_text(page) and 'id="follow-up-form"' not in page.get_data(as_text=True)
    assert client.post("/calls/call-1/follow-up", data={"outcome": "recovered", "csrf_token": csrf_token(page)}) \
        .status_code == 403
    assert client.get("/calls/call-2").status_code == 404  # oleg's call, follow-up and all
    assert "Обратная связь с клиентом" not in page_text(client.get("/calls/call-3"))  # never scored low
    english = page_text(client.get("/calls/call-1?lang=en"))
    assert "Customer follow-up" in english and "awaiting a call back" in english and "Call back by" in english


def test_the_calls_list_filters_by_follow_up_in_the_console_and_the_api(client, people, low_calls, db):
    with db.transaction() as s:  # call-2's follow-up is past its due time
        s.execute(update(FollowUp).where(FollowUp.call_row.in_(select(FollowUp.call_row).join(FollowUp.call)
                                                                .where(FollowUp.call.has(entry_id="call-2"))))
                  .values(due_at=datetime.now(timezone.utc) - timedelta(hours=1)))
    console_login(client, "sam", PASSWORD)
    page = client.get("/calls/call-1")
    client.post("/calls/call-1/follow-up", data={"outcome": "recovered", "csrf_token": csrf_token(page)})

    def in_console(**query) -> set[str]:
        html = client.get("/calls", query_string=query).get_data(as_text=True)
        return set(re.findall(r'href="/calls/(call-\d)"', html))

    assert in_console(follow_up="open") == {"call-2"}
    assert in_console(follow_up="overdue") == {"call-2"}
    assert in_console(follow_up="recovered") == {"call-1"}
    assert in_console() == {"call-1", "call-2", "call-3"}
    assert "просрочена" in page_text(client.get("/calls/call-2"))
    refused = client.get("/calls", query_string={"follow_up": "someday"})
    assert refused.status_code == 400 and "Обратная связь" in page_text(refused)
    assert listed(client, follow_up="recovered") == ["call-1"] and listed(client, follow_up="overdue") == ["call-2"]


def test_the_reports_count_follow_ups_per_operator_and_line_each_with_its_n(client, people, low_calls, db):
    def follow_up_of(entry_id):
        return select(FollowUp).join(FollowUp.call).where(FollowUp.call.has(entry_id=entry_id))

    now = datetime.now(timezone.utc)
    with db.transaction() as s:
        s.scalars(follow_up_of("call-1")).one().opened_at = now - timedelta(hours=3)  # scored low 3 h ago
        s.scalars(follow_up_of("call-2")).one().due_at = now - timedelta(hours=1)  # and this one is overdue
    console_login(client, "sam", PASSWORD)
    client.post("/calls/call-1/follow-up", data={"outcome": "recovered",
                                                 "csrf_token": csrf_token(client.get("/calls/call-1"))})
    report = client.get("/api/v1/reports/follow-ups", headers=AUTH).json
    by_operator = {row["operator"]: row for row in report["operators"]["items"]}
    assert by_operator["101"] == {"operator": "101", "follow_ups": 1, "closed": 1, "follow_up_rate": 100.0,
                                  "median_hours": 3.0, "overdue": 0, "with_outcome": 1, "recovered": 1,
                                  "recovery_rate": 100.0}
    assert by_operator["102"] == {"operator": "102", "follow_ups": 1, "closed": 0, "follow_up_rate": 0.0,
                                  "median_hours": None, "overdue": 1, "with_outcome": 0, "recovered": 0,
                                  "recovery_rate": None}
    assert report["operators"]["totals"]["follow_up_rate"] == 50.0 and report["operators"]["totals"]["overdue"] == 1
    [line] = report["lines"]["items"]
    assert (line["line"], line["follow_ups"], line["closed"]) == ("74950000000", 2, 1)

    page = client.get("/reports")
    table = page_text(page).split("Обратная связь с клиентом", 1)[1]
    assert "olga (101) 1 1 100.0 3.0 0 1 1 100.0" in table and "Итого 2 1 50.0 3.0 1 1 1 100.0" in table
    sheet = client.get("/reports/export.xlsx")
    assert sheet.status_code == 200 and sheet.data.startswith(b"PK")

    client.post("/logout", data={"csrf_token": csrf_token(client.get("/calls"))})
    console_login(client, "olga", PASSWORD)
    own = page_text(client.get("/reports")).split("Обратная связь с клиентом", 1)[1]
    assert "olga (101)" in own and "(102)" not in own  # an operator counts only their own calls


def test_a_score_without_a_tag_costs_no_follow_up_query(client, post_score, db):
    from tests.conftest import counted_statements

    with counted_statements(db, verbs=False) as statements:
        assert post_score({"call_id": "c-fine", "source": "customer", "score": 10,
                           "rated_at": "2026-11-20T10:00:00Z"}).status_code in (200, 201, 202)
    assert statements and not [s for s in statements if "follow_ups" in s]
    with counted_statements(db, verbs=False) as statements:
        post_score({"call_id": "c-low", "source": "customer", "score": 2, "rated_at": "2026-11-20T10:00:00Z"})
    assert [s for s in statements if "follow_ups" in s]  # a tagged one looks, then opens it


def test_a_score_decided_again_by_its_line_moves_the_follow_up_with_its_tag(client, auth, mango_post):
    sales, support = "74950000001", "74950000002"
    assert client.put(f"/api/v1/settings/lines/{sales}", json={"max_threshold": 5}, headers=auth).status_code == 200
    assert client.put(f"/api/v1/settings/lines/{support}", json={"max_threshold": 10}, headers=auth).status_code == 200
    mango_post("events/dtmf", dtmf("c1", "6"))  # the line is not known yet: the global threshold 9 tags it
    mango_post("events/dtmf", dtmf("c2", "9"))  # and leaves this one untagged
    assert api_call(client, "c1")["follow_up"]["status"] == "open" and api_call(client, "c2")["follow_up"] is None
    mango_post("events/summary", summary("c1", line=sales))  # its line's threshold 5: 6 is not low there
    mango_post("events/summary", summary("c2", line=support))  # its line's threshold 10: 9 is low there
    assert api_call(client, "c1")["follow_up"] is None
    assert api_call(client, "c2")["follow_up"]["status"] == "open"
