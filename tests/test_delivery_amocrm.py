"""Delivery to amoCRM through the outbox, against a fake amoCRM over real HTTP."""
import logging
import re
import time

import pytest

from tests.conftest import dtmf, recording, summary
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo

PHONE = "79001234567"


def unknown_callers(test):
    """A test whose calls may reach amoCRM with an unknown caller's phone: it runs against both answers."""
    test.unknown_callers = True
    return test


def pytest_generate_tests(metafunc):
    """amoCRM's answer to a batch holding an unknown phone is a 400 either way; whether it adds the batch's
    known calls is undocumented, so every test that may send such a batch runs against both (`unknown_caller`).
    Against the fake the answers differ in that batch only: a test whose callers are all known runs once, and
    its harness checks that no such batch came (else: mark it `unknown_callers`)."""
    if "unknown_caller" in metafunc.fixturenames:
        both = getattr(metafunc.function, "unknown_callers", False)
        metafunc.parametrize("unknown_caller", ["reject_all", "add_known"] if both else ["every_caller_known"])


# The tests below are not about amoCRM's rate limit (test_rate_limit_holds_across_the_batch is, and runs at
# the real 7/s): the connector and the fake both run ten times faster, the connector still at the fake's
# limit with its usual headroom, so no request waits 0.15 s for a slot it would get at once in a test.
FAST_RATE = 70


@pytest.fixture
def h(db_url, request, unknown_caller):
    overrides = {"AMOCRM_RATE_LIMIT": FAST_RATE, **getattr(request, "param", {})}
    once = unknown_caller == "every_caller_known"
    fake = FakeAmo(long_lived_token=TOKEN, unknown_caller="reject_all" if once else unknown_caller,
                   rate_limit=int(float(overrides["AMOCRM_RATE_LIMIT"])))
    with connector_with_fake_amo(db_url, fake, **overrides) as harness:
        yield harness
    assert not (once and fake.unknown_batches), \
        "a batch held an unknown caller: mark the test `unknown_callers` to run it against both answers"


def callbacks(entry_id="call-1", digits="3", *, extension="101", phone=PHONE):
    return [("events/dtmf", dtmf(entry_id, digits)), ("events/recording", recording(entry_id, f"rec-{entry_id}")),
            ("events/summary", summary(entry_id, extension=extension, customer=phone))]


def scored_call(h, entry_id="call-1", digits="3", *, extension="101", phone=PHONE):
    for kind, payload in callbacks(entry_id, digits, extension=extension, phone=phone):
        assert h.post(kind, payload).status_code == 200


def scored_calls(h, count: int, prefix: str = "c", digits: str = "2", *, phones: str = "7900") -> None:
    """`count` scored calls, each from a caller the fake knows: every callback is acknowledged, then the
    inbox applies the backlog in batches, as the running inbox does (not one callback at a time)."""
    for i in range(count):
        phone = f"{phones}{i:07d}"
        h.fake.add_contact(phone)
        for kind, payload in callbacks(f"{prefix}{i}", digits, phone=phone):
            assert h.client.post(f"/mango/{kind}", data=h.post.form(payload)).status_code == 200
    h.post.apply()


def test_low_score_call_is_logged_once_and_its_contact_tagged(h):
    contact = h.fake.add_contact(PHONE)
    scored_call(h)
    h.drain()

    [call] = h.fake.calls
    assert call["uniq"] == "call-1" and call["direction"] == "inbound" and call["duration"] == 60
    assert call["call_result"] == "Оценка качества: 3" and call["call_status"] == 4
    assert call["phone"] == "+79001234567" and call["source"] == "post-call QA connector"
    assert call["link"].startswith("http://127.0.0.1:8080/recordings/call-1?exp=")
    assert (call["responsible_user_id"], call["call_responsible"]) == (5551, 5551)
    assert h.fake.contacts[contact]["tags"] == ["Оценка 3"]

    shown = h.call("call-1")["crm"]
    assert (shown["status"], shown["entity_type"], shown["entity_id"]) == ("delivered", "contacts", contact)
    assert shown["responsible"] == {"user_id": 5551, "mapped": True}


def test_call_goes_to_the_single_open_lead_and_the_lead_is_tagged(h):
    h.fake.add_contact(PHONE, open_lead=True)
    scored_call(h, digits="2")
    h.drain()
    [(lead_id, lead)] = h.fake.leads.items()
    assert lead["tags"] == ["Оценка 2"]
    assert h.call("call-1")["crm"]["entity_type"] == "leads"


