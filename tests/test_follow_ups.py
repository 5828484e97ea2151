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

from connector.core.models import FollowUp, SettingsAudit
from connector.wiring import build_follow_up_reader
from tests.conftest import ADMIN_TOKEN, console_login, csrf_token, dtmf, recording, summary
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo

PHONE = "79001234567"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def scored_call(post, entry_id="call-1", digits="3", *, extension="101"):
    for kind, payload in (("events/dtmf", dtmf(entry_id, digits)), ("events/recording", recording(entry_id, f"rec-{entry_id}")),
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
    return [c["call_id"] for c in response.json["calls"]]


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
        reads = [(m, p) for _, m, p, _ in h.fake.requests if p == "/api/v4/tasks" and m == "GET"]
        assert len(reads) == 2  # one per round that had something to read, each a batch
        assert read_back(h.app) == 0  # a done follow-up is never read again


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


def test_a_failing_read_leaves_its_error_on_the_follow_up_and_a_log_line(db_url, caplog):
    with amocrm(db_url) as h:
        h.fake.add_contact(PHONE)
        scored_call(h.post)
        h.drain()
        h.fake.inject(503, path="/api/v4/tasks", method="GET")
        assert read_back(h.app) == 1
        task = api_call(h.client)["follow_up"]["task"]
        assert task["state"] == "open" and "503" in task["last_error"] and task["checked_at"]
        assert any("follow-up task(s) back failed" in r.getMessage() for r in caplog.records)
        assert read_back(h.app) == 0  # no hot loop: the next try is the next round
        with h.db.transaction() as s:
            s.execute(update(FollowUp).values(checked_at=datetime.now(timezone.utc) - timedelta(minutes=11)))
        assert read_back(h.app) == 1  # that round succeeds: the error is gone
        assert api_call(h.client)["follow_up"]["task"]["last_error"] is None
