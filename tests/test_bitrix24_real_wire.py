"""Bitrix24 as its module code behaves (the fake portal follows it): lost answers for every job kind never
double anything in the portal's statistics or timeline, a doubt that cannot be proven absent waits with
its reason, recordings really download and attach, and calls without an operator get a user."""
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from connector.core.accounts import pause_state, resume
from connector.core.models import DeliveryJob
from tests.conftest import MANGO_KEY, MANGO_SALT, dtmf, recording, summary
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.mango import FakeMango
from tests.test_bitrix24_target import PHONE, bitrix24

CALLS = 24
# No case here is about a rate limit. The portal's bucket drains 25 times faster than Bitrix24's 2/s, and the
# connector goes at that drain rate, as BITRIX24_RATE_LIMIT sets it (a setting that stops at the real 5/s).
# Each attachRecord has the portal download the recording, which the connector fetches from MANGO: at
# MANGO's own 10/s (MANGO_RATE_LIMIT's highest), not the 5/s default.
FAST_DRAIN = 50.0


@contextmanager
def portal(db_url, fake=None, **kwargs):
    fake = fake or FakeBitrix24(drain_per_second=FAST_DRAIN)
    with bitrix24(db_url, fake, **{"MANGO_RATE_LIMIT": 10, **kwargs}) as p:
        p.worker.target.limiter.interval = 1.0 / fake.drain_per_second
        yield p


def jobs(p, kind=None):
    with p.db.transaction() as s:
        query = select(DeliveryJob).order_by(DeliveryJob.id)
        return [j for j in s.scalars(query) if kind is None or j.kind == kind]


def only_due(p, kind):
    """Only this kind's jobs are due now; the others later."""
    now = datetime.now(timezone.utc)
    with p.db.transaction() as s:
        for job in s.scalars(select(DeliveryJob).where(DeliveryJob.status == "pending")):
            job.not_before = now - timedelta(seconds=1) if job.kind == kind else now + timedelta(hours=1)


def make_due(p):
    with p.db.transaction() as s:
        s.execute(update(DeliveryJob).where(DeliveryJob.status == "pending")
                  .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))


def give_up_time(p):
    with p.db.transaction() as s:
        s.execute(update(DeliveryJob).where(DeliveryJob.first_failed_at.is_not(None))
                  .values(first_failed_at=datetime.now(timezone.utc) - timedelta(hours=25)))


def test_batches_applied_with_their_answers_lost_never_make_a_second_call(db_url):
    """The measured defect: with two register+finish batches applied and their answers lost, 5 of 24 calls
    became two calls (re-registering after finish makes a new call). Each call is one statistics row."""
    fake = FakeBitrix24(drain_per_second=FAST_DRAIN)
    with portal(db_url, fake, BITRIX24_USER_MAP="101:5551,102:5552") as p:
        for i in range(CALLS):
            fake.add_contact(f"7901000{i:04d}")
            extension = "101" if i % 2 else "102"
            for kind, payload in [("events/dtmf", dtmf(f"call-{i}", str(1 + i % 10))),
                                  ("events/recording", recording(f"call-{i}", f"rec-call-{i}")),
                                  ("events/summary", summary(f"call-{i}", extension=extension,
                                                             customer=f"7901000{i:04d}"))]:
                assert p.client.post(f"/mango/{kind}", data=p.post.form(payload)).status_code == 200
        p.post.apply()  # the backlog in batches, as the running inbox applies it
        fake.lose_answers = 2  # the first two batches are applied and answered 504
        p.drain(make_due=True, rounds=60)
        for i in range(CALLS):
            rows = fake.statistics_of(f"call-{i}")
            assert len(rows) == 1, f"call-{i} is {len(rows)} calls in Bitrix24"
            assert rows[0]["RECORD_FILE_ID"]  # and its recording is attached
        assert len(fake.calls) == CALLS and not fake.open_calls
        assert {p.call(f"call-{i}")["crm"]["status"] for i in range(CALLS)} == {"delivered"}


@pytest.mark.parametrize("kind", ["b24_call", "b24_mark", "b24_todo", "b24_record"])
def test_a_lost_answer_of_each_kind_is_looked_up_not_applied_twice(db_url, kind):
    fake = FakeBitrix24(drain_per_second=FAST_DRAIN)
    with portal(db_url, fake, LOW_SCORE_TASK="true") as p:
        contact = fake.add_contact(PHONE)
        for n in range(60):  # a busy entity: more than one page of older comments and to-dos
            fake.comments.append({"ID": 10_000 + n, "ENTITY_TYPE": "contact", "ENTITY_ID": contact,
                                  "COMMENT": f"older {n}", "CREATED": "2026-01-01T00:00:00+00:00"})
            fake.todos.append({"ID": 20_000 + n, "PROVIDER_ID": "CRM_TODO", "OWNER_TYPE_ID": 3,
                               "OWNER_ID": contact, "DESCRIPTION": f"older {n}", "DEADLINE": "2026-01-02"})
        p.post("events/dtmf", dtmf("call-1", "2"))
        p.post("events/summary", summary("call-1", extension="101", customer=PHONE))
        if kind != "b24_call":
            p.worker.run_once()  # the call goes without its recording, which comes later: a b24_record job
        p.post("events/recording", recording("call-1", "rec-call-1"))
        only_due(p, kind)
        fake.lose_answers = 1  # the batch of this kind is applied; its answer never arrives
        assert p.worker.run_once() >= 1
        [lost] = jobs(p, kind)
        assert lost.status == "pending" and lost.sent_at is not None  # in doubt
        p.drain(make_due=True)
        assert [j.status for j in jobs(p)] == ["done"] * len(jobs(p))
        assert len([c for c in fake.comments if c["COMMENT"] == "Оценка качества: 2"]) == 1
        assert len([t for t in fake.todos if t["DESCRIPTION"] == "Перезвонить клиенту: оценка 2"]) == 1
        [row] = fake.statistics_of("call-1")
        assert row["RECORD_FILE_ID"] and fake.calls[row["CALL_ID"]]["record_attaches"] == 1