@pytest.mark.parametrize("h", [{"AMOCRM_SCORE_FIELD_ID": "777", "LOW_SCORE_TASK": "true"}], indirect=True)
def test_a_score_at_the_threshold_writes_nothing_about_it_into_amocrm_by_default(h):
    """MANGO's own amoCRM setting ignores a score at or above the threshold; so does the connector."""
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="9")  # the threshold is 9
    h.drain()
    [call] = h.fake.calls  # the call itself is logged: a call happened
    assert call["uniq"] == "call-1" and "call_result" not in call and call["link"]
    assert [n for n in h.fake.notes if n["note_type"] == "common"] == [] and h.fake.tasks == []
    assert h.fake.contacts[contact]["tags"] == [] and h.fake.contacts[contact]["fields"] == {}
    assert not any(method == "PATCH" for _, method, _, _ in h.fake.requests)
    shown = h.call("call-1")  # the connector keeps and shows the score
    assert shown["customer_score"] == 9 and shown["crm"]["status"] == "delivered"
    assert (shown["decision"]["at_or_above_threshold"], shown["decision"]["high_scores"]) == (True, "default")


@pytest.mark.parametrize("h", [{"QA_HIGH_SCORES": "record", "AMOCRM_SCORE_FIELD_ID": "777"}], indirect=True)
def test_with_record_a_high_score_is_written_without_a_tag(h):
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="9")
    h.drain()
    assert h.fake.calls[0]["call_result"] == "Оценка качества: 9"
    assert h.fake.contacts[contact]["tags"] == [] and h.fake.contacts[contact]["fields"] == {777: 9}
    assert h.call("call-1")["crm"]["status"] == "delivered"


def test_a_high_score_after_the_call_was_logged_adds_no_note_by_default(h):
    contact = h.fake.add_contact(PHONE)
    h.post("events/summary", summary())
    h.drain()
    h.post("events/dtmf", dtmf(digits="10"))
    h.drain()
    assert len(h.fake.calls) == 1 and "call_result" not in h.fake.calls[0]
    assert [n for n in h.fake.notes if n["note_type"] == "common"] == []
    assert h.fake.contacts[contact]["tags"] == [] and h.call("call-1")["customer_score"] == 10


