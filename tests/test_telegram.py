"""The Telegram bot client (connector.delivery.telegram): what each Bot API answer becomes for its caller, first with
`responses` (one rule a test), then over real HTTP against the fake Bot API (tests/fakes/telegram.py): a message
sent, a 429 with its wait, a person who blocked the bot or never wrote to it, a wrong token, getUpdates offsets.
The token is in every URL: no exception, repr or log line may carry it."""
from __future__ import annotations

import json
import logging
import traceback

import pytest
import requests
import responses
import urllib3.exceptions

from connector.delivery.contract import PermanentError, RateLimited, TransientError, UnexpectedAnswer
from connector.delivery.telegram import (TEXT_LIMIT, Bot, BotInfo, ChatMigrated, ChatNotFound, ChatRefused, Update,
                                         WebhookSet, WrongToken, cut)
from tests.fakes.server import serving
from tests.fakes.telegram import CantParse, FakeTelegram, create_fake_telegram, parse_html, utf16_length

TOKEN = "7012345678:AAF-secret-part-of-the-token_XYZ987"
SECRET = TOKEN.partition(":")[2]
API = "https://api.telegram.org"
SEND = f"{API}/bot{TOKEN}/sendMessage"
GET_ME = f"{API}/bot{TOKEN}/getMe"
GET_UPDATES = f"{API}/bot{TOKEN}/getUpdates"


def failure(body: dict | None = None, status: int = 400, **extra) -> dict:
    return {"status": status, "json": body if body is not None else {"ok": False, "error_code": status, **extra}}


def assert_no_token(exc: BaseException) -> None:
    """Nothing a log or a person would read of the exception holds the token's secret part."""
    seen = [str(exc), repr(exc), "".join(traceback.format_exception(exc)), str(getattr(exc, "body", ""))]
    assert not any(SECRET in text for text in seen)
    assert exc.__context__ is None and exc.__cause__ is None  # no chained requests exception with the URL


# --- unit: one Bot API answer a test ------------------------------------------------------------------------------
@responses.activate
def test_a_message_goes_as_html_without_link_previews_and_its_id_comes_back():
    sent = responses.post(SEND, json={"ok": True, "result": {"message_id": 42, "chat": {"id": 5}, "text": "x"}})

    message_id = Bot(TOKEN).send_message(5, "<b>Низкая оценка</b>: звонок 101")

    assert message_id == 42
    assert sent.calls[0].request.headers["Content-Type"] == "application/json"
    assert json.loads(sent.calls[0].request.body) == {
        "chat_id": 5, "text": "<b>Низкая оценка</b>: звонок 101", "parse_mode": "HTML",
        "link_preview_options": {"is_disabled": True}}


@responses.activate
def test_plain_text_goes_without_a_parse_mode():
    sent = responses.post(SEND, json={"ok": True, "result": {"message_id": 7}})

    Bot(TOKEN).send_message("@alerts_channel", "a < b", html=False)

    body = sent.calls[0].request.body
    assert b"parse_mode" not in body and b'"chat_id": "@alerts_channel"' in body


@responses.activate
def test_a_429_is_rate_limited_for_the_seconds_telegram_names_and_surely_not_sent():
    responses.post(SEND, **failure(status=429, description="Too Many Requests: retry after 7",
                                   parameters={"retry_after": 7}))

    with pytest.raises(RateLimited) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert caught.value.retry_after == 7.0 and caught.value.maybe_applied is False
    assert "Too Many Requests: retry after 7" in str(caught.value)


@responses.activate
def test_a_429_without_parameters_takes_its_wait_from_the_words():
    responses.post(SEND, **failure(status=429, description="Too Many Requests: retry after 3"))

    with pytest.raises(RateLimited) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert caught.value.retry_after == 3.0


@responses.activate
def test_telegrams_own_500_is_transient_and_was_not_applied():
    responses.post(SEND, **failure(status=500, description="Internal Server Error"))

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert type(caught.value) is TransientError and caught.value.maybe_applied is False
    assert "Internal Server Error" in str(caught.value)


@responses.activate
def test_a_proxy_page_instead_of_json_is_transient():
    responses.post(SEND, status=502, body="<html><center><h1>502 Bad Gateway</h1></center><hr>nginx</html>",
                   content_type="text/html")

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert str(caught.value) == "Telegram sendMessage: HTTP 502 with no Bot API answer"
    assert caught.value.maybe_applied is False and caught.value.status == 502


