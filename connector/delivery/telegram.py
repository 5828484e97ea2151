"""Messages to supervisors through a Telegram bot (issue #20: alerts go out by it as well as by e-mail).

The Bot API is plain HTTPS (https://core.telegram.org/bots/api#making-requests): every answer is a JSON object
with a boolean `ok`, then either `result` or a human-readable `description` with an `error_code` and, for some
errors, `parameters` (`retry_after`, `migrate_to_chat_id`). Its answer decides what becomes of a message, as a
target's answer does for a job (`connector.delivery.contract`):
- a 429 is `RateLimited` after Telegram's `retry_after`; a 5xx, no answer or an answer that is not JSON is
  `TransientError` (try again later);
- anything else Telegram refuses is a `PermanentError` with Telegram's own words, and the cases a caller acts on
  have their own class: `WrongToken` (the bot's token is wrong: nothing will go out), `ChatRefused` (the person
  blocked the bot: turn their channel off), `ChatNotFound` (the person never wrote to the bot), `ChatMigrated`
  (a group became a supergroup with a new id), `WebhookSet` (getUpdates cannot work while a webhook is set).

The token is part of every URL (`/bot<token>/<method>`), and whoever holds it controls the bot: no exception,
log line or repr here carries a URL. Errors are raised outside `except` blocks, so they do not even chain the
`requests` exception that holds one, and urllib3's debug log lines have the token masked.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import NamedTuple

import requests
import urllib3.exceptions

from connector.delivery.contract import CrmError, PermanentError, RateLimited, TransientError, UnexpectedAnswer

TEXT_LIMIT = 4096  # sendMessage: "Text of the message to be sent, 1-4096 characters after entities parsing"
ELLIPSIS = "…"
RATE_LIMIT_PAUSE = 1.0  # seconds after a 429 that names no wait (Telegram always names one: a guard only)
# A bot token is "<bot id>:<secret>" (https://core.telegram.org/bots/api#authorizing-your-bot).
TOKEN_IN_PATH = re.compile(r"/bot\d+:[^/\s]+")


class WrongToken(PermanentError):
    """Telegram does not know the bot's token (401 Unauthorized, or 404 Not Found for a malformed one):
    nothing can be sent until an admin enters the right one."""


class ChatRefused(PermanentError):
    """403: the person blocked the bot, the bot was removed from the group, or the user is deactivated.
    Nothing will reach this chat: the person's Telegram channel must be turned off."""

    def __init__(self, message: str, chat_id: int | str, **answer):
        super().__init__(message, **answer)
        self.chat_id = chat_id


class ChatNotFound(PermanentError):
    """400 "chat not found": a wrong chat id, or a person who never wrote to the bot (a bot cannot start a chat)."""

    def __init__(self, message: str, chat_id: int | str, **answer):
        super().__init__(message, **answer)
        self.chat_id = chat_id


class ChatMigrated(PermanentError):
    """400 with `migrate_to_chat_id`: the group became a supergroup, which has a new id; the old one is dead."""

    def __init__(self, message: str, chat_id: int | str, new_chat_id: int, **answer):
        super().__init__(message, **answer)
        self.chat_id = chat_id
        self.new_chat_id = new_chat_id


class WebhookSet(PermanentError):
    """409 on getUpdates: the bot has a webhook, and Telegram hands out updates one way only."""


@dataclass(frozen=True)
class BotInfo:
    id: int
    username: str


@dataclass(frozen=True)
class Update:
    """A private text message to the bot."""

    update_id: int
    chat_id: int
    text: str
    first_name: str


class Updates(NamedTuple):
    """One getUpdates answer. `messages` holds its private text messages only; `next_offset` counts every update
    of the answer (a sticker, a group message, an edit), so passing it to the next call confirms them all.
    With no update at all it is the offset asked with, unchanged."""

    messages: list[Update]
    next_offset: int | None