def test_the_setting_changed_in_the_api_applies_to_the_next_scores(h):
    from tests.conftest import ADMIN_TOKEN

    h.fake.add_contact(PHONE)
    changed = h.client.put("/api/v1/settings", json={"high_scores": "record"},
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert changed.status_code == 200 and changed.json["high_scores"] == "record"
    scored_call(h, digits="10")
    h.drain()
    assert h.fake.calls[0]["call_result"] == "Оценка качества: 10"


def test_a_line_may_have_high_scores_recorded_while_the_others_ignore_them(h):
    from tests.conftest import ADMIN_TOKEN

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    h.fake.add_contact(PHONE)
    assert h.client.put("/api/v1/settings/lines/74950000001", json={"high_scores": "record"},
                        headers=auth).status_code == 200
    for entry_id, line in [("c1", "74950000001"), ("c2", "74950000002")]:
        h.post("events/dtmf", dtmf(entry_id, "9"))  # before the summary: decided again by its line
        h.post("events/summary", summary(entry_id, line=line))
    h.drain()
    results = {c["uniq"]: c.get("call_result") for c in h.fake.calls}
    assert results == {"c1": "Оценка качества: 9", "c2": None}


@pytest.mark.parametrize("h", [{"QA_LOCK_SCORE": "false"}], indirect=True)
def test_an_ignored_high_score_replacing_a_low_one_takes_its_tag_off_and_writes_nothing_else(h):
    contact = h.fake.add_contact(PHONE)
    h.fake.contacts[contact]["tags"] = ["VIP"]
    scored_call(h, digits="3")
    h.drain()
    assert h.fake.contacts[contact]["tags"] == ["VIP", "Оценка 3"]
    h.post("events/dtmf", dtmf(digits="10", seq=9))
    h.drain()
    assert h.fake.contacts[contact]["tags"] == ["VIP"]  # QA staff no longer chase a revised score
    texts = [h.fake.calls[0]["call_result"]] + [n["params"]["text"] for n in h.fake.notes
                                                 if n["note_type"] == "common"]
    assert texts == ["Оценка качества: 3"]


def test_a_score_after_the_call_was_logged_becomes_a_note_and_a_tag(h):
    contact = h.fake.add_contact(PHONE)
    h.post("events/summary", summary())
    h.drain()
    assert "call_result" not in h.fake.calls[0]  # logged without a score after the wait

    h.post("events/dtmf", dtmf(digits="4"))
    h.drain()
    notes = [n for n in h.fake.notes if n["note_type"] == "common"]
    assert [n["params"]["text"] for n in notes] == ["Оценка качества: 4"]
    assert h.fake.contacts[contact]["tags"] == ["Оценка 4"]
    assert len(h.fake.calls) == 1


def test_unmapped_extension_falls_back_and_says_so(h):
    h.fake.add_contact(PHONE)
    scored_call(h, extension="199")
    h.drain()
    assert "responsible_user_id" not in h.fake.calls[0]
    assert h.call("call-1")["crm"]["responsible"]["mapped"] is False


def test_user_map_is_editable_through_settings(h):
    from tests.conftest import ADMIN_TOKEN

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    response = h.client.put("/api/v1/settings", json={"amocrm_user_map": {"199": 7777}}, headers=auth)
    assert response.status_code == 200 and response.json["amocrm_user_map"] == {"199": 7777}
    bad = h.client.put("/api/v1/settings", json={"amocrm_user_map": {"199": "x"}}, headers=auth)
    assert bad.status_code == 422 and "amocrm_user_map" in bad.json["error"]
    h.fake.add_contact(PHONE)
    scored_call(h, extension="199")
    h.drain()
    assert h.fake.calls[0]["responsible_user_id"] == 7777


def test_the_worker_rereads_the_settings_only_after_an_admin_changed_them(h):
    from tests.conftest import ADMIN_TOKEN, counted_statements

    h.fake.add_contact(PHONE)
    h.fake.add_contact("79001230000")
    scored_call(h, "call-1")
    h.drain()  # the worker has read the settings once
    scored_call(h, "call-2", extension="199", phone="79001230000")
    with counted_statements(h.db, verbs=False) as statements:
        h.drain()
    assert "responsible_user_id" not in h.fake.calls[1]
    settings_reads = [q for q in statements if "runtime_settings" in q]
    # One small query (scopes and versions) per batch; the settings themselves were not read again.
    assert settings_reads and not any(re.search(r"runtime_settings\.\W?values", q) for q in settings_reads), \
        settings_reads

    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    h.client.put("/api/v1/settings", json={"amocrm_user_map": {"199": 7777}}, headers=auth)
    scored_call(h, "call-3", extension="199", phone="79001230000")
    h.drain()
    assert h.fake.calls[2]["uniq"] == "call-3" and h.fake.calls[2]["responsible_user_id"] == 7777


@pytest.mark.parametrize("h", [{"QA_LOCK_SCORE": "false"}], indirect=True)
def test_a_replacing_score_swaps_the_tag_without_touching_others(h):
    contact = h.fake.add_contact(PHONE)
    h.fake.contacts[contact]["tags"] = ["VIP"]
    scored_call(h, digits="3")
    h.drain()
    h.post("events/dtmf", dtmf(digits="5", seq=9))
    h.drain()
    assert h.fake.contacts[contact]["tags"] == ["VIP", "Оценка 5"]
    patches = [p for _, m, p, _ in h.fake.requests if m == "PATCH"]
    assert len(patches) == 2


@pytest.mark.parametrize("h", [{"QA_LOCK_SCORE": "false"}], indirect=True)
def test_a_tags_job_whose_score_was_replaced_before_it_was_sent_is_done_without_a_request(h):
    """The replacing score's own tags job carries the change: the older one is stored done, marked superseded."""
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="3")
    assert h.worker.run_once()  # the call is logged; its tags job waits
    [waiting] = [j for j in h.jobs() if j.kind == "tags"]
    assert waiting.status == "pending"
    h.post("events/dtmf", dtmf(digits="5", seq=9))
    h.drain()
    [replaced] = [j for j in h.jobs() if j.id == waiting.id]
    assert (replaced.status, replaced.result) == ("done", {"entity_type": None, "entity_id": None, "superseded": True})
    assert h.fake.contacts[contact]["tags"] == ["Оценка 5"]
    assert len([p for _, m, p, _ in h.fake.requests if m == "PATCH"]) == 1


@unknown_callers
def test_unknown_caller_gets_a_contact_owned_by_the_operator(h):
    scored_call(h, phone="79990001122")
    h.drain()
    [(contact_id, contact)] = h.fake.contacts.items()
    assert contact["phones"] == ["79990001122"] and contact["responsible"] == 5551
    assert h.fake.calls[0]["entity_id"] == contact_id and contact["tags"] == ["Оценка 3"]
    assert h.call("call-1")["crm"]["status"] == "delivered"


@unknown_callers
def test_replaying_an_unmatched_call_starts_a_failed_contact_creation_again(h):
    """amoCRM's own tidy-up on replay (its planning's `on_replay`): the failed contact job is dropped, so
    the replayed call, still unmatched, creates a new contact and goes out."""
    from sqlalchemy import update

    from connector.core.models import DeliveryJob
    from connector.delivery import outbox

    h.fake.inject(400, path="/api/v4/contacts", method="POST")
    scored_call(h, phone="79990001122")
    h.drain()
    with h.db.transaction() as s:  # the call is unmatched and its contact creation dead
        s.execute(update(DeliveryJob).where(DeliveryJob.kind == "log_call").values(status="unmatched"))
    assert h.call("call-1")["crm"]["status"] == "dead"
    plannings = {t.name: t for t in h.app.extensions["connector"].ingest.targets}
    with h.db.transaction() as s:
        [job_id] = outbox.jobs_to_replay(s, "unmatched", None)
        outbox.replay(s, job_id, plannings)
    h.drain()
    assert h.call("call-1")["crm"]["status"] == "delivered" and len(h.fake.calls) == 1
    assert [c["phones"] for c in h.fake.contacts.values()] == [["79990001122"]]


