"""Delivery to Bitrix24 through the outbox, against the fake portal over real HTTP: the call registered,
finished with its vote and recording link, the score text and fields on the entity; exactly once when
an answer is lost; the 30-minute register window; a full leaky bucket."""
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from app import create_app
from connector.core.models import DeliveryJob
from connector.core.policy import Policy
from connector.delivery.targets.bitrix24.target import vote_for
from connector.wiring import build_workers
from tests.conftest import ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, MangoPoster, dtmf, make_config, recording, summary
from tests.fakes.bitrix24 import FakeBitrix24, create_fake_bitrix24
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

PHONE = "79001234567"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Portal:
    def __init__(self, app, db, worker, fake, url=""):
        self.app, self.db, self.worker, self.fake, self.url = app, db, worker, fake, url
        self.client = app.test_client()
        self.post = MangoPoster(self.client)

    def scored_call(self, entry_id="call-1", digits="3"):
        assert self.post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
        assert self.post("events/recording", recording(entry_id, f"rec-{entry_id}")).status_code == 200
        assert self.post("events/summary", summary(entry_id, extension="101", customer=PHONE)).status_code == 200

    def drain(self, make_due=False, rounds=30):
        for _ in range(rounds):
            if make_due:
                with self.db.transaction() as s:
                    s.execute(update(DeliveryJob).where(DeliveryJob.status == "pending")
                              .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))
            if not self.worker.run_once():
                return
        raise AssertionError(f"the worker did not become idle: {self.jobs()}")

    def call(self, entry_id="call-1"):
        return self.client.get(f"/api/v1/calls/{entry_id}", headers=AUTH).json

    def jobs(self):
        with self.db.transaction() as s:
            return [(j.kind, j.status, j.last_error) for j in s.scalars(select(DeliveryJob).order_by(DeliveryJob.id))]


class Later:
    """A WSGI app known only after the server is up (the connector's config needs its own address)."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@contextmanager
def bitrix24(db_url, fake=None, pbx=None, **overrides):
    """The connector served over HTTP (Bitrix24 downloads recordings through its signed links), beside
    the fake portal and a fake MANGO that holds each call's recording."""
    fake = fake or FakeBitrix24()
    pbx = pbx or FakeMango(MANGO_KEY, MANGO_SALT, recordings={f"rec-call-{i}" for i in range(40)})
    connector = Later()
    with serving(create_fake_bitrix24(fake)) as url, serving(create_fake_mango(pbx)) as pbx_url, \
            serving(connector) as connector_url:
        settings = {"CRM": "bitrix24", **fake.connector_settings(url), "BITRIX24_SCORE_FIELD": "UF_CRM_QA_SCORE",
                    "BITRIX24_LOW_SCORE_FIELD": "UF_CRM_QA_LOW", "SURVEY_WAIT_SECONDS": 0,
                    "PUBLIC_BASE_URL": connector_url, "MANGO_API_URL": pbx_url + "/vpbx/"}
        config = make_config(db_url, **{**settings, **overrides})
        app = connector.app = create_app(config)
        db = app.extensions["connector"].db
        try:
            [worker] = build_workers(config, db)
            yield Portal(app, db, worker, fake, connector_url)
        finally:
            db.dispose()


def test_a_call_is_registered_finished_with_its_vote_and_its_score_marked_on_the_contact(db_url):
    with bitrix24(db_url) as p:
        contact = p.fake.add_contact(PHONE)
        p.scored_call(digits="3")
        p.drain()
        [call] = p.fake.finished()
        registered, finished = call["params"], call["finished"]
        assert (registered["EXTERNAL_CALL_ID"], registered["USER_ID"], registered["TYPE"], registered["PHONE_NUMBER"],
                registered["SHOW"], registered["ADD_TO_CHAT"], registered["LINE_NUMBER"]) == \
            ("call-1", "5551", "2", PHONE, "0", "0", "74950000000")
        assert (finished["VOTE"], finished["STATUS_CODE"], finished["DURATION"]) == ("2", "200", "60")
        assert call["record_url"].startswith(f"{p.url}/recordings/call-1?exp=")
        assert call["record_name"] == "call-1.mp3" and call["record_bytes"] > 0  # downloaded inside attachRecord
        assert p.fake.statistics_of("call-1")[0]["RECORD_FILE_ID"]
        [comment] = p.fake.comments
        assert (comment["ENTITY_TYPE"], comment["ENTITY_ID"], comment["COMMENT"]) == \
            ("contact", contact, "Оценка качества: 3")
        assert p.fake.fields[("contact", contact)] == {"UF_CRM_QA_SCORE": "3", "UF_CRM_QA_LOW": "Оценка 3"}
        crm = p.call()["crm"]
        assert crm["status"] == "delivered" and crm["targets"]["bitrix24"]["entity"] == {"type": "CONTACT",
                                                                                        "id": contact}


