"""A fake Telegram Bot API, served over real HTTP in the tests (`serving(create_fake_telegram(fake))`).

It behaves as the Bot API page (https://core.telegram.org/bots/api) and the official server's source
(tdlib/telegram-bot-api, telegram-bot-api/Client.cpp and ClientManager.cpp) describe:
- `/bot<token>/<method>`, GET or POST, parameters in the query, a form or a JSON body, method names in any case
  ("Making requests"); every answer `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description"}`
  with `parameters` for some errors ("Making requests", "ResponseParameters");
- another token: 401 "Unauthorized"; one not shaped "<bot id>:<secret>": 404 "Not Found"; an unknown method:
  404 "Not Found: method not found";
- `getMe` answers the bot (`bot_id`, `username`);
- `sendMessage` records each message (`sent`): a chat that never wrote to the bot is 400 "Bad Request: chat not
  found", a chat that `block`ed it 403 "Forbidden: bot was blocked by the user", an HTML text Telegram cannot
  parse 400 "Bad Request: can't parse entities: ...", an empty one 400 "Bad Request: message text is empty",
  one over 4096 characters (after parsing) 400 "Bad Request: message is too long";
- `getUpdates` answers the queued updates (`user_sends`), dropping those below `offset` for good, or 409 while
  a webhook is set (`webhook_url`); a long poll waits at most `long_poll_cap` seconds, not the asked timeout.
Failures can be injected for the next requests: `rate_limit` (429 with `retry_after`), `fail_next` (a 5xx),
`answer_late` (the message recorded, the answer delayed past the client's timeout).
"""
from __future__ import annotations

import html
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http import HTTPStatus

from flask import Flask, jsonify, request

# The tags of Telegram's HTML style ("Formatting options"; tdlib/td MessageEntity.cpp parse_html): no <br>, <p>
# or <div>: a new line is a plain "\n".
HTML_TAGS = {"a", "b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "span", "tg-spoiler", "tg-emoji",
             "code", "pre", "blockquote"}
TEXT_LIMIT = 4096  # sendMessage: "1-4096 characters after entities parsing"


class CantParse(ValueError):
    """An HTML text Telegram refuses, with the parser's words."""


def parse_html(text: str) -> str:
    """The text Telegram would show, or CantParse with tdlib's words (tdlib/td test/message_entities.cpp,
    TEST(MessageEntities, parse_html)). Attributes are skipped, not checked; offsets are UTF-8 bytes."""
    plain, stack, i = [], [], 0

    def at(position: int) -> int:
        return len(text[:position].encode("utf-8"))

    while i < len(text):
        if text[i] != "<":
            plain.append(text[i])
            i += 1
            continue
        begin = i
        if text.startswith("</", i):
            end = text.find(">", i)
            if not stack:
                raise CantParse(f"Unexpected end tag at byte offset {at(begin)}")
            if end < 0:
                raise CantParse(f"Unclosed end tag at byte offset {at(begin)}")
            name, opened = text[i + 2:end].strip().lower(), stack.pop()
            if name and name != opened:
                raise CantParse(f'Unmatched end tag at byte offset {at(begin)}, expected "</{opened}>", '
                                f'found "</{name}>"')
            i = end + 1
            continue
        i += 1
        while i < len(text) and not text[i].isspace() and text[i] != ">":
            i += 1
        if i == len(text):
            raise CantParse(f"Unclosed start tag at byte offset {at(begin)}")
        name = text[begin + 1:i].lower()
        if name not in HTML_TAGS:  # "a < b" too: tdlib reads an empty name, 'Unsupported start tag ""'
            raise CantParse(f'Unsupported start tag "{name}" at byte offset {at(begin)}')
        end = text.find(">", i)
        if end < 0:
            raise CantParse(f'Unclosed start tag "{name}" at byte offset {at(begin)}')
        stack.append(name)
        i = end + 1
    if stack:
        raise CantParse(f'Can\'t find end tag corresponding to start tag "{stack[-1]}"')
    return html.unescape("".join(plain))