@unknown_callers
@pytest.mark.parametrize("h", [{"AMOCRM_CREATE_CONTACTS": "false"}], indirect=True)
def test_unknown_caller_without_contact_creation_is_unmatched_and_replayable(h):
    from connector.delivery import outbox

    scored_call(h, phone="79990001122")
    h.drain()
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "unmatched" and "Entity not found" in shown["last_error"]
    assert h.fake.calls == []

    h.fake.add_contact("79990001122")
    with h.db.transaction() as s:
        for job_id in outbox.jobs_to_replay(s, "unmatched", None):
            outbox.replay(s, job_id)
    h.drain()
    assert h.call("call-1")["crm"]["status"] == "delivered" and len(h.fake.calls) == 1


@pytest.mark.parametrize("h", [{"AMOCRM_LOG_CALLS": "false"}], indirect=True)
def test_when_another_integration_logs_calls_the_score_is_a_note(h):
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="2")
    h.drain()
    assert h.fake.calls == []
    notes = [n for n in h.fake.notes if n["note_type"] == "common"]
    assert [(n["entity_id"], n["params"]["text"]) for n in notes] == [(contact, "Оценка качества: 2")]
    assert h.fake.contacts[contact]["tags"] == ["Оценка 2"]


@pytest.mark.parametrize("h", [{"AMOCRM_SCORE_FIELD_ID": "777", "QA_HIGH_SCORES": "record"}], indirect=True)
def test_score_field_is_written(h):
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="9")
    h.drain()
    assert h.fake.contacts[contact]["fields"] == {777: 9} and h.fake.contacts[contact]["tags"] == []


@pytest.mark.parametrize("h", [{"LOW_SCORE_TASK": "true", "QA_LOCK_SCORE": "false"}], indirect=True)
def test_a_low_score_raises_one_follow_up_task_for_the_responsible_user(h):
    from connector.delivery.targets.amocrm.client import TASK_TYPE_CALL

    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="3")
    h.drain()
    [task] = h.fake.tasks
    assert (task["text"], task["entity_type"], task["entity_id"], task["responsible_user_id"], task["task_type_id"]) \
        == ("Перезвонить клиенту: оценка 3", "contacts", contact, 5551, TASK_TYPE_CALL)
    assert 23.9 * 3600 < task["complete_till"] - time.time() <= 24 * 3600  # due LOW_SCORE_TASK_HOURS after the score
    h.post("events/dtmf", dtmf(digits="9", seq=8))  # a replacing high score: untagged, so no task
    h.drain()
    assert len(h.fake.tasks) == 1
    h.post("events/dtmf", dtmf(digits="2", seq=9))  # a new low score: its own task
    h.drain()
    assert [t["text"] for t in h.fake.tasks] == ["Перезвонить клиенту: оценка 3", "Перезвонить клиенту: оценка 2"]


@pytest.mark.parametrize("h", [{"LOW_SCORE_TASK": "true"}], indirect=True)
def test_a_task_whose_answer_was_lost_is_looked_up_not_created_twice(h):
    h.fake.add_contact(PHONE)
    h.fake.inject("lost", path="/api/v4/tasks", method="POST")
    scored_call(h, digits="3")
    h.drain(make_due=True)
    assert len(h.fake.tasks) == 1
    assert any(m == "GET" and p == "/api/v4/tasks" for _, m, p, _ in h.fake.requests)  # it looked first


def test_no_task_without_the_setting(h):
    h.fake.add_contact(PHONE)
    scored_call(h, digits="1")
    h.drain()
    assert h.fake.tasks == [] and list(h.fake.contacts.values())[0]["tags"] == ["Оценка 1"]


@pytest.mark.parametrize("h", [{"QA_ENABLED": "false"}], indirect=True)
def test_feature_off_sends_nothing(h):
    h.fake.add_contact(PHONE)
    scored_call(h)
    h.drain()
    assert h.fake.requests == [] and h.call("call-1")["crm"]["status"] == "skipped"


def test_internal_calls_are_not_delivered(h):
    h.post("events/summary", summary(direction=0))
    h.drain()
    assert h.fake.requests == []


def test_batches_hold_at_most_50_items(h):
    scored_calls(h, 51)  # one more than a batch holds
    h.drain()
    posts = [p for _, m, p, _ in h.fake.requests if m == "POST" and p == "/api/v4/calls"]
    patches = [p for _, m, p, _ in h.fake.requests if m == "PATCH"]
    assert (len(posts), len(patches)) == (2, 2)
    assert len(h.fake.calls) == 51 and all(c["tags"] == ["Оценка 2"] for c in h.fake.contacts.values())