class Bot:
    def __init__(self, token: str, *, base_url: str = "https://api.telegram.org", timeout: float = 10.0,
                 session: requests.Session | None = None):
        self._token = token.strip()
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = session or requests.Session()

    def __repr__(self) -> str:
        # The part before ":" is the bot's public id; the rest is the secret.
        return f"Bot(id={self._token.partition(':')[0] or '?'}, base_url={self.base_url!r})"

    def get_me(self) -> BotInfo:
        """Who the token belongs to: the check an admin's "test" button makes (raises WrongToken when none)."""
        result = self._call("getMe", {})
        if not isinstance(result, dict) or not isinstance(result.get("id"), int):
            raise UnexpectedAnswer("Telegram getMe", "id")
        return BotInfo(result["id"], str(result.get("username") or ""))

    def send_message(self, chat_id: int | str, text: str, *, html: bool = True) -> int:
        """Send one message; its message_id. `html`: the text is Telegram's HTML (escape what is not markup with
        html.escape). A text over TEXT_LIMIT is cut and ends with "…"; link previews are off, so an alert's
        links stay plain lines. Raises the errors of the module's docstring."""
        payload: dict = {"chat_id": chat_id, "text": cut(text, html=html),
                         # sendMessage, link_preview_options: LinkPreviewOptions.is_disabled
                         "link_preview_options": {"is_disabled": True}}
        if html:
            payload["parse_mode"] = "HTML"  # Formatting options, "HTML style"
        result = self._call("sendMessage", payload, chat_id=chat_id)
        if not isinstance(result, dict) or not isinstance(result.get("message_id"), int):
            raise UnexpectedAnswer("Telegram sendMessage", "message_id")
        return result["message_id"]

    def get_updates(self, offset: int | None = None, *, timeout: int = 0, limit: int = 100) -> Updates:
        """The private text messages people sent the bot since `offset` (e.g. "/start", to learn their chat id),
        and the offset to ask with next (see `Updates`). `timeout`: seconds Telegram may hold the request open
        until something arrives (long polling). Raises WebhookSet when the bot has a webhook."""
        payload: dict = {"timeout": timeout, "limit": limit,
                         # getUpdates, allowed_updates: only messages (a setting Telegram keeps for later calls too)
                         "allowed_updates": ["message"]}
        if offset is not None:
            payload["offset"] = offset
        result = self._call("getUpdates", payload, wait=timeout)
        if not isinstance(result, list):
            raise UnexpectedAnswer("Telegram getUpdates", "result")
        messages, next_offset = [], offset
        for update in result:
            update_id = update.get("update_id") if isinstance(update, dict) else None
            if not isinstance(update_id, int):
                raise UnexpectedAnswer("Telegram getUpdates", "update_id")
            next_offset = max(next_offset or 0, update_id + 1)
            message = private_text(update)
            if message is not None:
                messages.append(message)
        return Updates(messages, next_offset)

    # --- the wire -------------------------------------------------------------------------------------------
    def _call(self, method: str, payload: dict, *, chat_id: int | str | None = None, wait: float = 0):
        """One request; the answer's `result`, or the error its answer (or its absence) means."""
        changes_something = method == "sendMessage"
        seconds = self.timeout + wait
        failure: CrmError | None = None
        try:
            response = self.http.post(f"{self.base_url}/bot{self._token}/{method}", json=payload, timeout=seconds)
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema,
                requests.exceptions.InvalidURL) as exc:
            # A settings mistake no retry mends (base_url "api.telegram.org" without https://, say).
            failure = PermanentError(f"Telegram {method}: the address {self.base_url!r} is not an http(s) URL "
                                     f"({type(exc).__name__})")
        except requests.RequestException as exc:
            # Words of our own, never str(exc): requests puts the URL, and so the token, in its messages.
            what = f"no answer in {seconds:g} s" if isinstance(exc, requests.Timeout) else "no connection"
            failure = TransientError(f"Telegram {method}: {what} ({type(exc).__name__})",
                                     maybe_applied=changes_something and not _never_sent(exc))
        if failure is not None:
            raise failure  # outside the except block: no chained requests exception holding the URL
        return _result(method, response, chat_id, maybe_applied=changes_something)