def test_an_unmapped_operator_is_named_by_the_extension(db_url):
    fake = FakeBitrix24(inner_phones={"101": 5552})
    with bitrix24(db_url, fake, BITRIX24_USER_MAP="") as p:
        p.fake.add_contact(PHONE)
        p.scored_call(digits="9")
        p.drain()
        [call] = p.fake.finished()
        assert call["params"]["USER_PHONE_INNER"] == "101" and "USER_ID" not in call["params"]
        assert call["finished"]["VOTE"] == "5"
        [fields] = p.fake.fields.values()
        assert fields == {"UF_CRM_QA_SCORE": "9", "UF_CRM_QA_LOW": ""}  # a high score clears the low mark


def test_a_high_score_is_voted_and_commented_by_default_as_the_portals_call_ratings_expect_every_score(db_url):
    with bitrix24(db_url) as p:
        contact = p.fake.add_contact(PHONE)
        p.scored_call(digits="10")
        p.drain()
        [call] = p.fake.finished()
        assert call["finished"]["VOTE"] == "5"
        assert [c["COMMENT"] for c in p.fake.comments] == ["Оценка качества: 10"]
        assert p.fake.fields[("contact", contact)] == {"UF_CRM_QA_SCORE": "10", "UF_CRM_QA_LOW": ""}


def test_with_ignore_a_high_score_leaves_no_vote_comment_or_field_and_a_low_one_is_still_written(db_url):
    with bitrix24(db_url, QA_HIGH_SCORES="ignore") as p:
        contact = p.fake.add_contact(PHONE)
        p.scored_call("call-1", digits="9")
        p.drain()
        [call] = p.fake.finished()  # the call itself is registered and finished
        assert call["finished"]["VOTE"] == "0" and call["record_url"]
        assert p.fake.comments == [] and p.fake.fields == {}
        assert p.call("call-1")["customer_score"] == 9 and p.call("call-1")["crm"]["status"] == "delivered"
        p.scored_call("call-2", digits="3")
        p.drain()
        assert [c["finished"]["VOTE"] for c in p.fake.finished()] == ["0", "2"]
        assert [c["COMMENT"] for c in p.fake.comments] == ["Оценка качества: 3"]
        assert p.fake.fields[("contact", contact)] == {"UF_CRM_QA_SCORE": "3", "UF_CRM_QA_LOW": "Оценка 3"}


def test_the_user_map_is_edited_in_the_settings_api(db_url):
    with bitrix24(db_url) as p:
        p.fake.add_contact(PHONE)
        assert p.client.get("/api/v1/settings", headers=AUTH).json["bitrix24_user_map"] == {"101": 5551}
        changed = p.client.put("/api/v1/settings", json={"bitrix24_user_map": {"101": 5552}}, headers=AUTH)
        assert changed.status_code == 200 and changed.json["bitrix24_user_map"] == {"101": 5552}
        assert changed.json["amocrm_user_map"] == {}  # each target has its own map
        refused = p.client.put("/api/v1/settings", json={"bitrix24_user_map": {"101": "anna"}}, headers=AUTH)
        assert refused.status_code == 422 and refused.json["error"].startswith("bitrix24_user_map:")
        p.scored_call()
        p.drain()
        [call] = p.fake.finished()
        assert call["params"]["USER_ID"] == "5552"
        audit = p.client.get("/api/v1/settings/audit", headers=AUTH).json["items"]
        assert audit[0]["scope"] == "bitrix24_user_map" and audit[0]["after"] == {"101": 5552}


def test_a_lost_answer_is_looked_up_and_the_call_never_finished_twice(db_url):
    with bitrix24(db_url) as p:
        p.fake.add_contact(PHONE)
        p.fake.lose_answers = 1  # the batch is applied; its answer never arrives
        p.scored_call()
        p.drain(make_due=True)
        assert len(p.fake.calls) == 1 and len(p.fake.finished()) == 1
        assert [(kind, status) for kind, status, _ in p.jobs()] == [("b24_call", "done"), ("b24_mark", "done")]
        assert len(p.fake.comments) == 1


