"""The outbound webhook target, alone and beside amoCRM: signed Standard Webhooks with a stable id per
score, retries on 408/429/5xx, dead on other 4xx, and one target's outage never holding up another."""
import base64
import re
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update

from app import create_app
from connector.core.models import DeliveryJob
from connector.delivery import outbox
from connector.wiring import build_workers
from tests.conftest import ADMIN_TOKEN, MangoPoster, dtmf, make_config, summary
from tests.delivery_helpers import TOKEN
from tests.fakes.amocrm import FakeAmo, create_fake_app
from tests.fakes.receiver import FakeReceiver, create_receiver
from tests.fakes.server import serving

SECRET = "whsec_" + base64.b64encode(b"a receiver's secret of 32 bytes!").decode()
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


class Targets:
    def __init__(self, app, db, workers, receiver, amo):
        self.app, self.db, self.workers, self.receiver, self.amo = app, db, workers, receiver, amo
        self.client = app.test_client()
        self.post = MangoPoster(self.client)

    def scored_call(self, entry_id="call-1", digits="3"):
        assert self.post("events/dtmf", dtmf(entry_id, digits)).status_code == 200
        assert self.post("events/summary", summary(entry_id, extension="101")).status_code == 200

    def drain(self, *names, make_due=False, rounds=30):
        """Run these targets' workers until none has anything due."""
        for _ in range(rounds):
            if make_due:
                with self.db.transaction() as s:
                    s.execute(update(DeliveryJob).where(DeliveryJob.status == "pending")
                              .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))
            if not sum(self.workers[name].run_once() for name in names or self.workers):
                return
        raise AssertionError("the workers did not become idle")

    def call(self, entry_id="call-1"):
        return self.client.get(f"/api/v1/calls/{entry_id}", headers=AUTH).json


@contextmanager
def targets(db_url, crm="webhook", receiver=None, amo=None, **overrides):
    receiver = receiver or FakeReceiver(SECRET)
    amo = amo or FakeAmo(long_lived_token=TOKEN, rate_limit=1000)
    amo.add_contact("79001234567")
    with serving(create_receiver(receiver)) as hook_url, serving(create_fake_app(amo)) as amo_url:
        config = make_config(db_url, CRM=crm, WEBHOOK_TARGET_URL=f"{hook_url}/hook", WEBHOOK_TARGET_SECRET=SECRET,
                             AMOCRM_BASE_URL=amo_url, AMOCRM_LONG_LIVED_TOKEN=TOKEN, AMOCRM_USER_MAP="101:5551",
                             AMOCRM_RATE_LIMIT=50, SURVEY_WAIT_SECONDS=0, **overrides)
        app = create_app(config)
        db = app.extensions["connector"].db
        try:
            yield Targets(app, db, {w.crm: w for w in build_workers(config, db)}, receiver, amo)
        finally:
            db.dispose()


def test_a_score_is_posted_once_signed_with_an_id_that_names_it(db_url):
    with targets(db_url, QA_LOCK_SCORE="false") as t:
        t.scored_call()
        t.drain()
        [(message_id, body)] = t.receiver.received  # the receiver verified the signature
        assert body["type"] == "call.scored" and body["timestamp"]
        assert (body["data"]["call_id"], body["data"]["customer_score"], body["data"]["operator"]) == \
            ("call-1", 3, "101")
        assert body["data"]["decision"]["tag"] == "Оценка 3"
        assert re.fullmatch(r"call-1:scored:\d+", message_id)  # one per score: a retry carries it again
        t.scored_call(digits="8")  # a replacing score is a new message
        t.drain()
        assert [b["data"]["customer_score"] for _, b in t.receiver.received] == [3, 8]
        assert len({m for m, _ in t.receiver.received}) == 2
        call = t.call()
        assert call["crm"]["status"] == "delivered" and call["crm"]["targets"]["webhook"]["status"] == "delivered"


def test_a_failing_receiver_gets_the_same_id_again_and_applies_it_once(db_url):
    with targets(db_url, receiver=FakeReceiver(SECRET, answers=[500, 429, 408])) as t:
        t.scored_call()
        t.drain(make_due=True)
        ids = [m for m, _ in t.receiver.received]
        assert len(ids) == 4 and len(set(ids)) == 1
        assert list(t.receiver.applied) == ids[:1]
        with t.db.transaction() as s:
            [job] = s.scalars(select(DeliveryJob).where(DeliveryJob.crm == "webhook")).all()
            assert (job.status, job.attempts) == ("done", 4)


def test_a_refusing_receiver_is_dead_with_its_answer_and_replayable(db_url):
    with targets(db_url, receiver=FakeReceiver(SECRET, answers=[422])) as t:
        t.scored_call()
        t.drain()
        call = t.call()
        assert call["crm"]["status"] == "dead"
        assert call["crm"]["targets"]["webhook"]["last_error"].startswith("webhook: 422")
        with t.db.transaction() as s:
            [job_id] = outbox.jobs_to_replay(s, "dead", None)
            outbox.replay(s, job_id)
        t.drain()
        assert t.call()["crm"]["status"] == "delivered" and len(t.receiver.applied) == 1