def test_a_running_worker_claims_the_next_batch_while_sending_and_hands_it_back_when_stopped(h):
    """While a full batch goes out, the next one is claimed beside it (the claim is off the rate-limit
    path); a worker stopped then hands that batch back at once instead of leaving it leased."""
    import threading

    from sqlalchemy import func, select

    from connector.core.models import DeliveryJob

    scored_calls(h, 60)  # a full batch of 50, and 10 for the next one
    claimed_by = []
    claim = h.worker._claim

    def spying_claim():
        claimed_by.append(threading.current_thread().name)
        return claim()

    h.worker._claim = spying_claim
    stop = threading.Event()

    def stop_while_the_full_batch_is_answered(method, path):
        if path == "/api/v4/calls" and len(h.fake.calls) >= 50:
            stop.set()  # the first batch is in amoCRM, its answer on the way; the next one is claimed

    h.fake.after_effect = stop_while_the_full_batch_is_answered
    running = threading.Thread(target=h.worker.run, args=(stop,))
    running.start()
    running.join(timeout=30)
    assert not running.is_alive()
    assert any(name.startswith("amocrm-claims") for name in claimed_by), claimed_by
    with h.db.transaction() as s:
        leased = s.scalar(select(func.count()).select_from(DeliveryJob).where(
            DeliveryJob.status == "pending", DeliveryJob.lease_owner.is_not(None)))
    assert leased == 0
    h.drain()  # what was handed back goes out once, like the rest
    assert len(h.fake.calls) == 60 and len({c["uniq"] for c in h.fake.calls}) == 60
    assert all(c["tags"] == ["Оценка 2"] for c in h.fake.contacts.values())


def test_transient_errors_back_off_then_succeed(h, monkeypatch):
    from connector.delivery.targets.amocrm import client

    # The 429 holds every worker for amoCRM's second; its length is the case of a 429 naming no wait below.
    monkeypatch.setattr(client, "RATE_LIMIT_PAUSE", 0.1)
    h.fake.add_contact(PHONE)
    h.fake.inject(500, path="/api/v4/calls")
    h.fake.inject(429, path="/api/v4/calls")
    scored_call(h)
    h.worker.run_once()
    [job] = h.jobs()
    assert job.status == "pending" and "500" in job.last_error and job.not_before > job.updated_at
    h.drain(make_due=True)
    assert len(h.fake.calls) == 1
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "delivered" and shown["attempts"] >= 3


def test_validation_error_is_dead_at_once_with_the_detail_and_replayable(h):
    from connector.delivery import outbox

    h.fake.add_contact(PHONE)
    scored_call(h)
    h.fake.inject(400, path="/api/v4/calls")
    h.drain()
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "dead" and "400" in shown["last_error"] and shown["attempts"] == 1
    with h.db.transaction() as s:
        [job_id] = outbox.jobs_to_replay(s, "dead", None)
        outbox.replay(s, job_id)
    h.drain()
    assert h.call("call-1")["crm"]["status"] == "delivered"


def test_one_bad_item_fails_alone(h):
    """A 400 naming one item of the batch kills that item only; the rest are delivered."""
    from connector.delivery.contract import Dead, SendAgain, TagItem

    h.fake.add_contact(PHONE)
    good = h.fake.add_contact("79005550000")
    results = h.worker.target.adapter.update_tags([TagItem("contacts", 999999, add=("Оценка 1",)),
                                            TagItem("contacts", good, add=("Оценка 2",))])
    assert isinstance(results[0], Dead) and isinstance(results[1], SendAgain)
    assert "Entity not found" in results[0].reason


def test_blocked_account_pauses_everything_until_resumed(h):
    from connector.core.accounts import resume

    h.fake.add_contact(PHONE)
    scored_call(h)
    h.fake.blocked = True
    h.worker.run_once()
    health = h.client.get("/healthz").json
    assert health == {"status": "degraded", "components": {"database": "ok", "inbox": "ok", "pbx": "ok",
                                                           "crm": "paused"}}
    assert "403" not in str(health)  # the reason is for tokens: GET /api/v1/status
    assert "403" in h.status()["crm"]["reason"]
    sent = len(h.fake.requests)
    h.worker.opts = h.worker.opts.__class__(**{**h.worker.opts.__dict__, "probe_seconds": 3600})
    h.worker._last_probe = 1e18
    for _ in range(3):
        assert h.worker.run_once() == 0
    assert len(h.fake.requests) == sent  # no hammering
    [job] = h.jobs()
    assert job.attempts == 0 and job.status == "pending"

    h.fake.blocked = False
    resume(h.db, "amocrm")
    h.drain()
    assert h.client.get("/healthz").json["status"] == "ok" and len(h.fake.calls) == 1


def test_a_probe_resumes_a_paused_account(h):
    from connector.core.accounts import pause

    pause(h.db, "amocrm", "test pause")
    h.worker._last_probe = float("-inf")
    h.worker.run_once()
    assert h.status()["crm"]["state"] == "ok"