def test_a_call_in_doubt_that_cannot_be_proven_absent_waits_with_the_reason(db_url):
    """A request answered 504 without being applied: the look-up finds nothing, but with a narrowed
    statistics right ("own calls" only) nothing found proves nothing. The call is not sent again until
    statistics show this operator's calls."""
    fake = FakeBitrix24(drain_per_second=FAST_DRAIN)
    with portal(db_url, fake) as p:
        fake.add_contact(PHONE)
        p.scored_call("call-1")
        p.drain()
        fake.statistics_right = "own"  # the application's user (1) sees only their own calls
        fake.drop_requests = 1
        p.scored_call("call-2")
        p.worker.run_once()  # dropped on its way: in doubt
        for _ in range(3):
            make_due(p)
            p.worker.run_once()
        [job] = [j for j in jobs(p, "b24_call") if j.status != "done"]
        assert job.status == "pending" and job.sent_at is not None
        assert "cannot prove the call absent" in job.last_error and "Call statistics - View" in job.last_error
        assert fake.statistics_of("call-2") == [] and len(fake.calls) == 1  # not sent blind

        fake.statistics_right = "all"
        p.drain(make_due=True)
        assert len(fake.statistics_of("call-2")) == 1 and p.call("call-2")["crm"]["status"] == "delivered"


def test_no_statistics_right_pauses_the_target_with_a_clear_message(db_url):
    fake = FakeBitrix24(drain_per_second=FAST_DRAIN)
    with portal(db_url, fake) as p:
        fake.add_contact(PHONE)
        fake.add_past_call(5551)
        fake.drop_requests = 1
        p.scored_call()
        p.worker.run_once()  # dropped: in doubt
        fake.statistics_right = "none"
        p.drain(make_due=True)
        paused, reason, _at = pause_state(p.db, "bitrix24")
        assert paused and "Call statistics - View" in reason and "ACCESS_DENIED" in reason
        p.worker._last_probe = float("-inf")
        p.worker.run_once()
        assert pause_state(p.db, "bitrix24")[0]  # the probe checks the right too: still paused

        fake.statistics_right = "all"
        resume(p.db, "bitrix24")
        p.drain(make_due=True)
        assert len(fake.statistics_of("call-1")) == 1 and p.call()["crm"]["status"] == "delivered"


def test_a_refused_attach_is_retried_then_dead_with_bitrix24s_reason_never_done(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, recordings=set())  # MANGO never has the file: our link answers 404
    with portal(db_url, pbx=pbx) as p:
        p.fake.add_contact(PHONE)
        p.scored_call()
        p.drain()
        [record] = jobs(p, "b24_record")
        assert record.status == "pending" and "Server returns HTTP error code" in record.last_error
        shown = p.call()["crm"]
        assert shown["status"] == "pending" and "Server returns HTTP error code" in shown["last_error"]
        give_up_time(p)
        p.drain(make_due=True)
        shown = p.call()["crm"]
        assert shown["status"] == "dead" and "gave up" in shown["last_error"]
        assert "attachRecord" in shown["last_error"] and "Server returns HTTP error code" in shown["last_error"]
        assert len(p.fake.statistics_of("call-1")) == 1  # the call and its vote are in, once


def test_a_recording_that_comes_after_the_call_is_attached_to_it(db_url):
    with portal(db_url) as p:
        p.fake.add_contact(PHONE)
        p.post("events/dtmf", dtmf("call-1", "3"))
        p.post("events/summary", summary("call-1", extension="101", customer=PHONE))
        p.drain()
        assert not p.fake.statistics_of("call-1")[0]["RECORD_FILE_ID"]
        p.post("events/recording", recording("call-1", "rec-call-1"))
        p.drain()
        [row] = p.fake.statistics_of("call-1")
        assert row["RECORD_FILE_ID"] and p.fake.calls[row["CALL_ID"]]["record_name"] == "call-1.mp3"


def test_a_call_without_an_operator_goes_as_the_default_user_or_is_dead_with_the_reason(db_url):
    with portal(db_url, BITRIX24_DEFAULT_USER_ID="1") as p:
        p.post("events/summary", summary("group-1", extension=None, customer=PHONE))
        p.post("events/summary", summary("unknown-ext", extension="999", customer=PHONE))
        p.drain(make_due=True)
        assert p.fake.statistics_of("group-1")[0]["PORTAL_USER_ID"] == 1
        assert p.fake.statistics_of("unknown-ext")[0]["PORTAL_USER_ID"] == 1  # no user had extension 999
    with portal(db_url) as p:
        p.post("events/summary", summary("group-2", extension=None, customer=PHONE))
        p.drain(make_due=True)
        shown = p.call("group-2")["crm"]
        assert shown["status"] == "dead" and "BITRIX24_DEFAULT_USER_ID" in shown["last_error"]