def utf16_length(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass
class Injected:
    """What the next matching request gets instead of its answer: `status` with `body`, or `late` seconds of
    waiting after the effect (the answer misses the client's timeout)."""

    method: str  # lower-case method name; "" matches any
    status: int = 0
    body: dict | str | None = None
    late: float = 0.0
    times: int = 1


@dataclass
class FakeTelegram:
    token: str = "123456789:AAH-fake-token-for-tests_0123456789"
    url: str = ""  # where it is served: the test sets it from `serving`
    username: str = "quality_alerts_bot"
    first_name: str = "Контроль качества"
    webhook_url: str = ""  # set: getUpdates answers 409, as Telegram does while a webhook is active
    long_poll_cap: float = 0.5  # seconds a long poll waits at most (the real one up to 50)
    chats: dict = field(default_factory=dict)  # chat id -> its Chat object: the people (and groups) who wrote
    blocked: set = field(default_factory=set)  # chat ids that blocked the bot
    sent: list = field(default_factory=list)  # {"chat_id", "text", "parse_mode", "link_preview_options", ...}
    updates: list = field(default_factory=list)  # queued Update objects (dicts), oldest first
    polls: list = field(default_factory=list)  # the parameters of each getUpdates
    requests: list = field(default_factory=list)  # (method, HTTP status)
    injected: list = field(default_factory=list)

    def __post_init__(self):
        self.lock = threading.Condition()
        self.update_ids = itertools.count(725_000_001)  # real ids are large and only grow
        self.message_ids = itertools.count(1)
        self.bot_id = int(self.token.partition(":")[0])

    # --- set-up helpers for tests ---------------------------------------------------------------------------
    def user_sends(self, chat_id: int, text: str | None, first_name: str = "Анна", *,
                   chat_type: str = "private") -> int:
        """A person's message to the bot (text None: a sticker, which has no text); its update_id. A private
        chat's id is the person's user id; a group's is negative."""
        with self.lock:
            chat = {"id": chat_id, "type": chat_type,
                    **({"first_name": first_name} if chat_type == "private" else {"title": "Отдел продаж"})}
            self.chats.setdefault(chat_id, chat)
            # Writing to the bot again (Start) lifts a block (TelegramBot/Api#382: "start the bot again").
            self.blocked.discard(chat_id)
            user_id = chat_id if chat_type == "private" else 5_000_000 + len(self.updates)
            user = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "ru"}
            message = {"message_id": next(self.message_ids), "from": user, "chat": chat, "date": int(time.time())}
            if text is None:
                message["sticker"] = {"file_id": "CAACAgIAAxkBAAE", "emoji": "👍"}
            else:
                message["text"] = text
            return self.queue_update({"message": message})

    def queue_update(self, update: dict) -> int:
        """Any Update object (e.g. {"edited_message": ...}); its update_id."""
        with self.lock:
            update_id = next(self.update_ids)
            self.updates.append({"update_id": update_id, **update})
            self.lock.notify_all()
            return update_id

    def block(self, chat_id: int) -> None:
        with self.lock:
            self.blocked.add(chat_id)

    def rate_limit(self, seconds: int, times: int = 1) -> None:
        """The next `times` sendMessage answer 429 "Too Many Requests: retry after N" with
        parameters.retry_after (Query.cpp set_retry_after_error)."""
        self._inject(Injected("sendmessage", 429, {
            "ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {seconds}",
            "parameters": {"retry_after": seconds}}, times=times))

    def fail_next(self, status: int = 502, *, method: str = "", times: int = 1) -> None:
        """The next request (of `method`, or any) fails, applying nothing: 500 as the Bot API's JSON ("Internal
        Server Error", Client.cpp), another status as the page of the nginx in front of it (not JSON)."""
        title = f"{status} {HTTPStatus(status).phrase}"
        body: dict | str = {"ok": False, "error_code": 500, "description": "Internal Server Error"} \
            if status == 500 else (f"<html><head><title>{title}</title></head><body><center><h1>{title}</h1>"
                                   f"</center><hr><center>nginx</center></body></html>")
        self._inject(Injected(method.lower(), status, body, times=times))

    def answer_late(self, seconds: float, *, method: str = "sendMessage") -> None:
        """The next request takes effect, then its answer waits `seconds` (a client with a shorter timeout
        sees no answer, although the message went out)."""
        self._inject(Injected(method.lower(), late=seconds))

    def texts_to(self, chat_id: int) -> list[str]:
        return [m["text"] for m in self.sent if m["chat_id"] == chat_id]

    # --- internals ------------------------------------------------------------------------------------------
    def _inject(self, item: Injected) -> None:
        with self.lock:
            self.injected.append(item)

    def _take_injection(self, method: str) -> Injected | None:
        with self.lock:
            for item in self.injected:
                if not item.method or item.method == method:
                    item.times -= 1
                    if item.times <= 0:
                        self.injected.remove(item)
                    return item
        return None