def test_lost_answer_is_looked_up_not_sent_twice(h):
    contact = h.fake.add_contact(PHONE)
    h.fake.inject("lost", path="/api/v4/calls", method="POST")
    scored_call(h)
    h.worker.run_once()
    assert len(h.fake.calls) == 1 and h.jobs()[0].status == "pending"
    h.drain(make_due=True)
    assert len(h.fake.calls) == 1 and len(h.fake.calls_by_uniq("call-1")) == 1
    assert h.fake.contacts[contact]["tags"] == ["Оценка 3"]
    assert h.call("call-1")["crm"]["status"] == "delivered"


def test_lost_note_answer_is_not_sent_twice(h):
    h.fake.add_contact(PHONE)
    h.post("events/summary", summary())
    h.drain()
    h.fake.inject("lost", path="/api/v4/contacts/notes", method="POST")
    h.post("events/dtmf", dtmf(digits="4"))
    h.drain(make_due=True)
    assert len([n for n in h.fake.notes if n["note_type"] == "common"]) == 1


def test_timeout_is_transient(db_url):
    from connector.delivery.targets.amocrm import client as amocrm

    with connector_with_fake_amo(db_url) as h:
        h.fake.add_contact(PHONE)
        scored_call(h)
        original = amocrm.TIMEOUT
        amocrm.TIMEOUT = (1, 0.25)
        try:
            h.fake.inject("slow", path="/api/v4/calls", seconds=0.5)
            h.worker.run_once()
        finally:
            amocrm.TIMEOUT = original
        [job] = h.jobs()
        assert job.status == "pending" and "ReadTimeout" in job.last_error
        assert (job.not_before - job.updated_at).total_seconds() >= 15  # the CRM gets time to finish
        time.sleep(0.5)  # ...which the slow request uses to apply the call after all
        h.drain(make_due=True)
        assert len(h.fake.calls_by_uniq("call-1")) == 1


def test_retries_end_dead_after_24_hours(h):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from connector.core.models import DeliveryJob

    h.fake.add_contact(PHONE)
    scored_call(h)
    h.fake.inject(503, path="/api/v4/calls", times=100)
    h.worker.run_once()
    with h.db.transaction() as s:
        s.execute(update(DeliveryJob).values(first_failed_at=datetime.now(timezone.utc) - timedelta(hours=25)))
    h.drain(make_due=True)
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "dead" and "gave up" in shown["last_error"]


@pytest.mark.parametrize("h", [{"AMOCRM_RATE_LIMIT": "7"}], indirect=True)  # amoCRM's own limit
def test_rate_limit_holds_across_the_batch(h):
    for i in range(12):
        phone = f"7911{i:07d}"
        h.fake.add_contact(phone)
        h.post("events/summary", summary(f"r{i}", customer=phone))
        h.post("events/dtmf", dtmf(f"r{i}", "1"))
        h.worker.target.adapter.find_entity_by_phone(phone)  # 12 requests as fast as the limiter allows
    assert h.fake.max_requests_in_any_second() <= 7
    assert not any(status == 429 for *_, status in h.fake.requests)


def test_tokens_never_reach_the_logs(h, caplog):
    caplog.set_level(logging.DEBUG)
    h.fake.add_contact(PHONE)
    h.fake.inject(401, path="/api/v4/calls")
    scored_call(h)
    h.drain(make_due=True)
    assert TOKEN not in caplog.text and "test-vpbx-salt" not in caplog.text


@pytest.mark.parametrize("h", [{"SURVEY_WAIT_SECONDS": "180"}], indirect=True)
def test_a_call_waits_for_its_survey_score_then_goes_with_it(h):
    now = int(time.time())
    h.fake.add_contact(PHONE)
    h.post("events/summary", summary(start=now - 70, talk=10, talk_seconds=60))
    assert h.worker.run_once() == 0 and h.fake.calls == []  # not due: the survey may still come
    h.post("events/dtmf", dtmf(digits="6", timestamp=now))
    h.drain()
    [call] = h.fake.calls
    assert call["call_result"] == "Оценка качества: 6"


@pytest.mark.parametrize("h", [{"SURVEY_WAIT_SECONDS": "180"}], indirect=True)
def test_a_call_without_a_survey_goes_after_the_wait(h):
    now = int(time.time())
    h.fake.add_contact(PHONE)
    h.post("events/summary", summary(start=now - 70, talk=10, talk_seconds=60))
    [job] = h.jobs()
    assert 170 <= (job.not_before.timestamp() - now) <= 180
    h.drain(make_due=True)  # as if three minutes had passed
    [call] = h.fake.calls
    assert "call_result" not in call and h.call("call-1")["crm"]["status"] == "delivered"


@pytest.mark.parametrize("h", [{"AMOCRM_LOG_CALLS": "false"}], indirect=True)
def test_lost_note_answer_without_call_logging_is_not_sent_twice(h):
    h.fake.add_contact(PHONE)
    h.fake.inject("lost", path="/api/v4/contacts/notes", method="POST")
    scored_call(h, digits="2")
    h.drain(make_due=True)
    assert len([n for n in h.fake.notes if n["note_type"] == "common"]) == 1
    assert h.call("call-1")["crm"]["status"] == "delivered"


