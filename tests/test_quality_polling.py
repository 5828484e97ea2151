"""Scores from MANGO's quality control (Contact Center API) asked call by call (MANGO_QUALITY_SOURCE=cc),
against a fake VPBX over real HTTP. The bulk statistics and the default `both` are in test_quality_scan.py."""
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select, update

from app import create_app
from connector.core.models import PbxPoll, Score
from connector.wiring import build_loops, build_poller
from connector.inbound.mango.models import mango_row
from tests.conftest import ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, MangoPoster, dtmf, make_config, summary
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

QUESTIONS = {
    "3092": {"qual_ctrl_form_id": "7", "qual_ctrl_form_name": "Входящие", "block_name": "Установление контакта",
             "block_order": 1, "name": "Приветствие", "order": 1, "required": True, "hint": ""},
    "3093": {"qual_ctrl_form_id": "7", "qual_ctrl_form_name": "Входящие", "block_name": "Завершение",
             "block_order": 2, "name": "Прощание", "order": 1, "required": False, "hint": ""},
}


class Harness:
    def __init__(self, app, pbx, poller):
        self.app, self.pbx, self.poller = app, pbx, poller
        self.db = app.extensions["connector"].db
        self.client = app.test_client()
        self.post = MangoPoster(self.client)

    def call(self, entry_id="call-1") -> dict:
        response = self.client.get(f"/api/v1/calls/{entry_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert response.status_code == 200, response.json
        return response.json

    def make_due(self) -> None:
        with self.db.transaction() as s:
            s.execute(update(PbxPoll).where(PbxPoll.status == "pending")
                      .values(not_before=datetime.now(timezone.utc) - timedelta(seconds=1)))

    def poll(self, rounds: int = 1) -> None:
        for _ in range(rounds):
            self.make_due()
            self.poller.run_once()

    def poll_row(self, entry_id="call-1") -> PbxPoll:
        from connector.core.models import Call

        with self.db.transaction() as s:
            return s.scalars(select(PbxPoll).join(Call).where(Call.entry_id == entry_id)).one()

    def two_minutes_pass(self) -> None:
        """What the 2-minute windows need, on both sides, without waiting for them."""
        self.pbx.advance(130)
        with self.db.transaction() as s:
            row = mango_row(s, lock=True)
            for name in ("strike_at", "blocked_until"):
                if getattr(row, name):
                    setattr(row, name, getattr(row, name) - timedelta(seconds=130))


@pytest.fixture(params=[200, 400])
def error_status(request):
    """MANGO's HTTP status for an error answer is undocumented; `result` is read under both."""
    return request.param


@pytest.fixture
def h(db_url, request, error_status):
    overrides = getattr(request, "param", {})
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, questions=dict(QUESTIONS), error_status=error_status)
    with serving(create_fake_mango(pbx)) as pbx_url:
        config = make_config(db_url, MANGO_QUALITY_API="true", MANGO_API_URL=pbx_url + "/vpbx/",
                             MANGO_RATE_LIMIT="10",
                             **{"SURVEY_WAIT_SECONDS": 180, "MANGO_QUALITY_SOURCE": "cc", **overrides})
        app = create_app(config)
        yield Harness(app, pbx, build_poller(config, app.extensions["connector"].db))
        app.extensions["connector"].db.dispose()


def recent_summary(entry_id="call-1", **kwargs):
    """A call that ended moments ago, so the survey wait has not passed."""
    return summary(entry_id, start=int(datetime.now(timezone.utc).timestamp()) - 70, **kwargs)


def test_the_customers_mark_becomes_the_customer_score_through_the_policy(h):
    h.pbx.calls["call-1"] = {"mark_client": "3", "mark_controller": None}
    h.post("events/summary", recent_summary())
    assert h.call()["survey"] == "pending"
    h.poll()
    call = h.call()
    assert (call["customer_score"], call["survey"], call["decision"]["tag"]) == (3, "answered", "Оценка 3")
    assert [(s["origin"], s["value"], s["status"]) for s in call["scores"]] == [("mango_quality", 3, "accepted")]
    h.poll(3)  # the same mark polled again changes nothing
    with h.db.transaction() as s:
        assert len(list(s.scalars(select(Score)))) == 1
    assert h.pbx.commands("cc/call/")[0][1] == {"entry_id": "call-1"}