def test_one_targets_outage_never_holds_up_another(db_url):
    with targets(db_url, crm="amocrm,webhook") as t:
        t.amo.inject(503, path="/api/v4/calls", times=100)
        t.scored_call()
        t.drain()
        call = t.call()
        assert len(t.receiver.applied) == 1  # the webhook went out while amoCRM fails
        assert call["crm"]["targets"]["webhook"]["status"] == "delivered"
        assert call["crm"]["targets"]["amocrm"]["status"] == "pending"
        assert call["crm"]["targets"]["amocrm"]["last_error"]
        assert call["crm"]["status"] == "pending"  # the summary is the worst target's state
        t.amo.injected.clear()
        t.drain(make_due=True)
        call = t.call()
        assert call["crm"]["status"] == "delivered" and len(t.amo.calls) == 1
        assert call["crm"]["targets"]["amocrm"]["entity"]["type"] == "contacts"
        assert len(t.receiver.received) == 1  # nothing sent twice


def test_a_supervisor_review_is_posted_as_its_own_message(db_url):
    with targets(db_url) as t:
        t.scored_call()
        t.drain()
        answer = t.client.post("/api/v1/calls/call-1/reviews", json={"score": 6, "comment": "no greeting"},
                               headers=AUTH)
        assert answer.status_code == 201
        t.drain()
        bodies = [b["data"] for _, b in t.receiver.received]
        assert [(b["customer_score"], b["supervisor_score"]) for b in bodies] == [(3, None), (3, 6)]
        assert bodies[1]["reviews"][0]["comment"] == "no greeting"
        assert len({m for m, _ in t.receiver.received}) == 2


def test_the_settings_page_shows_each_targets_state(db_url):
    from connector.core.accounts import pause
    from connector.core.users import add_user
    from tests.conftest import console_login

    with targets(db_url, crm="amocrm,webhook") as t:
        with t.db.transaction() as s:
            add_user(s, "ann", "admin", "correct horse battery", [])
        pause(t.db, "amocrm", "403 account blocked")
        console_login(t.client, "ann", "correct horse battery")
        page = t.client.get("/settings").get_data(as_text=True)
        states = [" ".join(re.sub(r"<[^>]+>", " ", li.split("<details>")[0]).split())
                  for li in re.findall(r'<li class="target-state">(.*?)</li>', page, re.S)]
        assert states[0].startswith("CRM (amoCRM): приостановлена: задания не отправляются") and states[1:] == [
            "CRM (вебхук): в порядке"]
        assert '<summary>Что ответила система</summary><p lang="en">403 account blocked</p>' in page


def test_every_score_is_posted_with_the_decision_and_whether_each_crm_writes_it(db_url):
    """amoCRM ignores a score at or above the threshold by default; the webhook still posts it, saying so."""
    with targets(db_url, crm="amocrm,webhook") as t:
        t.scored_call("call-1", digits="9")
        t.scored_call("call-2", digits="3")
        t.drain()
        decisions = {b["data"]["call_id"]: b["data"]["decision"] for _, b in t.receiver.received}
        assert {k: (d["at_or_above_threshold"], d["high_scores"], d["tag"], d["written_to_crm"])
                for k, d in decisions.items()} == {"call-1": (True, "default", None, {"amocrm": False}),
                                                   "call-2": (False, None, "Оценка 3", {"amocrm": True})}
        assert {c["uniq"]: c.get("call_result") for c in t.amo.calls} == {"call-1": None,
                                                                         "call-2": "Оценка качества: 3"}


def test_with_record_the_webhook_says_the_crm_writes_a_high_score(db_url):
    with targets(db_url, crm="amocrm,webhook", QA_HIGH_SCORES="record") as t:
        t.scored_call("call-1", digits="10")
        t.drain()
        [(_, body)] = t.receiver.received
        assert body["data"]["decision"]["written_to_crm"] == {"amocrm": True}
        assert t.amo.calls[0]["call_result"] == "Оценка качества: 10"


def test_the_webhook_knows_each_crm_beside_it_and_its_default_for_high_scores():
    from connector.registry import build_target

    config = make_config("sqlite://", CRM="amocrm,bitrix24,webhook", AMOCRM_BASE_URL="https://a.amocrm.ru",
                         AMOCRM_LONG_LIVED_TOKEN=TOKEN, BITRIX24_PORTAL_URL="https://b.bitrix24.ru",
                         BITRIX24_CLIENT_ID="id", BITRIX24_CLIENT_SECRET="secret",
                         WEBHOOK_TARGET_URL="https://hook.example/", WEBHOOK_TARGET_SECRET=SECRET)
    # amoCRM as MANGO's own setting; Bitrix24's VOTE feeds the portal's ratings, which expect every score.
    assert build_target("webhook", config, None).crm_defaults == {"amocrm": "ignore", "bitrix24": "record"}