def _chat_id(value) -> int | str:
    """chat_id is an integer or "@channelusername" (sendMessage); as a form field it comes as a string."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def create_fake_telegram(fake: FakeTelegram) -> Flask:
    app = Flask("fake_telegram")

    def answer(result) -> tuple:
        return jsonify({"ok": True, "result": result}), 200

    def error(status: int, description: str, **parameters) -> tuple:
        body = {"ok": False, "error_code": status, "description": description}
        if parameters:
            body["parameters"] = parameters
        return jsonify(body), status

    def params() -> dict:
        # Making requests: "URL query string, application/x-www-form-urlencoded, application/json ... and
        # multipart/form-data"; in a form, arrays and objects come JSON-serialized.
        merged = dict(request.args.items())
        merged.update(request.form.items())
        if request.is_json:
            merged.update(request.get_json(silent=True) or {})
        return merged

    @app.after_request
    def record(response):
        method = request.path.rpartition("/")[2].lower()
        with fake.lock:
            fake.requests.append((method, response.status_code))
        return response

    @app.route("/bot<token>/<method>", methods=["GET", "POST"])
    def call(token: str, method: str):
        # A token not shaped "<bot id>:<secret>" (or none): api.telegram.org's 404 "Not Found" (issues e.g.
        # eternnoir/pyTelegramBotAPI#817, AzuraCast/AzuraCast#1256).
        if not re.fullmatch(r"[1-9]\d*:[\w-]+", token):
            return error(404, "Not Found")
        # An unknown token: 401 "Unauthorized" (Client.cpp get_closing_error; issues e.g.
        # eternnoir/pyTelegramBotAPI#168: {"ok":false,"error_code":401,"description":"Unauthorized"}).
        if token != fake.token:
            return error(401, "Unauthorized")
        method = method.lower()  # Making requests: "All methods in the Bot API are case-insensitive"
        handler = METHODS.get(method)
        if handler is None:
            return error(404, "Not Found: method not found")  # Client.cpp, a method it does not have
        injected = fake._take_injection(method)
        if injected and injected.status:
            if isinstance(injected.body, dict):
                return jsonify(injected.body), injected.status
            return injected.body or "", injected.status, {"Content-Type": "text/html"}
        result = handler(params())
        if injected and injected.late:
            time.sleep(injected.late)
        return result

    def get_me(p: dict):
        # getMe: "Returns basic information about the bot in form of a User object"
        return answer({"id": fake.bot_id, "is_bot": True, "first_name": fake.first_name, "username": fake.username,
                       "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False})

    def send_message(p: dict):
        chat_id, text, parse_mode = _chat_id(p.get("chat_id")), str(p.get("text") or ""), p.get("parse_mode") or ""
        with fake.lock:
            # Client.cpp: a chat the bot does not know (a person who never wrote to it: bots cannot start chats).
            if chat_id not in fake.chats:
                return error(400, "Bad Request: chat not found")
            # Client.cpp maps USER_IS_BLOCKED to 403 "Forbidden: bot was blocked by the user" (issues e.g.
            # irazasyed/telegram-bot-sdk#651, TelegramBot/Api#382).
            if chat_id in fake.blocked:
                return error(403, "Forbidden: bot was blocked by the user")
        if not text:
            return error(400, "Bad Request: message text is empty")  # Client.cpp get_input_message_text
        shown = text
        if parse_mode.lower() == "html":
            try:
                shown = parse_html(text)
            except CantParse as exc:
                # tdlib's parser words after "can't parse entities: " (issues e.g. kozalosev/DickGrowerBot#92,
                # rossnomann/telefeed#1).
                return error(400, f"Bad Request: can't parse entities: {exc}")
        elif parse_mode:
            return error(400, "Bad Request: unsupported parse_mode")  # Client.cpp: "Unsupported parse_mode"
        if utf16_length(shown) > TEXT_LIMIT:
            return error(400, "Bad Request: message is too long")  # sendMessage: 1-4096 characters after parsing
        preview = p.get("link_preview_options")
        if isinstance(preview, str):
            preview = json.loads(preview)
        with fake.lock:
            message_id = next(fake.message_ids)
            fake.sent.append({"chat_id": chat_id, "text": text, "parse_mode": parse_mode or None,
                              "link_preview_options": preview, "shown": shown, "message_id": message_id})
            chat = fake.chats[chat_id]
        return answer({"message_id": message_id, "date": int(time.time()), "text": shown, "chat": chat,
                       "from": {"id": fake.bot_id, "is_bot": True, "first_name": fake.first_name,
                                "username": fake.username}})

    def get_updates(p: dict):
        if fake.webhook_url:
            # Client.cpp process_get_updates_query (issues e.g. reo7sp/tgbot-cpp#158, opsdroid/opsdroid#853).
            return error(409, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook "
                              "to delete the webhook first")
        offset = int(p.get("offset") or 0)
        limit = min(max(int(p.get("limit") or 100), 1), 100)  # getUpdates, limit: "Values between 1-100"
        timeout = max(float(p.get("timeout") or 0), 0.0)
        with fake.lock:
            fake.polls.append(dict(p))
            # getUpdates, offset: "An update is considered confirmed as soon as getUpdates is called with an offset
            # higher than its update_id"; a negative offset keeps the last -offset updates, forgetting the rest.
            if offset > 0:
                fake.updates = [u for u in fake.updates if u["update_id"] >= offset]
            elif offset < 0:
                fake.updates = fake.updates[offset:]
            if not fake.updates and timeout:
                fake.lock.wait(min(timeout, fake.long_poll_cap))  # long polling, shortened for the tests
            return answer(fake.updates[:limit])

    METHODS = {"getme": get_me, "sendmessage": send_message, "getupdates": get_updates}
    return app


def telegram_settings(fake: FakeTelegram) -> dict:
    """The connector's settings for this fake bot."""
    return {"TELEGRAM_BOT_TOKEN": fake.token, "TELEGRAM_API_URL": fake.url}