def _never_sent(exc: requests.RequestException) -> bool:
    """The request surely never reached Telegram: the connection itself failed (refused, no such host)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def _result(method: str, response: requests.Response, chat_id: int | str | None, *, maybe_applied: bool):
    status = response.status_code
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
        # Not the Bot API's answer: a proxy's page (502 Bad Gateway) or a cut body. A 200 may have been applied,
        # and a 504 is the proxy's "no answer came" (Telegram may have sent the message); other errors were not.
        raise TransientError(f"Telegram {method}: HTTP {status} with no Bot API answer",
                             maybe_applied=maybe_applied and (status < 400 or status == 504), status=status)
    if body["ok"]:
        return body.get("result")
    code = body.get("error_code") if isinstance(body.get("error_code"), int) else status
    description = str(body.get("description") or f"HTTP {status}")[:300]
    parameters = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    answer = {"status": status, "body": body}
    # ResponseParameters.retry_after: "the number of seconds left to wait before the request can be repeated"
    if code == 429:
        raise RateLimited(f"Telegram {method}: {description}", retry_after=_retry_after(parameters, description),
                          **answer)
    # Making requests: a failed answer has ok false and the error in description; 5xx is Telegram's own failure,
    # and an answer that says so did not apply the request.
    if code >= 500:
        raise TransientError(f"Telegram {method}: {description}", maybe_applied=False, **answer)
    # telegram-bot-api ClientManager.cpp: 401 "Unauthorized: invalid token specified"; api.telegram.org answers
    # an unknown token 401 "Unauthorized" and a malformed one 404 "Not Found" (eternnoir/pyTelegramBotAPI#817).
    if code in (401, 404):
        raise WrongToken(f"Telegram refused the bot token ({description}): enter the token @BotFather gave",
                         **answer)
    # telegram-bot-api Client.cpp: 403 "Forbidden: bot was blocked by the user", "...user is deactivated",
    # "...bot was kicked from the group chat": nothing will reach this chat again.
    if code == 403:
        raise ChatRefused(f"Telegram will not deliver to chat {chat_id}: {description}", chat_id, **answer)
    # ResponseParameters.migrate_to_chat_id: "The group has been migrated to a supergroup with the specified
    # identifier" (description "Bad Request: group chat was upgraded to a supergroup chat").
    if isinstance(parameters.get("migrate_to_chat_id"), int):
        new_id = parameters["migrate_to_chat_id"]
        raise ChatMigrated(f"the Telegram group {chat_id} became a supergroup with the new id {new_id}: "
                           f"use that id ({description})", chat_id, new_id, **answer)
    # telegram-bot-api Client.cpp: 400 "Bad Request: chat not found" (a bot cannot write first).
    if code == 400 and "chat not found" in description.lower():
        raise ChatNotFound(f"Telegram knows no chat {chat_id} for this bot: the person must write to the bot "
                           f"first ({description})", chat_id, **answer)
    # telegram-bot-api Client.cpp, getUpdates: 409 "Conflict: can't use getUpdates method while webhook is
    # active; use deleteWebhook to delete the webhook first".
    if code == 409 and "webhook" in description.lower():
        raise WebhookSet(f"Telegram hands this bot's messages to a webhook, so getUpdates cannot read them: "
                         f"delete the webhook (deleteWebhook) or use another bot ({description})", **answer)
    raise PermanentError(f"Telegram refused {method}: {description}", **answer)


def _retry_after(parameters: dict, description: str) -> float:
    seconds = parameters.get("retry_after")
    if isinstance(seconds, (int, float)) and seconds > 0:
        return float(seconds)
    said = re.search(r"retry after (\d+)", description)  # "Too Many Requests: retry after N"
    return float(said.group(1)) if said else RATE_LIMIT_PAUSE


def private_text(update: dict) -> Update | None:
    """The update as a private text message to the bot, or None (another kind of update, a group's message,
    a sticker or photo: Update's object, https://core.telegram.org/bots/api#update)."""
    message = update.get("message")
    if not isinstance(message, dict):
        return None
    chat, sender, text = message.get("chat"), message.get("from"), message.get("text")
    if not isinstance(chat, dict) or chat.get("type") != "private" or not isinstance(chat.get("id"), int) \
            or not isinstance(text, str):
        return None
    first_name = (sender if isinstance(sender, dict) else {}).get("first_name") or chat.get("first_name") or ""
    return Update(update["update_id"], chat["id"], text, str(first_name))


# --- cutting a long text -------------------------------------------------------------------------------------
TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)?[^<>]*>")


def _units(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units (an emoji outside the BMP is two)."""
    return len(text.encode("utf-16-le")) // 2


def cut(text: str, *, html: bool, limit: int = TEXT_LIMIT) -> str:
    """`text` as it fits in one message: unchanged when short enough, else cut and ended with "…". The count is
    of the text as sent (tags and entities included), which is never shorter than what Telegram counts. An HTML
    text is cut outside any tag or entity, and the tags still open are closed, so it still parses."""
    if _units(text) <= limit:
        return text
    keep = limit - 1
    while True:
        head = text[:keep]
        while _units(head) > limit - 1:  # surrogate pairs: drop whole characters until it fits
            head = head[:-1]
        if not html:
            return head + ELLIPSIS
        head = re.sub(r"<[^<>]*$", "", head)  # half a tag
        head = re.sub(r"&#?[a-zA-Z0-9]*$", "", head)  # half an entity (&amp; &#1234;)
        closing = "".join(f"</{name}>" for name in reversed(_open_tags(head)))
        candidate = head + ELLIPSIS + closing
        if _units(candidate) <= limit:
            return candidate
        keep = len(head) - (_units(candidate) - limit)


def _open_tags(html: str) -> list[str]:
    stack: list[str] = []
    for match in TAG.finditer(html):
        closing, name = match.group(1), (match.group(2) or "").lower()
        if not closing:
            stack.append(name)
        elif stack:
            stack.pop()  # Telegram's parser wants end tags in order; a well-formed text has them so
    return stack


# --- the token out of urllib3's debug log ("POST /bot<token>/sendMessage HTTP/1.1" 200) ------------------------
class _MaskTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and TOKEN_IN_PATH.search(record.msg):
            record.msg = TOKEN_IN_PATH.sub("/bot<token>", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(TOKEN_IN_PATH.sub("/bot<token>", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(type(f).__name__ == _MaskTokens.__name__ for f in _URLLIB3_LOG.filters):  # once, even on a re-import
    _URLLIB3_LOG.addFilter(_MaskTokens())
