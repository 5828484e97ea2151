"""Scheduled report e-mails (issue #20), through a real SMTP server started by the test: the period a send time
reports on, the report as a supervisor reads it (the per-operator table, the low scores with links, a plain-text
part), exactly once per period with two workers, and a refusing server counted and shown."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connector.console.report_mail import ReportMailer, period_of, send_day, subscribe
from connector.core.models import Operator, ReportPeriod, ReportSend, ReportSubscription, SendStatus, User
from connector.core.policy import Policy
from connector.core.users import add_user
from connector.delivery.mail import Mailer, MailSecurity, MailSettings
from tests.conftest import dtmf, summary
from tests.fakes.smtp import smtp_settings

MSK = ZoneInfo("Europe/Moscow")
BASE = "https://qa.example.ru"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=MSK)


@pytest.mark.parametrize("period, weekday, now, sent, start, end", [
    ("daily", 0, "2026-11-27 08:30", "2026-11-27 08:00", "2026-11-26 00:00", "2026-11-27 00:00"),
    ("daily", 0, "2026-11-27 07:59", "2026-11-26 08:00", "2026-11-25 00:00", "2026-11-26 00:00"),
    ("weekly", 0, "2026-11-27 12:00", "2026-11-23 08:00", "2026-11-16 00:00", "2026-11-23 00:00"),  # a Friday
    ("weekly", 4, "2026-11-27 08:00", "2026-11-27 08:00", "2026-11-20 00:00", "2026-11-27 00:00"),
])
def test_a_send_time_reports_on_the_whole_local_days_before_it(period, weekday, now, sent, start, end):
    sub = ReportSubscription(period=period, hour=8, weekday=weekday)
    moment = send_day(sub, at(now), MSK)
    assert moment == at(sent)
    assert period_of(sub, moment, MSK) == (at(start).astimezone(timezone.utc), at(end).astimezone(timezone.utc))


@pytest.fixture
def config_overrides(smtp):
    return smtp_settings(smtp[1])


@pytest.fixture
def sam(db):
    with db.transaction() as s:
        user = add_user(s, "sam", "supervisor", "correct horse battery")
        user.email = "sam@example.ru"
        s.add(Operator(extension="101", name="Ольга Смирнова", groups=[]))
        s.flush()
        return user.id


def mailer(db, port: int, clock) -> ReportMailer:
    send = Mailer(MailSettings("127.0.0.1", port, MailSecurity.NONE, sender="qa@example.ru")).send
    return ReportMailer(db, send, initial_policy=Policy(), default_zone="Europe/Moscow", public_base_url=BASE,
                        clock=clock)


def test_a_daily_report_goes_once_with_the_operators_and_the_low_scores(db, smtp, sam, mango_post):
    inbox, port = smtp
    start = int(datetime.now(timezone.utc).timestamp()) - 600  # calls of today: the period of tomorrow's report
    for entry, digits in (("call-low", "3"), ("call-good", "10")):
        mango_post("events/summary", summary(entry, start=start))
        mango_post("events/dtmf", dtmf(entry, digits, timestamp=start + 100))
    today = datetime.fromtimestamp(start, MSK).date()
    with db.transaction() as s:  # subscribed yesterday; the report at 08:00 tomorrow covers today
        subscribe(s, sam, ReportPeriod.DAILY, hour=8, now=datetime.now(timezone.utc) - timedelta(days=1))
    tomorrow_8 = datetime.combine(today + timedelta(days=1), datetime.min.time(), MSK) + timedelta(hours=8, minutes=5)
    first, second = mailer(db, port, lambda: tomorrow_8), mailer(db, port, lambda: tomorrow_8)
    assert first.run_once() == 1
    assert second.run_once() == 0 and first.run_once() == 0  # another worker, or the same one again: nothing more
    [mail] = inbox.messages
    assert mail["To"] == "sam@example.ru" and mail["Subject"] == f"Отчёт о качестве звонков за {today:%d.%m.%Y}"
    text = mail.get_body("plain").get_content()
    assert "- Ольга Смирнова (101): звонков 2, оценок 2," in text  # each figure named
    assert f"{BASE}/calls/call-low" in text and "call-good" not in text
    # the low score's follow-up, still open
    assert "- Ольга Смирнова (101): низких 1, закрыто 0, просрочено 0, медиана —, вернули 0 из 0" in text
    assert "Обратная связь с клиентами" in mail.get_body("html").get_content()
    assert "79001234567" not in mail.as_string() and "…4567" in text
    html = mail.get_body("html").get_content()
    assert "<th" in html and f'href="{BASE}/calls/call-low"' in html
    with db.reading() as s:
        [send] = s.scalars(select(ReportSend)).all()
        assert send.status == SendStatus.SENT and send.attempts == 1


def test_a_period_due_before_subscribing_is_not_sent(db, smtp, sam):
    now = datetime.now(timezone.utc)
    with db.transaction() as s:
        subscribe(s, sam, ReportPeriod.DAILY, hour=0, now=now)  # today's 00:00 passed before this
    assert mailer(db, smtp[1], lambda: now).run_once() == 0 and smtp[0].messages == []


def test_a_refusing_server_is_counted_with_its_words_and_a_5xx_is_dead(db, smtp, sam):
    inbox, port = smtp
    now = datetime.now(timezone.utc)
    with db.transaction() as s:
        subscribe(s, sam, ReportPeriod.DAILY, hour=0, now=now - timedelta(days=2))
        s.get(User, sam).email = "full@example.ru"  # the test server answers 452 (try later)
    worker = mailer(db, port, lambda: now)
    assert worker.run_once() == 1
    with db.reading() as s:
        [send] = s.scalars(select(ReportSend)).all()
        assert send.status == SendStatus.PENDING and "452 4.2.2 Mailbox full" in send.last_error
        assert send.attempts == 1 and send.not_before > now
    with db.transaction() as s:
        s.get(User, sam).email = "nobody@example.ru"  # 550: refused for good
        s.get(ReportSend, send.id).not_before = now
    assert worker.run_once() == 1
    with db.reading() as s:
        send = s.get(ReportSend, send.id)
        assert send.status == SendStatus.DEAD and "550 5.1.1 No such user" in send.last_error and send.attempts == 2
    assert inbox.messages == []


def refused_report(db, user_id: int, port: int) -> None:
    """A report due now to an address the test server refuses for good (550): given up at the first try."""
    now = datetime.now(timezone.utc)
    with db.transaction() as s:
        subscribe(s, user_id, ReportPeriod.DAILY, hour=0, now=now - timedelta(days=2))
        s.get(User, user_id).email = "nobody@example.ru"
    mailer(db, port, lambda: now).run_once()


def test_the_status_and_metrics_show_a_refused_report(app, client, auth, db, smtp, sam, config_overrides):
    inbox, port = smtp
    refused_report(db, sam, port)
    email = client.get("/api/v1/status", headers=auth).json["details"]["email"]
    assert email["reports"]["dead"] == 1 and "550 5.1.1 No such user" in email["reports"]["last_error"]
    assert "connector_report_mails_dead 1.0" in client.get("/metrics").get_data(as_text=True)


def test_a_given_up_report_is_replayed_by_the_cli_and_then_sent(db, db_url, smtp, sam, monkeypatch):
    from click.testing import CliRunner

    from commands.cli import cli

    inbox, port = smtp
    refused_report(db, sam, port)
    with db.transaction() as s:
        s.get(User, sam).email = "sam@example.ru"  # the address fixed
    for key, value in {"DATABASE_URL": db_url, "SECRET_KEY": "test-secret-key", "CRM": "none"}.items():
        monkeypatch.setenv(key, value)
    result = CliRunner().invoke(cli, ["deliveries", "replay", "--target", "email"], catch_exceptions=False)
    assert result.exit_code == 0 and "1 report e-mail(s) too" in result.output
    assert mailer(db, port, lambda: datetime.now(timezone.utc)).run_once() == 1
    assert [m["To"] for m in inbox.messages] == ["sam@example.ru"]