def test_a_customer_who_pressed_nothing_has_no_score_and_no_answer(h):
    h.pbx.calls["call-1"] = {"mark_client": -1}
    h.post("events/summary", recent_summary())
    h.poll()
    call = h.call()
    assert (call["customer_score"], call["survey"], call["scores"]) == (None, "no_answer", [])


@pytest.mark.parametrize("h", [{"SURVEY_WAIT_SECONDS": 0}], indirect=True)
def test_no_mark_by_the_end_of_the_wait_is_not_offered(h):
    h.pbx.calls["call-1"] = {"mark_client": None}
    h.post("events/summary", recent_summary())
    h.poll()
    assert h.call()["survey"] == "not_offered"


def test_a_mark_still_unknown_within_the_wait_is_asked_again_soon(h):
    h.pbx.calls["call-1"] = {"mark_client": None}
    h.post("events/summary", recent_summary())
    h.poll()
    poll = h.poll_row()
    assert h.call()["survey"] == "pending" and poll.status == "pending"
    assert poll.not_before - datetime.now(timezone.utc) <= timedelta(seconds=21)


def test_supervisor_marks_with_question_names_and_their_rounded_mean(h):
    # The PDF's example wraps mark_controller in a one-element list; marks may come as strings.
    h.pbx.calls["call-1"] = {"mark_client": "9", "mark_controller": [
        {"3092": {"mark": "4", "comment": "не представился"}, "3093": {"mark": 5, "comment": ""}}]}
    h.post("events/summary", recent_summary())
    h.poll()
    call = h.call()
    assert call["supervisor_score"] == 5  # mean 4.5, rounded half up
    assert call["supervisor_marks"] == [
        {"question": "Приветствие", "block": "Установление контакта", "mark": 4, "comment": "не представился"},
        {"question": "Прощание", "block": "Завершение", "mark": 5, "comment": None}]
    assert call["customer_score"] == 9 and call["decision"]["tag"] is None
    # Questions are cached: a second call with the same form asks nothing more about them.
    h.pbx.calls["call-2"] = {"mark_client": "8", "mark_controller": {"3092": {"mark": 2}}}
    h.post("events/summary", recent_summary("call-2"))
    h.poll()
    assert len(h.pbx.commands("quality/control/question/")) == 2
    assert h.call("call-2")["supervisor_score"] == 2


def test_late_supervisor_evaluations_are_picked_up_on_the_slow_schedule(h):
    h.pbx.calls["call-1"] = {"mark_client": "7"}
    h.post("events/summary", recent_summary())
    h.poll()
    poll = h.poll_row()
    ended = datetime.fromisoformat(h.call()["ended_at"].replace("Z", "+00:00"))
    assert poll.status == "pending" and abs(poll.not_before - (ended + timedelta(hours=1))) < timedelta(seconds=1)
    h.pbx.calls["call-1"] = {"mark_client": "7", "mark_controller": {"3092": {"mark": 3, "comment": "грубо"}}}
    h.poll()
    assert h.call()["supervisor_score"] == 3 and h.call()["customer_score"] == 7


def test_an_unknown_question_is_shown_by_id_and_not_asked_again(h):
    h.pbx.calls["call-1"] = {"mark_client": "7", "mark_controller": {"9999": {"mark": 6}}}
    h.post("events/summary", recent_summary())
    h.poll()
    assert h.call()["supervisor_marks"] == [{"question": "9999", "block": None, "mark": 6, "comment": None}]
    h.two_minutes_pass()
    h.pbx.calls["call-1"]["mark_controller"] = {"9999": {"mark": 5}}
    h.poll()
    assert len(h.pbx.commands("quality/control/question/")) == 1 and h.pbx.blocks == 0