def test_a_call_started_long_ago_and_in_doubt_is_looked_up_by_its_entry_id_not_sent_again(db_url):
    """Bitrix24's register dedupes only onto an open call started within 30 minutes: a late delivery in
    doubt would become a second call. The look-up by EXTERNAL_CALL_ID finds the finished one."""
    with bitrix24(db_url) as p:
        p.fake.add_contact(PHONE)
        p.fake.lose_answers = 1
        p.post("events/dtmf", dtmf("call-1", "3"))
        p.post("events/summary", summary("call-1", extension="101", customer=PHONE,
                                         start=int(time.time()) - 3 * 3600))
        p.drain(make_due=True)
        assert len(p.fake.statistics_of("call-1")) == 1 and len(p.fake.calls) == 1
        assert p.call()["crm"]["status"] == "delivered"


def test_a_spent_method_holds_its_own_jobs_until_its_budget_resets(db_url):
    with bitrix24(db_url, QA_LOCK_SCORE="false") as p:
        p.fake.add_contact(PHONE)
        p.scored_call("call-1")
        p.drain()
        p.fake.operation_limited["telephony.externalcall.finish"] = time.time() + 300
        p.scored_call("call-2")
        p.post("events/dtmf", dtmf("call-1", "8", seq=9))  # call-1 is in: its new score is a mark
        p.drain()
        with p.db.transaction() as s:
            held = s.scalars(select(DeliveryJob).where(DeliveryJob.kind == "b24_call", DeliveryJob.status == "pending"))
            [job] = list(held)
            wait = (job.not_before - datetime.now(timezone.utc)).total_seconds()
        # No answer named the reset time: the budget spans ten 1-minute buckets, so ten minutes, not one.
        assert 590 < wait <= 600 and "OPERATION_TIME_LIMIT" in job.last_error
        assert [c["COMMENT"] for c in p.fake.comments] == ["Оценка качества: 3", "Оценка качества: 8"]
        p.fake.operation_limited.clear()
        p.worker.target.held.clear()  # ten minutes pass
        p.drain(make_due=True)
        # register went through before finish was refused: the kept CALL_ID is finished, nothing registered twice
        assert len(p.fake.calls) == 2 and len(p.fake.finished()) == 2 and not p.fake.open_calls


def test_a_full_bucket_is_waited_out(db_url):
    # A portal draining slower than the 2/s the connector paces for (another application shares its bucket):
    # a 503 comes for sure, however the machine schedules the requests.
    with bitrix24(db_url, FakeBitrix24(bucket_size=1, drain_per_second=0.5)) as p:
        p.fake.add_contact(PHONE)
        for i in range(3):  # no recordings: their downloads would space the requests out
            p.post("events/dtmf", dtmf(f"call-{i}", "3"))
            p.post("events/summary", summary(f"call-{i}", extension="101", customer=PHONE))
        p.drain(make_due=True)
        assert len(p.fake.finished()) == 3 and len(p.fake.comments) == 3
        assert any(status == 503 for *_, status in p.fake.requests)


def test_a_low_score_raises_one_follow_up_to_do_on_the_entity(db_url):
    with bitrix24(db_url, LOW_SCORE_TASK="true") as p:
        contact = p.fake.add_contact(PHONE)
        p.scored_call("call-1", digits="3")
        p.scored_call("call-2", digits="10")  # not tagged: no to-do
        p.drain()
        [todo] = p.fake.todos
        assert (todo["OWNER_TYPE_ID"], todo["OWNER_ID"], todo["DESCRIPTION"], todo["RESPONSIBLE_ID"]) == \
            (3, contact, "Перезвонить клиенту: оценка 3", "5551")
        due = datetime.fromisoformat(todo["DEADLINE"])
        assert timedelta(hours=23.9) < due - datetime.now(timezone.utc) <= timedelta(hours=24)


def test_a_to_do_whose_answer_was_lost_is_looked_up_not_added_twice(db_url):
    with bitrix24(db_url, LOW_SCORE_TASK="true") as p:
        p.fake.add_contact(PHONE)
        p.scored_call(digits="2")
        p.drain()
        with p.db.transaction() as s:  # as a crash after sending would leave it
            s.execute(update(DeliveryJob).where(DeliveryJob.kind == "b24_todo")
                      .values(status="pending", sent_at=datetime.now(timezone.utc), lease_owner=None))
        p.drain(make_due=True)
        assert len(p.fake.todos) == 1
        assert ("b24_todo", "done") in [(k, s) for k, s, _ in p.jobs()]


@pytest.mark.parametrize("scale, scores, votes", [
    ((1, 10), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]),
    ((1, 5), [1, 2, 3, 4, 5], [1, 2, 3, 4, 5]),
    ((0, 10), [0, 1, 5, 10], [1, 1, 3, 5]),
])
def test_the_vote_is_the_score_share_of_the_scale_rounded_up(scale, scores, votes):
    policy = Policy(scale_min=scale[0], scale_max=scale[1], max_threshold=scale[1])
    assert [vote_for(s, policy) for s in scores] == votes
