"""Rating requests by link, from the call to the SMS report: the planner makes one request per qualifying
call, queues it in the outbox when due, the SMS worker sends it through a fake MANGO over real HTTP
(`commands/sms`, as the reference describes it), and the PBX's `result/sms` and `events/sms` move it on."""
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from app import create_app
from connector.core.models import DeliveryJob, DoNotContact, RatingRequest
from connector.inbound.link import settings as link_settings
from connector.inbound.link.rules import token_for, token_hash
from connector.wiring import build_rating_planner, build_sms_worker
from tests.conftest import ADMIN_TOKEN, MANGO_KEY, MANGO_SALT, MangoPoster, dtmf, make_config, summary
from tests.fakes.mango import FakeMango, create_fake_mango
from tests.fakes.server import serving

BASE = "https://qa.example.ru"
MOBILE, OTHER_MOBILE, LANDLINE = "79161234567", "79167654321", "74951234567"
USERS = [{"general": {"name": "Анна Смирнова"}, "telephony": {"extension": "101"}, "groups": []},
         {"general": {"name": "Борис"}, "telephony": {"extension": "200"}, "groups": []}]


class Harness:
    def __init__(self, app, pbx, config):
        self.app, self.pbx, self.config = app, pbx, config
        self.db = app.extensions["connector"].db
        self.client = app.test_client()
        self.post = MangoPoster(self.client)
        self.now = datetime.now(timezone.utc)
        self.planner = build_rating_planner(config, self.db)
        self.planner.clock = lambda: self.now
        self.worker = build_sms_worker(config, self.db)

    def settings(self, **changes) -> None:
        with self.db.transaction() as s:
            link_settings.save(s, {"enabled": True, "send_from_hour": 0, "send_until_hour": 24, **changes}, BASE,
                               "admin", now=self.now - timedelta(days=1))  # turned on before the calls ended

    def ended_call(self, entry_id="call-1", *, hours_ago=3.0, **fields) -> None:
        start = int((self.now - timedelta(hours=hours_ago)).timestamp())
        assert self.post("events/summary", summary(entry_id, start=start, **fields)).status_code == 200

    def run(self) -> None:
        self.planner.run_once()
        while self.worker.run_once():
            pass

    def reports(self) -> None:
        for kind, body in self.pbx.sms_reports():
            assert self.post(kind, body).status_code == 200

    def requests(self) -> list[RatingRequest]:
        with self.db.reading() as s:
            return list(s.scalars(select(RatingRequest).order_by(RatingRequest.id)))

    def request(self) -> RatingRequest:
        [request] = self.requests()
        return request

    def sms_jobs(self) -> int:
        with self.db.reading() as s:
            return s.scalar(select(func.count()).select_from(DeliveryJob).where(DeliveryJob.crm == "sms"))

    def call(self, entry_id="call-1") -> dict:
        return self.client.get(f"/api/v1/calls/{entry_id}", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json


@pytest.fixture
def h(db_url):
    pbx = FakeMango(MANGO_KEY, MANGO_SALT, users=list(USERS))
    with serving(create_fake_mango(pbx)) as pbx_url:
        config = make_config(db_url, MANGO_API_URL=pbx_url + "/vpbx/", PUBLIC_BASE_URL=BASE, MANGO_RATE_LIMIT="10")
        app = create_app(config)
        yield Harness(app, pbx, config)
        app.extensions["connector"].db.dispose()


def test_a_missed_survey_gets_one_sms_with_a_short_link_and_the_reports_move_it_to_delivered(h):
    h.settings(template="Оцените разговор {date} с {operator}: {link}")
    with h.db.transaction() as s:
        from connector.inbound.directory import store
        from connector.inbound.pbx import OperatorEntry
        store(s, [OperatorEntry("101", "Анна Смирнова")], h.now)
    h.ended_call(customer=MOBILE)
    h.run()
    [sms] = h.pbx.sms
    request = h.request()
    link = f"{BASE}/r/{token_for(h.config.SECRET_KEY, request.id)}"
    assert sms["text"].startswith("Оцените разговор ") and sms["text"].endswith(f" с Анна Смирнова: {link}")
    assert (sms["from_extension"], sms["to_number"], sms["command_id"]) == ("101", MOBILE, request.command_id)
    assert "sms_sender" not in sms  # the account's default name
    assert len(link) == len(BASE) + 3 + 22 and request.token_hash == token_hash(link.rsplit("/", 1)[1])
    assert (request.status, request.from_extension) == ("accepted", "101")
    assert request.expires_at == request.queued_at + timedelta(days=7)

    h.reports()
    request = h.request()
    assert (request.status, request.reason) == ("delivered", None)
    assert request.sent_at is not None and request.delivered_at is not None
    h.reports()  # the PBX posts the same reports again: duplicates, nothing changes
    h.run()
    h.now += timedelta(days=1)
    h.run()
    assert len(h.pbx.sms) == 1 and h.sms_jobs() == 1  # exactly once
    crm = h.call()["crm"]
    assert (crm["crm"], crm["status"], crm["targets"]) == ("none", "skipped", {})  # an SMS is not a CRM delivery
    shown = h.call()["rating_request"]
    assert (shown["status"], shown["reason"], shown["answer"]) == ("delivered", None, None)
    assert shown["sent_at"] and shown["delivered_at"] and shown["expires_at"]
    assert "token" not in str(shown) and request.command_id not in str(shown)


def test_a_request_waits_for_its_delay_and_a_night_waits_for_the_morning(h):
    moscow = ZoneInfo("Europe/Moscow")
    h.settings(delay_minutes=120, send_from_hour=9, send_until_hour=21)
    h.now = datetime(2026, 11, 27, 22, 0, tzinfo=moscow).astimezone(timezone.utc)  # 22:00 in Moscow
    h.ended_call(hours_ago=0.5)
    h.run()
    request = h.request()
    assert request.status == "scheduled" and h.pbx.sms == []
    assert request.due_at.astimezone(moscow) == datetime(2026, 11, 28, 9, 0, tzinfo=moscow)
    h.now = datetime(2026, 11, 28, 9, 1, tzinfo=moscow).astimezone(timezone.utc)
    h.run()
    assert h.request().status == "accepted" and len(h.pbx.sms) == 1


@pytest.mark.parametrize("call", [
    {"customer": LANDLINE}, {"direction": 0}, {"talk_seconds": 0, "talk": 0}, {"line": "74959999999"}])
def test_calls_that_do_not_qualify_get_no_request(h, call):
    h.settings(lines={"74959999999": {"enabled": False}})
    h.ended_call(**call)
    h.run()
    assert h.requests() == [] and h.pbx.sms == []


def test_a_customer_who_rated_in_the_survey_is_not_asked_again_unless_a_second_opinion_is_on(h):
    h.settings()
    h.ended_call("call-1")
    h.post("events/dtmf", dtmf("call-1", "8"))
    h.run()
    assert h.requests() == []
    h.settings(also_scored=True)
    h.run()
    assert h.request().status == "accepted"


def test_a_score_that_comes_before_the_request_is_due_skips_it(h):
    h.settings(delay_minutes=120)
    h.ended_call(hours_ago=1)
    h.run()
    assert h.request().status == "scheduled"
    h.post("events/dtmf", dtmf("call-1", "8"))
    h.now += timedelta(hours=2)
    h.run()
    assert (h.request().status, h.request().reason) == ("skipped", "scored") and h.pbx.sms == []


def test_the_do_not_contact_list_the_daily_cap_and_a_missing_extension_skip_with_the_reason(h):
    h.settings(daily_cap=1)
    with h.db.transaction() as s:
        s.add(DoNotContact(number=OTHER_MOBILE, source="admin", actor="ann"))
    h.ended_call("call-1", customer=MOBILE)
    h.ended_call("call-2", customer=MOBILE, hours_ago=2.5)
    h.ended_call("call-3", customer=OTHER_MOBILE)
    h.ended_call("call-4", customer="79160000001", extension=None)
    h.run()
    assert [(r.status, r.reason) for r in h.requests()] == [  # made in the order the calls ended
        ("accepted", None), ("skipped", "do_not_contact"), ("skipped", "no_extension"), ("skipped", "daily_cap")]
    assert [m["to_number"] for m in h.pbx.sms] == [MOBILE]


def test_an_extension_from_the_settings_sends_for_a_call_without_an_operator(h):
    h.settings(from_extension="200", sms_sender="Shop")
    h.ended_call(extension=None)
    h.run()
    assert (h.pbx.sms[0]["from_extension"], h.pbx.sms[0]["sms_sender"]) == ("200", "Shop")


def test_the_pbx_reports_a_failure_and_the_request_shows_why_and_is_not_sent_again(h):
    h.settings()
    h.pbx.sms_results[MOBILE] = 2001  # billing
    h.pbx.sms_delivery[OTHER_MOBILE] = 4301  # the carrier: expired
    h.ended_call("call-1", customer=MOBILE)
    h.ended_call("call-2", customer=OTHER_MOBILE)
    h.run()
    h.reports()
    assert [(r.status, r.reason) for r in h.requests()] == [("failed", "billing"), ("failed", "not_delivered")]
    assert h.call("call-1")["rating_request"]["detail"] == "result 2001"  # what the API shows, as the console
    h.now += timedelta(days=2)
    h.run()
    assert len(h.pbx.sms) == 2


def test_a_refused_command_fails_with_its_reason_and_the_next_waits_out_the_two_minutes(h):
    h.settings(from_extension="999")  # not an employee of the account: MANGO answers 3100
    h.ended_call("call-1", extension=None, customer=MOBILE)
    h.ended_call("call-2", extension=None, customer=OTHER_MOBILE)
    h.run()
    first, second = h.requests()
    assert (first.status, first.reason) == ("failed", "refused") and "3100" in first.detail
    assert second.status == "queued"  # held back: a second wrong request within 2 minutes would block the account
    assert len(h.pbx.commands("commands/sms")) == 1 and h.pbx.blocks == 0
    with h.db.reading() as s:
        job = s.scalars(select(DeliveryJob).where(DeliveryJob.crm == "sms").order_by(DeliveryJob.id)).all()
    assert (job[0].status, job[1].status, job[1].attempts) == ("done", "pending", 1)
    assert "2 minutes" in job[1].last_error


def test_reports_of_commands_that_are_not_ours_are_kept_and_change_nothing(h):
    assert h.post("result/sms", {"command_id": "someone-else-1", "result": 1000}).json == {"success": True}
    assert h.post("events/sms", {"command_id": "someone-else-1", "reason": 4300}).json == {"success": True}
    assert h.requests() == []


@pytest.mark.parametrize("body, field", [({"command_id": "c" * 129, "result": 1000}, "command_id"),
                                         ({"command_id": "c", "result": "1000"}, "result"),
                                         ({"command_id": "c", "reason": -1}, "reason")])
def test_a_malformed_sms_report_is_a_400_and_nothing_is_stored(h, body, field):
    response = h.post("result/sms", body)
    assert response.status_code == 400 and field in response.json["error"]


def test_the_status_and_metrics_show_the_sms_outbox_once_the_channel_is_on(h):
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    assert "sms" not in h.client.get("/healthz").json["components"]
    h.settings()
    h.pbx.error_status, h.pbx.rate_limit = 200, 0  # every command now answers 429: the SMS waits in the outbox
    h.ended_call()
    h.run()
    assert h.client.get("/healthz").json["components"]["sms"] == "ok"
    status = h.client.get("/api/v1/status", headers=auth).json
    assert status["details"]["sms"]["outbox"]["rating_request"]["pending"] == 1
    assert 'connector_outbox_pending{crm="sms",kind="rating_request"} 1.0' in h.client.get("/metrics").get_data(True)


def test_an_answer_is_read_on_the_scale_its_request_was_sent_with_whatever_the_setting_later(h):
    h.settings(scale="good_bad")
    h.ended_call()
    h.run()
    request = h.request()
    assert request.scale == "good_bad"
    path = "/r/" + token_for(h.config.SECRET_KEY, request.id)
    assert h.client.post(path, data={"answer": "0"}, headers={"Accept-Language": "ru"}).status_code == 303
    h.settings(scale="survey")  # 1..10 from now on: a new request would ask on it
    page = h.client.get(path, headers={"Accept-Language": "ru"}).get_data(as_text=True)
    assert "Плохо" in page and "0 из 10" not in page
    assert h.client.post(path, data={"answer": "1"}, headers={"Accept-Language": "ru"}).status_code == 409


def test_turning_the_channel_on_never_texts_the_customers_of_calls_that_ended_before(h):
    h.ended_call("call-before", hours_ago=3)
    with h.db.transaction() as s:
        link_settings.save(s, {"enabled": True, "send_from_hour": 0, "send_until_hour": 24}, BASE, "admin",
                           now=h.now - timedelta(hours=2))
    h.ended_call("call-after", hours_ago=1, customer=OTHER_MOBILE)
    h.now += timedelta(hours=2)
    h.run()
    assert [m["to_number"] for m in h.pbx.sms] == [OTHER_MOBILE]
    with h.db.transaction() as s:  # off and on again: the new moment counts
        link_settings.save(s, {"enabled": False}, BASE, "admin")
        link_settings.save(s, {"enabled": True}, BASE, "admin", now=h.now)
        assert link_settings.on_since(s) == h.now