@pytest.mark.parametrize("h", [{"QA_LOCK_SCORE": "false"}], indirect=True)
def test_every_changed_score_is_written_once_even_when_values_repeat(h):
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="3")
    h.drain()
    for seq, digits in ((10, "5"), (11, "3"), (12, "5")):
        h.post("events/dtmf", dtmf(digits=digits, seq=seq))
        h.drain()
    notes = [n["params"]["text"] for n in h.fake.notes if n["note_type"] == "common"]
    assert notes == ["Оценка качества: 5", "Оценка качества: 3", "Оценка качества: 5"]
    assert h.fake.contacts[contact]["tags"] == ["Оценка 5"]


@pytest.mark.parametrize("h", [{"QA_LOCK_SCORE": "false"}], indirect=True)
def test_scores_arriving_while_the_worker_records_never_clash(h):
    """Webhooks and the worker write the same calls at once; neither fails nor loses a score."""
    import threading

    calls = 40
    scored_calls(h, calls, "w", phones="7944")
    h.fake.rate_limit = 1000
    h.worker.target.limiter.interval = 0.0
    h.worker.target.max_batch = 5
    statuses, errors = [], []

    def post_new_scores():
        for seq in range(20, 23):
            for i in range(calls):
                statuses.append(h.post("events/dtmf", dtmf(f"w{i}", str(3 + seq % 3), seq=seq)).status_code)

    poster = threading.Thread(target=post_new_scores)
    poster.start()
    try:
        while poster.is_alive():
            h.worker.run_once()
    except Exception as exc:  # a deadlock or serialisation failure would land here
        errors.append(exc)
    finally:
        poster.join()
    assert errors == [] and set(statuses) == {200}
    h.drain()
    for i in range(calls):
        call = h.call(f"w{i}")
        last = 3 + 22 % 3  # the score of the last round (seq 22)
        assert call["customer_score"] == last and call["crm"]["status"] == "delivered"
        entity = h.fake.entity(call["crm"]["entity_type"], call["crm"]["entity_id"])
        assert entity["tags"] == [f"Оценка {last}"]


def test_retry_after_holds_every_worker(h):
    from sqlalchemy import select

    from connector.core.models import Account

    h.fake.add_contact(PHONE)
    h.fake.inject(429, path="/api/v4/calls", headers={"Retry-After": "120"})
    scored_call(h)
    before = time.time()
    h.worker.run_once()
    with h.db.transaction() as s:
        next_request_at = s.scalars(select(Account.next_request_at)).one()
    assert next_request_at >= before + 120  # the shared slot moved: no process sends before then
    [job] = h.jobs()
    assert job.not_before.timestamp() >= before + 120 and job.sent_at is None  # surely not applied


def test_a_429_naming_no_wait_is_sent_again_a_second_later_not_on_the_failure_schedule(h):
    h.fake.add_contact(PHONE)
    h.fake.inject(429, path="/api/v4/calls")  # amoCRM's 429 carries no Retry-After
    scored_call(h)
    before = time.time()
    h.worker.run_once()
    [job] = h.jobs()
    assert job.status == "pending" and job.sent_at is None
    assert before + 0.9 <= job.not_before.timestamp() <= time.time() + 1.1  # not the 30 s of a failure
    time.sleep(1.1)
    h.drain()
    assert len(h.fake.calls) == 1 and not any(m == "GET" for _, m, _, _ in h.fake.requests)  # no look-up


# --- amoCRM's real answers -------------------------------------------------------------

def _calls_by_uniq(h) -> dict[str, int]:
    counts: dict[str, int] = {}
    for call in h.fake.calls:
        counts[call["uniq"]] = counts.get(call["uniq"], 0) + 1
    return counts


@unknown_callers
def test_unknown_callers_in_a_batch_hold_up_no_one(h):
    """amoCRM answers a batch holding an unknown phone with a 400 naming no item: every call is
    then looked up and the rest sent one by one; the unknown callers get a contact, once."""
    known = [f"7900100000{i}" for i in range(4)]
    unknown = ["79990000001", "79990000002"]
    for phone in known:
        h.fake.add_contact(phone)
    for i, phone in enumerate(known + unknown):
        scored_call(h, f"c{i}", "2", phone=phone)
    h.drain(make_due=True)  # one by one, a late request may meet the fake's 7/s (429): its wait is skipped
    assert _calls_by_uniq(h) == {f"c{i}": 1 for i in range(6)}
    created = [c for c in h.fake.contacts.values() if c["phones"][0] in unknown]
    assert sorted(c["phones"][0] for c in created) == unknown  # one contact each
    assert all(c["tags"] == ["Оценка 2"] for c in h.fake.contacts.values())
    assert {h.call(f"c{i}")["crm"]["status"] for i in range(6)} == {"delivered"}