@responses.activate
def test_a_gateway_timeout_or_an_unreadable_200_may_have_sent_the_message():
    responses.post(SEND, status=504, body="<html>504 Gateway Time-out</html>", content_type="text/html")
    responses.post(SEND, status=200, body='{"ok": true, "result": {"mess', content_type="application/json")
    bot = Bot(TOKEN)

    for _ in range(2):
        with pytest.raises(TransientError) as caught:
            bot.send_message(5, "x")
        assert caught.value.maybe_applied is True


@responses.activate
def test_no_answer_in_time_is_transient_and_the_message_may_have_gone_out():
    # requests' own exception names the URL, token and all: the client must not pass its words on.
    responses.post(SEND, body=requests.ReadTimeout(f"HTTPSConnectionPool: Read timed out. (url: {SEND})"))

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert str(caught.value) == "Telegram sendMessage: no answer in 10 s (ReadTimeout)"
    assert caught.value.maybe_applied is True
    assert_no_token(caught.value)


@responses.activate
def test_no_answer_to_a_read_is_transient_and_changed_nothing():
    responses.post(GET_ME, body=requests.ConnectionError(f"Connection aborted. {GET_ME}"))

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN).get_me()

    assert str(caught.value) == "Telegram getMe: no connection (ConnectionError)"
    assert caught.value.maybe_applied is False
    assert_no_token(caught.value)


@responses.activate
def test_a_connection_that_never_opened_did_not_send_the_message():
    refused = urllib3.exceptions.MaxRetryError(None, SEND, urllib3.exceptions.NewConnectionError(
        None, "Failed to establish a new connection: [Errno 111] Connection refused"))
    responses.post(SEND, body=requests.ConnectionError(refused))

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert caught.value.maybe_applied is False
    assert_no_token(caught.value)


@pytest.mark.parametrize("status, description", [(401, "Unauthorized"), (404, "Not Found")])
@responses.activate
def test_401_or_404_means_the_token_is_wrong(status, description):
    responses.post(GET_ME, **failure(status=status, description=description))

    with pytest.raises(WrongToken) as caught:
        Bot(TOKEN).get_me()

    assert str(caught.value) == (f"Telegram refused the bot token ({description}): enter the token @BotFather "
                                 f"gave")
    assert_no_token(caught.value)


@pytest.mark.parametrize("description", ["Forbidden: bot was blocked by the user", "Forbidden: user is deactivated",
                                         "Forbidden: bot was kicked from the group chat"])
@responses.activate
def test_a_403_refuses_the_chat_for_good(description):
    responses.post(SEND, **failure(status=403, description=description))

    with pytest.raises(ChatRefused) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert caught.value.chat_id == 5
    assert str(caught.value) == f"Telegram will not deliver to chat 5: {description}"


@responses.activate
def test_chat_not_found_says_the_person_must_write_to_the_bot_first():
    responses.post(SEND, **failure(description="Bad Request: chat not found"))

    with pytest.raises(ChatNotFound) as caught:
        Bot(TOKEN).send_message(777, "x")

    assert caught.value.chat_id == 777
    assert str(caught.value) == ("Telegram knows no chat 777 for this bot: the person must write to the bot first "
                                 "(Bad Request: chat not found)")


@responses.activate
def test_a_group_that_became_a_supergroup_names_its_new_id():
    responses.post(SEND, **failure(description="Bad Request: group chat was upgraded to a supergroup chat",
                                   parameters={"migrate_to_chat_id": -1001557912345}))

    with pytest.raises(ChatMigrated) as caught:
        Bot(TOKEN).send_message(-4012345, "x")

    assert isinstance(caught.value, PermanentError) and caught.value.new_chat_id == -1001557912345
    assert "-4012345 became a supergroup with the new id -1001557912345" in str(caught.value)


@responses.activate
def test_getupdates_while_a_webhook_is_set_says_so_in_words():
    responses.post(GET_UPDATES, **failure(status=409, description="Conflict: can't use getUpdates method while "
                                          "webhook is active; use deleteWebhook to delete the webhook first"))

    with pytest.raises(WebhookSet) as caught:
        Bot(TOKEN).get_updates()

    assert str(caught.value).startswith("Telegram hands this bot's messages to a webhook, so getUpdates cannot "
                                        "read them: delete the webhook (deleteWebhook) or use another bot")


@responses.activate
def test_another_poller_is_a_plain_refusal_not_a_webhook():
    responses.post(GET_UPDATES, **failure(status=409, description="Conflict: terminated by other getUpdates "
                                          "request; make sure that only one bot instance is running"))

    with pytest.raises(PermanentError) as caught:
        Bot(TOKEN).get_updates()

    assert not isinstance(caught.value, WebhookSet)
    assert "terminated by other getUpdates request" in str(caught.value)


