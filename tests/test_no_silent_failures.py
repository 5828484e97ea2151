"""No batch fails unseen: whatever goes wrong while a target delivers a batch counts as an attempt of
each job, leaves its error text where a person looks (the API, the CLI, /metrics), follows the retry
schedule and ends dead; a block met anywhere pauses the target and keeps the "maybe sent" mark."""
from datetime import datetime, timedelta, timezone

import pytest
from click.testing import CliRunner
from sqlalchemy import update

from commands.cli import cli
from connector.core.accounts import pause_state, resume
from connector.core.models import DeliveryJob
from tests.conftest import dtmf, summary
from tests.delivery_helpers import TOKEN, connector_with_fake_amo
from tests.fakes.amocrm import FakeAmo
from tests.test_webhook_target import targets

PHONE = "79001234567"


@pytest.fixture
def h(db_url):
    with connector_with_fake_amo(db_url, FakeAmo(long_lived_token=TOKEN, unknown_caller="reject_all")) as harness:
        yield harness


def scored(h, entry_id="call-1", phone=PHONE, digits="3"):
    assert h.post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
    assert h.post("events/summary", summary(entry_id, customer=phone)).status_code == 200


def give_up_time(h):
    """A day of retries has passed for every failing job."""
    with h.db.transaction() as s:
        s.execute(update(DeliveryJob).where(DeliveryJob.first_failed_at.is_not(None))
                  .values(first_failed_at=datetime.now(timezone.utc) - timedelta(hours=25)))


def test_an_answer_of_an_unexpected_shape_counts_names_the_field_and_ends_dead(h, monkeypatch, db_url):
    h.fake.add_contact(PHONE)
    h.fake.inject("lost", path="/api/v4/calls", method="POST")  # applied, answer lost: the next try looks it up
    scored(h)
    h.worker.run_once()
    for note in h.fake.notes:  # the look-up meets a call note without the entity it belongs to
        note.pop("entity_id")

    h.make_all_due()
    assert h.worker.run_once() == 1  # no exception escapes: the loop never retries blind
    [job] = h.jobs()
    assert (job.status, job.attempts) == ("pending", 2)
    assert "entity_id" in job.last_error and job.sent_at is not None  # still in doubt: looked up next time
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "pending" and shown["attempts"] == 2 and "entity_id" in shown["last_error"]

    give_up_time(h)
    h.make_all_due()
    h.worker.run_once()
    shown = h.call("call-1")["crm"]
    assert shown["status"] == "dead" and "gave up after 3 attempts" in shown["last_error"]
    assert "entity_id" in shown["last_error"]
    assert len(h.fake.calls_by_uniq("call-1")) == 1  # never sent blind

    metrics = h.client.get("/metrics").get_data(as_text=True)
    assert 'connector_deliveries_total{crm="amocrm",kind="log_call",outcome="retry"}' in metrics
    for key, value in {"DATABASE_URL": db_url, "CRM": "amocrm", "AMOCRM_BASE_URL": h.amo_url,
                       "AMOCRM_LONG_LIVED_TOKEN": "x", "SECRET_KEY": "test-secret-key"}.items():
        monkeypatch.setenv(key, value)
    listed = CliRunner().invoke(cli, ["deliveries", "list", "--status", "dead"], catch_exceptions=False).output
    assert "call-1:log_call" in listed and "entity_id" in listed


def test_an_exception_in_a_target_counts_an_attempt_with_its_text(h, monkeypatch):
    h.fake.add_contact(PHONE)
    scored(h)

    def broken(items):
        raise RuntimeError("the adapter tripped over something new")

    monkeypatch.setattr(h.worker.target.adapter, "log_calls", broken)
    assert h.worker.run_once() == 1
    [job] = h.jobs()
    assert job.status == "pending" and job.attempts == 1
    assert job.last_error == "RuntimeError: the adapter tripped over something new"
    assert job.sent_at is not None and job.lease_owner is None  # may have gone out: looked up first

    monkeypatch.undo()
    h.drain(make_due=True)
    assert h.call("call-1")["crm"]["status"] == "delivered" and len(h.fake.calls_by_uniq("call-1")) == 1


def test_a_failure_while_storing_outcomes_counts_too(h, monkeypatch):
    h.fake.add_contact(PHONE)
    scored(h)

    def broken(*args):
        raise KeyError("responsible")

    monkeypatch.setattr(type(h.worker.target), "on_done", lambda self, *args: broken())
    h.worker.run_once()
    [job] = h.jobs()
    assert (job.status, job.attempts, job.last_error) == ("pending", 1, "KeyError: 'responsible'")
    monkeypatch.undo()
    h.drain(make_due=True)
    assert len(h.fake.calls_by_uniq("call-1")) == 1  # the look-up found the call sent before the failure
    assert h.call("call-1")["crm"]["status"] == "delivered"


def test_a_block_met_one_by_one_pauses_the_target_and_keeps_the_maybe_sent_mark(h):
    """A batch with an unknown caller is refused whole (400), so amoCRM's calls go one by one; the
    account is blocked after the first went through."""
    for i in range(2):
        h.fake.add_contact(f"7900555000{i}")
        scored(h, f"known-{i}", f"7900555000{i}")
    scored(h, "stranger", "79009999999")
    posts = []

    def block_after_the_first_single_call(method, path):
        if (method, path) == ("POST", "/api/v4/calls"):
            posts.append(path)
            if len(posts) == 2:  # the refused batch, then one call applied
                h.fake.blocked = True

    h.fake.after_effect = block_after_the_first_single_call
    h.worker.run_once()
    paused, reason, _at = pause_state(h.db, "amocrm")
    assert paused and "403" in reason
    jobs = [j for j in h.jobs() if j.kind == "log_call"]
    assert {j.status for j in jobs} == {"pending"} and all(j.sent_at is not None for j in jobs)
    assert all(j.attempts == 0 for j in jobs)  # a pause is nobody's failed attempt

    h.fake.blocked, h.fake.after_effect = False, None
    resume(h.db, "amocrm")
    h.drain(make_due=True)
    for i in range(2):
        assert len(h.fake.calls_by_uniq(f"known-{i}")) == 1


def test_a_410_from_the_webhook_receiver_pauses_the_webhook_not_each_job(db_url):
    with targets(db_url) as t:
        t.scored_call("call-0")
        t.drain()
        for i in (1, 2):
            t.scored_call(f"call-{i}")
        t.receiver.answers = [410]  # the receiver is gone
        t.drain()
        paused, reason, _at = pause_state(t.db, "webhook")
        assert paused and "410" in reason
        states = {t.call(f"call-{i}")["crm"]["targets"]["webhook"]["status"] for i in range(3)}
        assert states == {"delivered", "pending"}
        with t.db.transaction() as s:
            jobs = s.query(DeliveryJob).filter_by(crm="webhook", status="pending").all()
            assert len(jobs) == 2 and all(j.attempts == 0 and j.sent_at is None for j in jobs)
        worker = t.workers["webhook"]
        worker._last_probe = float("-inf")
        assert worker.run_once() == 0 and pause_state(t.db, "webhook")[0]  # a probe never undoes a 410

        resume(t.db, "webhook")
        t.drain()
        assert len(t.receiver.applied) == 3
