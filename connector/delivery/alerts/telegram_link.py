"""Linking a person's Telegram chat without typing anything: the console makes a one-time code and shows the
bot's deep link (`https://t.me/<bot>?start=<code>`); opening it and pressing Start sends the bot `/start <code>`
(https://core.telegram.org/bots/features#deep-linking), which the linker reads from the bot's updates and ties
to the person. Only the code's SHA-256 is kept, for CODE_TTL; a used code is forgotten.

The linker reads updates with `getUpdates` (no public address needed, unlike a webhook), keeps the offset in
the database so a restart confirms what was read, and answers each /start in words. A wrong token or a webhook
set on the bot stops nothing else: the error is kept for the console and logged, and reading resumes when it is
fixed.
"""
from __future__ import annotations

import enum
import hashlib
import logging
import secrets
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core import alert_people
from connector.core.accounts import own_row
from connector.core.alerting import Channel
from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.models import Alert, AlertChannel, DeliveryJob, JobStatus, MessengerAccount
from connector.delivery import outbox
from connector.delivery.contract import CrmError, PermanentError

log = logging.getLogger(__name__)

ACCOUNT = Channel.TELEGRAM.value  # the bot's rows: `accounts.name`, `messenger_accounts.account`
CODE_TTL = timedelta(minutes=30)
START = "/start"


class LinkAnswer(enum.StrEnum):
    LINKED = "linked"
    UNKNOWN_CODE = "unknown_code"  # wrong, used or expired
    NO_CODE = "no_code"  # /start without one, or any other message


REPLIES = {
    LinkAnswer.LINKED: "Готово: оповещения о низких оценках будут приходить в этот чат. Отключить их можно в консоли, "
                       "в разделе «Оповещения».",
    LinkAnswer.UNKNOWN_CODE: "Ссылка устарела или уже использована. Откройте в консоли «Оповещения» и нажмите "
                             "«Подключить Telegram» ещё раз.",
    LinkAnswer.NO_CODE: "Этот бот присылает оповещения о звонках. Чтобы подключить его, откройте в консоли "
                        "«Оповещения» и нажмите «Подключить Telegram».",
}


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def start_link(session: Session, user_id: int, now: datetime | None = None) -> str:
    """A new one-time code for the person (an earlier one stops working)."""
    now = now or datetime.now(timezone.utc)
    code = secrets.token_urlsafe(12)  # 16 characters of A-Z a-z 0-9 _ -: what a deep link's start parameter allows
    row = alert_people.channel_row(session, user_id, Channel.TELEGRAM, lock=True)
    row.link_code_hash, row.link_code_until = _hash(code), now + CODE_TTL
    return code


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={code}"


def apply_message(session: Session, chat_id: int, text: str, now: datetime) -> LinkAnswer:
    """A person's message to the bot: `/start <code>` links their chat to whoever made the code."""
    command, _, code = text.strip().partition(" ")
    if command.split("@")[0] != START or not code.strip():
        return LinkAnswer.NO_CODE
    row = session.scalars(select(AlertChannel).where(AlertChannel.link_code_hash == _hash(code.strip()))
                          .with_for_update()).one_or_none()
    if row is None or row.link_code_until is None or row.link_code_until <= now:
        return LinkAnswer.UNKNOWN_CODE
    row.address, row.refused, row.enabled = str(chat_id), None, True
    row.link_code_hash = row.link_code_until = None
    missed = resend_missed(session, row.user_id, now)
    log.info("user %s linked a Telegram chat; %d missed alert(s) sent again", row.user_id, missed)
    return LinkAnswer.LINKED


MISSED_WITHIN = timedelta(days=1)


def resend_missed(session: Session, user_id: int, now: datetime) -> int:
    """The person's Telegram alerts of the last day that their chat refused (a blocked bot, a chat gone) go
    again once they link a chat: what they missed arrives without anyone replaying it by hand."""
    keys = {key for key, in session.execute(select(Alert.job_key).where(
        Alert.user_id == user_id, Alert.channel == ACCOUNT, Alert.job_key.is_not(None),
        Alert.created_at >= now - MISSED_WITHIN).distinct())}
    if not keys:
        return 0
    dead = session.scalars(select(DeliveryJob.id).where(DeliveryJob.crm == ACCOUNT, DeliveryJob.key.in_(keys),
                                                         DeliveryJob.status == JobStatus.DEAD)).all()
    for job_id in dead:
        outbox.replay(session, job_id)
    return len(dead)


def bot_state(session: Session) -> MessengerAccount | None:
    return session.get(MessengerAccount, ACCOUNT)


class TelegramLinker:
    """Reads the bot's updates and links chats; learns the bot's name first (the console's deep link needs it)."""

    def __init__(self, db: Database, bot_in_force, *, poll_seconds: float = 2.0,
                 clock=lambda: datetime.now(timezone.utc)):
        """`bot_in_force()`: the bot of the token in force, None while there is none (the linker idles)."""
        self.db, self.bot_in_force, self.poll_seconds, self.clock = db, bot_in_force, poll_seconds, clock

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("telegram links", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        self.bot = self.bot_in_force()
        if self.bot is None:
            return 0
        with self.db.transaction() as s:
            state = own_row(s, MessengerAccount, ACCOUNT, updates_offset=0)
            offset, known = state.updates_offset or None, state.bot_username
        try:
            if known is None:
                self._remember_name()
            updates = self.bot.get_updates(offset)
        except CrmError as exc:
            self._failed(exc)
            if isinstance(exc, PermanentError):
                return 0
            raise
        answers = []
        with self.db.transaction() as s:
            now = self.clock()
            for message in updates.messages:
                answers.append((message.chat_id, apply_message(s, message.chat_id, message.text, now)))
            state = own_row(s, MessengerAccount, ACCOUNT, lock=True, updates_offset=0)
            if updates.next_offset is not None:
                state.updates_offset = updates.next_offset
            state.last_error, state.checked_at = None, now
        for chat_id, answer in answers:  # after the commit: a reply never claims a link that was not stored
            try:
                self.bot.send_message(chat_id, REPLIES[answer], html=False)
            except CrmError as exc:
                log.warning("telegram: could not answer a chat: %s", exc.message)
        return len(updates.messages)

    def _remember_name(self) -> None:
        me = self.bot.get_me()
        with self.db.transaction() as s:
            own_row(s, MessengerAccount, ACCOUNT, lock=True, updates_offset=0).bot_username = me.username

    def _failed(self, exc: CrmError) -> None:
        log.warning("telegram: reading the bot's updates failed: %s", exc.message)
        with self.db.transaction() as s:
            state = own_row(s, MessengerAccount, ACCOUNT, lock=True, updates_offset=0)
            state.last_error, state.checked_at = exc.message[:255], self.clock()