@responses.activate
def test_any_other_refusal_is_permanent_with_telegrams_words():
    responses.post(SEND, **failure(description="Bad Request: can't parse entities: Unsupported start tag \"br\" "
                                               "at byte offset 3"))

    with pytest.raises(PermanentError) as caught:
        Bot(TOKEN).send_message(5, "ab <br> c")

    assert type(caught.value) is PermanentError and caught.value.status == 400
    assert str(caught.value) == ('Telegram refused sendMessage: Bad Request: can\'t parse entities: Unsupported '
                                 'start tag "br" at byte offset 3')


@responses.activate
def test_an_ok_answer_without_a_message_id_is_unexpected():
    responses.post(SEND, json={"ok": True, "result": True})

    with pytest.raises(UnexpectedAnswer) as caught:
        Bot(TOKEN).send_message(5, "x")

    assert caught.value.field == "message_id" and caught.value.maybe_applied is True


@responses.activate
def test_updates_are_private_text_messages_and_the_offset_counts_every_update():
    responses.post(GET_UPDATES, json={"ok": True, "result": [
        {"update_id": 10, "message": {"message_id": 1, "from": {"id": 5, "first_name": "Анна"},
                                      "chat": {"id": 5, "type": "private", "first_name": "Анна"}, "text": "/start"}},
        {"update_id": 11, "message": {"message_id": 2, "from": {"id": 6, "first_name": "Олег"},
                                      "chat": {"id": -100, "type": "group", "title": "Продажи"}, "text": "hi"}},
        {"update_id": 12, "message": {"message_id": 3, "from": {"id": 5, "first_name": "Анна"},
                                      "chat": {"id": 5, "type": "private"}, "sticker": {"file_id": "x"}}},
        {"update_id": 13, "edited_message": {"message_id": 1, "chat": {"id": 5, "type": "private"}, "text": "/s"}},
    ]})

    updates = Bot(TOKEN).get_updates(10, timeout=0)

    assert updates.messages == [Update(update_id=10, chat_id=5, text="/start", first_name="Анна")]
    assert updates.next_offset == 14
    sent = responses.calls[0].request.body
    assert b'"offset": 10' in sent and b'"allowed_updates": ["message"]' in sent


@responses.activate
def test_no_updates_leave_the_offset_as_it_was():
    responses.post(GET_UPDATES, json={"ok": True, "result": []})

    assert Bot(TOKEN).get_updates(99) == ([], 99)


def test_an_address_that_is_no_url_is_a_settings_mistake_not_a_pause():
    with pytest.raises(PermanentError) as caught:
        Bot(TOKEN, base_url="api.telegram.org").get_me()

    assert str(caught.value).startswith("Telegram getMe: the address 'api.telegram.org' is not an http(s) URL")
    assert_no_token(caught.value)


def test_the_bots_repr_shows_its_public_id_not_its_secret():
    assert repr(Bot(TOKEN)) == "Bot(id=7012345678, base_url='https://api.telegram.org')"


# --- cutting a text over the limit ------------------------------------------------------------------------------
def test_a_long_plain_text_is_cut_to_the_limit_and_ends_with_an_ellipsis():
    text = "ы" * 5000

    result = cut(text, html=False)

    assert len(result) == TEXT_LIMIT and result.endswith("ы…")


def test_an_emoji_counts_twice_as_telegram_counts_it():
    result = cut("😀" * 3000, html=False)

    assert utf16_length(result) <= TEXT_LIMIT and result.endswith("😀…")


def test_a_long_html_text_is_cut_outside_tags_and_entities_and_its_open_tags_closed():
    text = "<b>Низкие оценки</b>\n" + "<i>звонок &amp; оценка</i> <a href=\"https://x.example/c\">запись</a>\n" * 200

    for shift in range(0, 60):  # the limit falls on every kind of place: a tag, an entity, between them
        result = cut(text, html=True, limit=TEXT_LIMIT - shift)
        assert utf16_length(result) <= TEXT_LIMIT - shift
        assert parse_html(result).endswith("…")  # still parses, as Telegram would


def test_a_short_text_is_left_alone():
    assert cut("<b>ok</b>", html=True) == "<b>ok</b>"