def test_the_dtmf_survey_and_quality_control_are_decided_by_the_lock(h):
    h.pbx.calls["call-1"] = {"mark_client": "7"}
    h.post("events/dtmf", dtmf(digits="3"))
    h.post("events/summary", recent_summary())
    h.poll()
    call = h.call()
    assert call["customer_score"] == 3  # the first score stays in force
    assert [(s["origin"], s["status"]) for s in call["scores"]] == [("mango_dtmf", "accepted"),
                                                                   ("mango_quality", "kept")]


def test_internal_calls_are_not_polled(h):
    h.post("events/summary", recent_summary(direction=0))
    h.poll()
    assert h.pbx.requests == [] and h.call()["survey"] is None


def test_never_trips_the_block_when_calls_are_missing_from_the_history(h):
    """Calls the Contact Center does not know answer 3300, a wrong request: at most one per
    2 minutes may go, or MANGO blocks the whole account (recordings included)."""
    for n in range(4):
        h.post("events/summary", recent_summary(f"lost-{n}"))
    h.pbx.calls["known"] = {"mark_client": "5"}
    h.post("events/summary", recent_summary("known"))
    h.poll(5)
    wrong = [r for r in h.pbx.requests if r[3] and 3000 <= r[3] < 4000]
    assert len(wrong) == 1 and h.pbx.blocks == 0
    h.two_minutes_pass()
    h.poll(5)
    wrong = [r for r in h.pbx.requests if r[3] and 3000 <= r[3] < 4000]
    assert len(wrong) == 2 and h.pbx.blocks == 0
    for _ in range(12):  # long enough for every call to be settled or given up
        h.two_minutes_pass()
        h.poll(3)
    assert h.pbx.blocks == 0 and all(s != 401 for _, _, s, _ in h.pbx.requests)
    assert h.call("known")["customer_score"] == 5
    lost = h.poll_row("lost-0")
    assert lost.status == "done" and "3300" in lost.last_error and h.call("lost-0")["survey"] is None


def test_a_block_is_honoured_by_every_request_until_it_ends(h):
    h.pbx.calls["call-1"] = {"mark_client": "4"}
    h.post("events/summary", recent_summary())
    h.pbx.blocked_until = h.pbx.now() + 120
    h.poll()
    with h.db.transaction() as s:
        blocked_until = mango_row(s).blocked_until
    assert blocked_until > datetime.now(timezone.utc) + timedelta(seconds=100)
    health = h.client.get("/healthz").json
    assert health["status"] == "degraded" and health["components"]["pbx"] == "blocked"
    sent = len(h.pbx.requests)
    h.poll(3)
    assert len(h.pbx.requests) == sent  # nothing is sent while blocked
    h.two_minutes_pass()
    h.poll()
    assert h.call()["customer_score"] == 4
    assert h.client.get("/healthz").json["components"]["pbx"] == "ok"


def test_polling_runs_without_any_crm(db_url):
    # Rating by link (idle until an admin turns it on), then the alerts: the e-mail and Telegram workers, digests,
    # Telegram links and report e-mails (each idle until a channel is set up, in the environment or the console).
    link = ["RatingPlanner", "DeliveryLoop", "DeliveryLoop", "DeliveryLoop", "DigestPlanner", "TelegramLinker",
            "ReportMailer"]
    loops = {"cc": ["InboxApplier", "QualityPoller", "DirectoryRefresher", *link],
             "both": ["InboxApplier", "QualityPoller", "QualityScanner", "DirectoryRefresher", *link],
             "stats": ["InboxApplier", "QualityScanner", "DirectoryRefresher", *link]}
    for source, expected in loops.items():
        config = make_config(db_url, MANGO_QUALITY_API="true", MANGO_QUALITY_SOURCE=source)
        app = create_app(config)
        try:
            assert [type(loop).__name__ for loop in build_loops(config, app.extensions["connector"].db)] == expected
        finally:
            app.extensions["connector"].db.dispose()
