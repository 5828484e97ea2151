"""Alerts by e-mail, end to end through a real SMTP server started by the test (issue #20): a low score the PBX
posts reaches the supervisor of its line once, in words a person reads and with nothing they must not see;
quiet hours and the hourly cap turn what they hold into one digest; a refusing server leaves a dead letter with
its own words that a replay sends once the address is fixed."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from connector.core.models import Alert, AlertRoute, AlertStatus, DeliveryJob, JobStatus, Operator, User
from connector.core.users import add_user
from connector.delivery import outbox
from connector.delivery.alerts import settings as alert_settings
from connector.delivery.alerts.digests import gather
from connector.wiring import build_alert_worker
from tests.conftest import console_login, dtmf, summary
from tests.delivery_helpers import until_idle
from tests.fakes.smtp import smtp_settings

LINE_A, LINE_B = "74950000001", "74950000002"
BASE = "https://qa.example.ru"


@pytest.fixture
def config_overrides(smtp):
    return {**smtp_settings(smtp[1]), "PUBLIC_BASE_URL": BASE}


@pytest.fixture
def inbox(smtp):
    return smtp[0]


@pytest.fixture
def people(db):
    """sam watches line A, sue line B; olga is an operator with a route (never alerted); ann has no route."""
    with db.transaction() as s:
        users = {name: add_user(s, name, role, "correct horse battery", ["101"] if role == "operator" else [])
                 for name, role in (("sam", "supervisor"), ("sue", "supervisor"), ("olga", "operator"),
                                    ("ann", "admin"))}
        for user in users.values():
            user.email = f"{user.username}@example.ru"
        s.flush()
        s.add_all([AlertRoute(user_id=users["sam"].id, line_number=LINE_A),
                   AlertRoute(user_id=users["sue"].id, line_number=LINE_B),
                   AlertRoute(user_id=users["olga"].id)])
        s.add(Operator(extension="101", name="Ольга Смирнова", groups=["7"]))
        return {name: u.id for name, u in users.items()}


@pytest.fixture
def send(app, db):
    """Runs the e-mail worker until it has nothing due; returns how many jobs it took."""
    worker = build_alert_worker(app.extensions["connector"].config, db, "email")
    return lambda: until_idle(worker)


def low_call(mango_post, entry_id: str, line: str, digits: str = "3", seq: int = 5):
    assert mango_post("events/summary", summary(entry_id, line=line)).status_code == 200
    assert mango_post("events/dtmf", dtmf(entry_id, digits, seq=seq)).status_code == 200


def plain(message) -> str:
    return message.get_body("plain").get_content()


def test_a_low_score_reaches_the_supervisor_of_its_line_once_and_nobody_else(mango_post, people, inbox, send,
                                                                              client, auth):
    low_call(mango_post, "call-1", LINE_A)
    assert send() == 1
    [mail] = inbox.messages
    assert mail["To"] == "sam@example.ru"
    assert mail["Subject"].startswith("Низкая оценка клиента: клиент 3 из 10 — Ольга Смирнова (101)")
    text = plain(mail)
    assert "Линия: 74950000001" in text and "Клиент: …4567" in text
    assert re.search(r"Звонок: \d\d\.\d\d\.\d{4} \d\d:\d\d \(Москва\)", text)  # local time, its zone named
    assert f"Открыть звонок: {BASE}/calls/call-1" in text
    assert "79001234567" not in mail.as_string()  # the number is masked everywhere in the message
    assert "/recording" not in mail.as_string() and "token" not in mail.as_string()  # no bearer link
    html = mail.get_body("html").get_content()
    assert f'href="{BASE}/calls/call-1"' in html and 'lang="ru"' in html

    # A lower score for the same call is the same trigger: no second alert; nothing more to send.
    assert mango_post("events/dtmf", dtmf("call-1", "2", seq=6, timestamp=1_763_800_200)).status_code == 200
    assert send() == 0 and len(inbox.messages) == 1
    # The alert's channel record is not the call's CRM: the API's call shows no e-mail among its CRMs.
    crm = client.get("/api/v1/calls/call-1", headers=auth).json["crm"]
    assert crm["crm"] == "none" and "email" not in crm["targets"]


def test_a_high_score_and_another_lines_call_alert_nobody_on_this_line(mango_post, people, inbox, send):
    low_call(mango_post, "call-good", LINE_A, digits="10")
    low_call(mango_post, "call-b", LINE_B)
    assert send() == 1
    assert [m["To"] for m in inbox.messages] == ["sue@example.ru"]


def moscow_hour(now: datetime) -> int:
    return now.astimezone(ZoneInfo("Europe/Moscow")).hour


def test_quiet_hours_hold_alerts_for_one_digest_when_they_end(mango_post, people, inbox, send, db, client):
    now = datetime.now(timezone.utc)
    with db.transaction() as s:  # quiet from this hour to the next: both calls fall inside
        alert_settings.save(s, {"quiet_from_hour": moscow_hour(now), "quiet_until_hour": (moscow_hour(now) + 1) % 24},
                            "test")
    low_call(mango_post, "call-1", LINE_A)
    low_call(mango_post, "call-2", LINE_A)
    assert send() == 0 and inbox.messages == []
    with db.reading() as s:
        held = s.scalars(select(Alert).order_by(Alert.id)).all()
        assert [a.status for a in held] == [AlertStatus.HELD] * 2
        ends = held[0].held_until
    assert ends > now and ends.astimezone(ZoneInfo("Europe/Moscow")).minute == 0
    console_login(client, "sam", "correct horse battery")  # the person sees what waits, and until when
    page = client.get("/alerts").get_data(as_text=True)
    assert "Ждут сводки звонков: 2 — она придёт" in page and ends.astimezone(ZoneInfo("Europe/Moscow")).strftime(
        "%H:%M") in page
    with db.transaction() as s:
        assert gather(s, ends - timedelta(seconds=1)) == 0  # not before the quiet hours end
        assert gather(s, ends) == 2
    with db.transaction() as s:
        assert gather(s, ends + timedelta(hours=1)) == 0  # gathered once
    assert send() == 1
    [digest] = inbox.messages
    assert digest["Subject"] == "Сводка оповещений: 2 звонка" and digest["To"] == "sam@example.ru"
    assert f"{BASE}/calls/call-1" in plain(digest) and f"{BASE}/calls/call-2" in plain(digest)


def test_over_the_hourly_cap_alerts_wait_for_the_digest(mango_post, people, inbox, send, db):
    with db.transaction() as s:
        alert_settings.save(s, {"cap_per_hour": 1}, "test")
    for n in range(3):
        low_call(mango_post, f"call-{n}", LINE_A)
    assert send() == 1
    assert inbox.messages[0]["Subject"].startswith("Низкая оценка клиента")
    with db.reading() as s:
        held = s.scalars(select(Alert).where(Alert.status == AlertStatus.HELD)).all()
        first = s.scalar(select(Alert.created_at).where(Alert.status == AlertStatus.QUEUED))
    assert len(held) == 2 and {a.held_until for a in held} == {first + timedelta(hours=1)}
    with db.transaction() as s:
        assert gather(s, first + timedelta(hours=1)) == 2
    assert send() == 1
    assert inbox.messages[1]["Subject"] == "Сводка оповещений: 2 звонка"


def test_supervisor_low_and_divergence_alert_with_their_own_settings(post_score, people, inbox, send, db):
    with db.transaction() as s:
        alert_settings.save(s, {"supervisor_below": 5, "divergence": 5}, "test")
    assert post_score({"call_id": "call-7", "score": 10, "source": "customer", "phone": "79001234567"}
                      ).status_code in (200, 201, 202)
    with db.transaction() as s:  # the call on line A with Olga (the score API names neither)
        from connector.core.models import Call
        call = s.scalars(select(Call).where(Call.entry_id == "call-7")).one()
        call.line_number, call.operator_extension = LINE_A, "101"
    assert post_score({"call_id": "call-7", "score": 2, "source": "supervisor",
                       "comment": "<b>грубо</b> \u202eперевёрнуто"}).status_code in (200, 201, 202)
    assert send() == 1  # one review, both triggers: one message
    [mail] = inbox.messages
    assert mail["Subject"].startswith("Низкая оценка супервизора; оценки клиента и супервизора расходятся: "
                                      "клиент 10 из 10, супервизор 2 из 10")
    body = inbox.messages[0].get_body("html").get_content()
    assert "&lt;b&gt;грубо&lt;/b&gt;" in body and "<b>грубо" not in body  # a hostile comment is only text
    assert "\u202e" not in inbox.messages[0].as_string()


def test_a_refusing_server_leaves_a_dead_letter_with_its_words_and_a_replay_sends_it(mango_post, people, inbox,
                                                                                     send, db):
    with db.transaction() as s:
        s.get(User, people["sam"]).email = "nobody@example.ru"  # the test server answers 550 for it
    low_call(mango_post, "call-1", LINE_A)
    assert send() == 1 and inbox.messages == []
    with db.reading() as s:
        [job] = s.scalars(select(DeliveryJob).where(DeliveryJob.crm == "email")).all()
        assert job.status == JobStatus.DEAD and "550 5.1.1 No such user" in job.last_error
        job_id = job.id
    with db.transaction() as s:
        s.get(User, people["sam"]).email = "sam@example.ru"
        outbox.replay(s, job_id)
    assert send() == 1
    assert [m["To"] for m in inbox.messages] == ["sam@example.ru"]
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert)) == 1


def test_the_triggers_of_one_review_are_one_message_and_count_once_against_the_cap(post_score, mango_post, people,
                                                                                    inbox, send, db):
    with db.transaction() as s:
        alert_settings.save(s, {"supervisor_below": 5, "divergence": 5, "cap_per_hour": 2}, "test")
    low_call(mango_post, "call-7", LINE_A, digits="10")
    assert post_score({"call_id": "call-7", "score": 2, "source": "supervisor"}).status_code in (200, 201, 202)
    low_call(mango_post, "call-8", LINE_A)  # a customer's low score a minute later: within the cap of 2
    assert send() == 2
    assert [m["Subject"].split(":")[0] for m in inbox.messages] == [
        "Низкая оценка супервизора; оценки клиента и супервизора расходятся", "Низкая оценка клиента"]
    with db.reading() as s:
        assert s.scalar(select(func.count()).select_from(Alert).where(Alert.status == AlertStatus.HELD)) == 0