# --- the fake's HTML parser agrees with Telegram's (tdlib/td test/message_entities.cpp) ---------------------------
@pytest.mark.parametrize("text, words", [
    ("🏟 🏟&lt;<abacaba", "Unclosed start tag at byte offset 13"),
    ("🏟 🏟&lt;<abac aba>", 'Unsupported start tag "abac" at byte offset 13'),
    ("🏟 🏟&lt;</", "Unexpected end tag at byte offset 13"),
    ("🏟 🏟&lt;<b></b></", "Unexpected end tag at byte offset 20"),
    ("🏟 🏟&lt;<i>a</i   ", "Unclosed end tag at byte offset 17"),
    ("🏟 🏟&lt;<i>a</em   >", 'Unmatched end tag at byte offset 17, expected "</i>", found "</em>"'),
    ("line<br>next", 'Unsupported start tag "br" at byte offset 4'),
    ("a < b", 'Unsupported start tag "" at byte offset 2'),
    ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
])
def test_the_fake_refuses_html_as_telegram_does(text, words):
    with pytest.raises(CantParse) as caught:
        parse_html(text)

    assert str(caught.value) == words


def test_the_fake_shows_html_as_telegram_does():
    assert parse_html('🏟 🏟&lt;<i>a</i   ><a href="https://t.me">t</a>&amp;') == "🏟 🏟<at&"


# --- end to end: the client against the fake Bot API over real HTTP ------------------------------------------------
@pytest.fixture
def telegram():
    fake = FakeTelegram(token=TOKEN)
    with serving(create_fake_telegram(fake)) as fake.url:
        yield fake


def bot_for(fake: FakeTelegram, **kwargs) -> Bot:
    return Bot(kwargs.pop("token", fake.token), base_url=fake.url, **kwargs)


def test_the_bot_knows_who_it_is(telegram):
    assert bot_for(telegram).get_me() == BotInfo(id=7012345678, username="quality_alerts_bot")


def test_a_person_writes_to_the_bot_and_the_bot_alerts_them(telegram):
    telegram.user_sends(5550001, "/start", first_name="Анна")
    bot = bot_for(telegram)

    start = bot.get_updates().messages[0]
    message_id = bot.send_message(start.chat_id, "<b>Оценка 2</b> по звонку 101 &lt;Иванов&gt;")

    assert start == Update(update_id=start.update_id, chat_id=5550001, text="/start", first_name="Анна")
    assert telegram.sent == [{"chat_id": 5550001, "text": "<b>Оценка 2</b> по звонку 101 &lt;Иванов&gt;",
                              "parse_mode": "HTML", "link_preview_options": {"is_disabled": True},
                              "shown": "Оценка 2 по звонку 101 <Иванов>", "message_id": message_id}]


def test_a_rate_limited_message_waits_the_named_seconds_then_goes(telegram):
    telegram.user_sends(5550001, "/start")
    telegram.rate_limit(7)
    bot = bot_for(telegram)

    with pytest.raises(RateLimited) as caught:
        bot.send_message(5550001, "первая")
    bot.send_message(5550001, "первая")

    assert caught.value.retry_after == 7.0 and caught.value.maybe_applied is False
    assert telegram.texts_to(5550001) == ["первая"]


def test_a_person_who_blocked_the_bot_is_refused_for_good(telegram):
    telegram.user_sends(5550001, "/start")
    telegram.block(5550001)

    with pytest.raises(ChatRefused) as caught:
        bot_for(telegram).send_message(5550001, "оценка 1")

    assert str(caught.value) == "Telegram will not deliver to chat 5550001: Forbidden: bot was blocked by the user"
    assert telegram.sent == []


def test_a_person_who_starts_the_bot_again_can_be_reached_again(telegram):
    telegram.user_sends(5550001, "/start")
    telegram.block(5550001)
    telegram.user_sends(5550001, "/start")

    bot_for(telegram).send_message(5550001, "снова на связи")

    assert telegram.texts_to(5550001) == ["снова на связи"]


def test_a_person_who_never_wrote_to_the_bot_cannot_be_reached(telegram):
    with pytest.raises(ChatNotFound) as caught:
        bot_for(telegram).send_message(5550002, "оценка 1")

    assert caught.value.chat_id == 5550002 and "chat not found" in str(caught.value)


@pytest.mark.parametrize("wrong, status", [
    ("7012345678:AAF-another-secret-the-admin-mistyped", 401),  # a token, not this bot's
    ("bot7012345678:AAF-another-secret-the-admin-mistyped", 404),  # copied with the URL's "bot" in front
])
def test_a_wrong_token_is_refused_and_never_shown(telegram, wrong, status):
    bot = bot_for(telegram, token=wrong)

    for call in (bot.get_me, lambda: bot.send_message(5, "x"), bot.get_updates):
        with pytest.raises(WrongToken) as caught:
            call()
        assert caught.value.status == status
        assert "another-secret" not in "".join(traceback.format_exception(caught.value))


