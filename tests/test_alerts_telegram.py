"""Alerts by Telegram, end to end against the fake Bot API over HTTP (tests/fakes/telegram.py, which answers as
the Bot API documents and its server code writes): a person links their chat by opening the bot's deep link
(nothing typed), gets one alert per low score, Telegram's 429 `retry_after` is honoured, a chat that blocked
the bot turns the channel off with the reason the console shows, and a wrong token is a visible error."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from connector.core.models import AlertChannel, AlertRoute, DeliveryJob, JobStatus, MessengerAccount
from connector.core.users import add_user
from connector.delivery.alerts.telegram_link import CODE_TTL, REPLIES, LinkAnswer, start_link
from connector.wiring import build_alert_worker, build_telegram_linker
from tests.conftest import console_login, dtmf, summary
from tests.delivery_helpers import until_idle
from tests.fakes.telegram import telegram_settings

LINE = "74950000001"
CHAT = 700_100_200
BASE = "https://qa.example.ru"


@pytest.fixture
def config_overrides(telegram):
    return {**telegram_settings(telegram), "PUBLIC_BASE_URL": BASE}


@pytest.fixture
def sam(db):
    with db.transaction() as s:
        user = add_user(s, "sam", "supervisor", "correct horse battery")
        s.flush()
        s.add(AlertRoute(user_id=user.id, line_number=LINE))
        return user.id


@pytest.fixture
def linker(app, db):
    return build_telegram_linker(app.extensions["connector"].config, db)


@pytest.fixture
def send(app, db):
    worker = build_alert_worker(app.extensions["connector"].config, db, "telegram")
    return lambda: until_idle(worker)


def link(db, linker, telegram, user_id: int, chat_id: int = CHAT) -> None:
    with db.transaction() as s:
        code = start_link(s, user_id)
    telegram.user_sends(chat_id, f"/start {code}", first_name="Сэм")  # what the deep link's Start button sends
    assert linker.run_once() == 1


def low_call(mango_post, entry_id: str, digits: str = "3"):
    assert mango_post("events/summary", summary(entry_id, line=LINE)).status_code == 200
    assert mango_post("events/dtmf", dtmf(entry_id, digits)).status_code == 200


def telegram_jobs(db) -> list[DeliveryJob]:
    with db.reading() as s:
        return s.scalars(select(DeliveryJob).where(DeliveryJob.crm == "telegram").order_by(DeliveryJob.id)).all()


def test_a_person_links_their_chat_by_the_deep_link_and_gets_one_alert(db, linker, telegram, sam, send,
                                                                       mango_post):
    link(db, linker, telegram, sam)
    assert telegram.texts_to(CHAT) == [REPLIES[LinkAnswer.LINKED]]
    with db.reading() as s:
        assert s.get(AlertChannel, (sam, "telegram")).address == str(CHAT)
        assert s.get(MessengerAccount, "telegram").bot_username == telegram.username  # for the console's link
    low_call(mango_post, "call-1")
    assert send() == 1
    [alert] = telegram.texts_to(CHAT)[1:]
    assert alert.startswith("<b>Низкая оценка клиента</b>") and "Клиент: …4567" in alert
    assert f'<a href="{BASE}/calls/call-1">' in alert and "79001234567" not in alert
    assert telegram.sent[-1]["parse_mode"] == "HTML"
    assert mango_post("events/dtmf", dtmf("call-1", "2", seq=6, timestamp=1_763_800_300)).status_code == 200
    assert send() == 0 and len(telegram.texts_to(CHAT)) == 2  # once per trigger


def test_a_used_wrong_or_old_code_links_nothing_and_says_what_to_do(db, linker, telegram, sam):
    with db.transaction() as s:
        code = start_link(s, sam, now=datetime.now(timezone.utc) - CODE_TTL - timedelta(seconds=1))
    telegram.user_sends(CHAT, f"/start {code}")
    telegram.user_sends(CHAT, "/start not-a-code")
    telegram.user_sends(CHAT, "привет")
    assert linker.run_once() == 3
    assert telegram.texts_to(CHAT) == [REPLIES[LinkAnswer.UNKNOWN_CODE]] * 2 + [REPLIES[LinkAnswer.NO_CODE]]
    with db.reading() as s:
        assert s.get(AlertChannel, (sam, "telegram")).address is None
    assert linker.run_once() == 0  # the offset confirmed them: nothing is read twice


def test_telegrams_retry_after_is_honoured(db, linker, telegram, sam, send, mango_post):
    link(db, linker, telegram, sam)
    telegram.rate_limit(7)
    low_call(mango_post, "call-1")
    before = datetime.now(timezone.utc)
    assert send() == 1
    [job] = telegram_jobs(db)
    assert job.status == JobStatus.PENDING and "Too Many Requests" in job.last_error
    assert job.not_before >= before + timedelta(seconds=7)  # not sooner than Telegram asked
    with db.transaction() as s:  # seven seconds later
        s.get(DeliveryJob, job.id).not_before = datetime.now(timezone.utc)
    assert send() == 1
    assert len(telegram.texts_to(CHAT)) == 2 and telegram_jobs(db)[0].status == JobStatus.DONE


def test_a_chat_that_blocked_the_bot_turns_the_channel_off_until_linked_again(db, linker, telegram, sam, send,
                                                                              mango_post, client):
    link(db, linker, telegram, sam)
    telegram.block(CHAT)
    low_call(mango_post, "call-1")
    assert send() == 1
    [job] = telegram_jobs(db)
    assert job.status == JobStatus.DEAD and "bot was blocked by the user" in job.last_error
    with db.reading() as s:
        assert "bot was blocked by the user" in s.get(AlertChannel, (sam, "telegram")).refused
    console_login(client, "sam", "correct horse battery")  # the console tells the person
    page = client.get("/notifications").get_data(as_text=True)
    assert "Оповещение не доставлено: Telegram отключён" in page and "call-1" in page
    low_call(mango_post, "call-2")
    assert len(telegram_jobs(db)) == 1  # the refused channel gets nothing more
    link(db, linker, telegram, sam)  # Start again in the chat, through a new deep link
    with db.reading() as s:
        assert s.get(AlertChannel, (sam, "telegram")).refused is None
    assert send() == 1  # what the chat refused goes again by itself once it is linked
    assert any("call-1" in text for text in telegram.texts_to(CHAT))


@pytest.mark.parametrize("config_overrides", [{"TELEGRAM_BOT_TOKEN": "123456789:AAH-wrong-token-for-tests_000000",
                                               "PUBLIC_BASE_URL": BASE}])
def test_a_wrong_token_is_a_visible_error_and_loses_nothing(db, app, telegram, sam, mango_post, config_overrides):
    config = app.extensions["connector"].config
    from dataclasses import replace
    config = replace(config, TELEGRAM_API_URL=telegram.url)
    linker = build_telegram_linker(config, db)
    assert linker.run_once() == 0
    with db.reading() as s:
        assert "Unauthorized" in s.get(MessengerAccount, "telegram").last_error
    with db.transaction() as s:
        s.add(AlertChannel(user_id=sam, channel="telegram", address=str(CHAT), enabled=True))
    low_call(mango_post, "call-1")
    worker = build_alert_worker(config, db, "telegram")
    assert worker.run_once() == 1
    [job] = telegram_jobs(db)
    assert job.status == JobStatus.DEAD and "token" in job.last_error.lower()
    assert "wrong-token" not in job.last_error


def test_an_unknown_chat_is_refused_with_telegrams_words_and_a_hostile_comment_is_only_text(db, linker, telegram,
                                                                                           sam, send, post_score):
    with db.transaction() as s:  # a chat id that never wrote to the bot (typed in by someone, or gone)
        s.add(AlertChannel(user_id=sam, channel="telegram", address="987654321", enabled=True))
    from connector.delivery.alerts import settings as alert_settings
    with db.transaction() as s:
        alert_settings.save(s, {"supervisor_below": 5}, "test")
    post_score({"call_id": "call-9", "score": 10, "source": "customer"})  # the score API names no line: set it
    with db.transaction() as s:
        from connector.core.models import Call
        s.scalars(select(Call).where(Call.entry_id == "call-9")).one().line_number = LINE
    post_score({"call_id": "call-9", "score": 1, "source": "supervisor",
                "comment": '<b>грубо</b> <a href="https://evil.example">нажми</a> &'})
    assert send() == 1
    [job] = telegram_jobs(db)
    assert job.status == JobStatus.DEAD and "chat not found" in job.last_error
    with db.reading() as s:
        assert "chat not found" in s.get(AlertChannel, (sam, "telegram")).refused
    # Linked properly, the replayed alert reaches the chat with the comment as text, not markup.
    link(db, linker, telegram, sam)
    assert send() == 1
    text = telegram.texts_to(CHAT)[-1]
    assert "Комментарий: &lt;b&gt;грубо&lt;/b&gt; &lt;a href=" in text and "&amp;" in text
    assert "<b>грубо" not in text and 'href="https://evil' not in text