@unknown_callers
@pytest.mark.parametrize("h", [{"AMOCRM_CREATE_CONTACTS": "false"}], indirect=True)
def test_unknown_callers_without_contact_creation_are_unmatched_and_the_rest_delivered(h):
    h.fake.add_contact(PHONE)
    scored_call(h, "known", phone=PHONE)
    scored_call(h, "unknown", phone="79990001122")
    h.drain()
    assert _calls_by_uniq(h) == {"known": 1}
    assert h.call("known")["crm"]["status"] == "delivered"
    shown = h.call("unknown")["crm"]
    assert shown["status"] == "unmatched" and "Entity not found" in shown["last_error"]


def test_singular_entity_types_in_the_answer_are_understood(h):
    h.fake.singular_entity_types = True
    contact = h.fake.add_contact(PHONE)
    scored_call(h)
    h.drain()
    assert h.fake.contacts[contact]["tags"] == ["Оценка 3"]
    shown = h.call("call-1")["crm"]
    assert (shown["status"], shown["entity_type"]) == ("delivered", "contacts")


def test_a_403_with_a_vendor_code_quotes_it_in_the_pause(h):
    h.fake.add_contact(PHONE)
    scored_call(h)
    h.fake.blocked = {"title": "Forbidden", "status": 403, "error_code": 113, "detail": "IP is not allowed"}
    h.worker.run_once()
    status = h.status()
    assert status["status"] == "degraded" and "code 113" in status["crm"]["reason"]


def test_an_unused_section_does_not_pause_the_account_during_a_look_up(h):
    h.fake.unused_sections = {"customers"}
    h.fake.add_contact(PHONE)
    h.fake.inject(504, path="/api/v4/calls", method="POST")  # not applied, answer unknown
    scored_call(h)
    h.worker.run_once()
    h.drain(make_due=True)
    assert h.status()["crm"]["state"] == "ok"
    assert _calls_by_uniq(h) == {"call-1": 1}
    assert any(p == "/api/v4/customers/notes" and s == 402 for _, _, p, s in h.fake.requests)


def test_a_call_that_ended_in_the_ivr_is_not_logged_as_talked(h):
    h.fake.add_contact(PHONE)
    ivr_only = {**summary(customer=PHONE), "talk_time": 0, "entry_result": 1}
    h.post("events/summary", ivr_only)
    h.drain()
    [call] = h.fake.calls
    assert call["call_status"] == 6 and call["duration"] == 0


def test_a_batch_whose_outcome_cannot_be_stored_goes_dead_instead_of_looping(h):
    """A user id beyond int32 slipped into the map (the API refuses it today): the call is logged,
    but its responsible user cannot be stored. The batch goes dead with the reason, once."""
    from connector.core.models import RuntimeSettings

    h.fake.add_contact(PHONE)
    too_big = 2**31 if h.db.is_postgres else 2**63
    with h.db.transaction() as s:
        s.add(RuntimeSettings(scope="amocrm_user_map", values={"101": too_big}))
    scored_call(h)
    h.worker.run_once()
    [job] = h.jobs()
    assert job.status == "dead" and "could not be stored" in job.last_error
    assert h.call("call-1")["crm"]["status"] == "dead"
    assert h.worker.run_once() == 0  # nothing comes back


def test_a_crm_failing_for_over_5_minutes_makes_the_connector_degraded(h):
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import update

    from connector.core.models import DeliveryJob

    h.fake.add_contact(PHONE)
    h.fake.inject(503, path="/api/v4/calls", times=5)
    scored_call(h)
    h.worker.run_once()
    assert h.client.get("/healthz").json["components"]["crm"] == "ok"  # failing, but not for long
    with h.db.transaction() as s:
        s.execute(update(DeliveryJob).values(first_failed_at=datetime.now(timezone.utc) - timedelta(minutes=6)))
    assert h.client.get("/healthz").json["components"]["crm"] == "failing"
    assert h.status()["crm"]["outbox"]["log_call"]["pending"] == 1


@pytest.mark.parametrize("h", [{"AMOCRM_LOG_CALLS": "false", "QA_LOCK_SCORE": "false"}], indirect=True)
def test_without_call_logging_an_ignored_high_score_says_nothing_was_written_and_a_later_low_one_is(h):
    """Nothing to send is not "pending" for ever: the call says why amoCRM got nothing."""
    contact = h.fake.add_contact(PHONE)
    scored_call(h, digits="10")
    h.drain()
    crm = h.call("call-1")["crm"]
    assert (crm["status"], crm["reason"], h.fake.notes) == \
        ("skipped", "score at or above the threshold: nothing written (high scores ignored)", [])
    h.post("events/dtmf", dtmf(digits="2", seq=10))  # the customer rates again, low
    h.drain()
    assert h.call("call-1")["crm"]["status"] == "delivered"
    assert [n["params"]["text"] for n in h.fake.notes if n["note_type"] == "common"] == ["Оценка качества: 2"]
    assert h.fake.contacts[contact]["tags"] == ["Оценка 2"]