def test_updates_once_read_are_confirmed_by_the_next_offset(telegram):
    telegram.user_sends(5550001, "/start", first_name="Анна")
    telegram.user_sends(5550003, None, first_name="Борис")  # a sticker: no text
    telegram.user_sends(-4012345, "всем привет", chat_type="group")
    bot = bot_for(telegram)

    first = bot.get_updates()
    telegram.user_sends(5550003, "/start", first_name="Борис")
    second = bot.get_updates(first.next_offset)
    third = bot.get_updates(second.next_offset)

    assert [(u.chat_id, u.text) for u in first.messages] == [(5550001, "/start")]
    assert [(u.chat_id, u.text, u.first_name) for u in second.messages] == [(5550003, "/start", "Борис")]
    assert third == ([], second.next_offset)
    assert telegram.updates == []  # confirmed updates are gone for good
    assert telegram.polls[0]["allowed_updates"] == ["message"]


def test_a_long_poll_returns_when_nothing_comes(telegram):
    assert bot_for(telegram).get_updates(timeout=30) == ([], None)


def test_getupdates_is_refused_while_the_bot_has_a_webhook(telegram):
    telegram.webhook_url = "https://elsewhere.example/hook"

    with pytest.raises(WebhookSet):
        bot_for(telegram).get_updates()


@pytest.mark.parametrize("status", [500, 502])
def test_a_failing_telegram_is_transient_and_sent_nothing(telegram, status):
    telegram.user_sends(5550001, "/start")
    telegram.fail_next(status)

    with pytest.raises(TransientError) as caught:
        bot_for(telegram).send_message(5550001, "x")

    assert caught.value.status == status and caught.value.maybe_applied is False and telegram.sent == []


def test_an_answer_that_comes_too_late_leaves_the_message_in_doubt(telegram):
    telegram.user_sends(5550001, "/start")
    telegram.answer_late(0.6)

    with pytest.raises(TransientError) as caught:
        bot_for(telegram, timeout=0.2).send_message(5550001, "оценка 1")

    assert caught.value.maybe_applied is True  # and it did go out: a resend would repeat it
    assert telegram.texts_to(5550001) == ["оценка 1"]
    assert_no_token(caught.value)


def test_telegram_out_of_reach_is_transient_and_sent_nothing():
    fake = FakeTelegram(token=TOKEN)
    with serving(create_fake_telegram(fake)) as url:
        pass  # closed again: nothing listens there now

    with pytest.raises(TransientError) as caught:
        Bot(TOKEN, base_url=url).send_message(5, "x")

    assert caught.value.maybe_applied is False
    assert_no_token(caught.value)


def test_html_telegram_cannot_parse_is_refused_with_its_words(telegram):
    telegram.user_sends(5550001, "/start")

    with pytest.raises(PermanentError) as caught:
        bot_for(telegram).send_message(5550001, "оценка < 3")

    assert str(caught.value) == ('Telegram refused sendMessage: Bad Request: can\'t parse entities: Unsupported '
                                 'start tag "" at byte offset 13')


def test_a_long_html_alert_is_cut_and_still_accepted(telegram):
    telegram.user_sends(5550001, "/start")
    alert = "<b>Низкие оценки за день</b>\n" + "<i>Звонок 101 &amp; 102</i>: <code>оценка 1</code>\n" * 300

    bot_for(telegram).send_message(5550001, alert)

    shown = telegram.sent[0]["shown"]
    assert shown.startswith("Низкие оценки за день\nЗвонок 101 & 102: оценка 1") and shown.endswith("…")


def test_the_token_stays_out_of_urllib3s_debug_log(telegram, caplog):
    with caplog.at_level(logging.DEBUG, logger="urllib3"):
        bot_for(telegram).get_me()

    lines = [record.getMessage() for record in caplog.records if record.name.startswith("urllib3")]  # not the fake's
    assert any('"POST /bot<token>/getMe HTTP/1.1" 200' in line for line in lines)
    assert not any(SECRET in line for line in lines)


def test_the_fake_takes_a_form_as_telegram_does(telegram):
    telegram.user_sends(5550001, "/start")

    answer = requests.post(f"{telegram.url}/bot{TOKEN}/SENDMESSAGE", timeout=5,
                           data={"chat_id": "5550001", "text": "<b>ok</b>", "parse_mode": "HTML",
                                 "link_preview_options": '{"is_disabled": true}'})

    assert answer.json()["result"]["text"] == "ok"
    assert telegram.sent[0]["link_preview_options"] == {"is_disabled": True}
