"""The outbox targets that send alerts and digests, one per channel (`email`, `telegram`): claimed, retried,
dead-lettered and replayed as any target's jobs. A job's message is made when it is claimed, from its alerts
(`alerts.job_key`): one alert, or a digest of several.

A try that may have reached the server (no answer) is sent again: neither SMTP nor the Bot API can be asked
whether a message arrived. An e-mail keeps one Message-ID across tries, so a mail system that saw it drops
the repeat. A person who muted or turned the channel off since the alert was made gets nothing (the job is
done, its result says why). A recipient's address that refuses messages (a chat that blocked the bot) is
dead with the reason and turns the person's channel off (`on_refused`); the console shows it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core import alert_people
from connector.core.alerting import Channel, Trigger, open_channels
from connector.core.calls import masked_phone
from connector.core.models import (Alert, Call, DeliveryJob, Notification, NotificationKind, Operator, Score,
                                   ScoreSource)
from connector.core.policy import Policy, ScoreStatus
from connector.core.time_zone import zone_in_force
from connector.delivery.contract import Dead, Done, Outcome, PermanentError, Refused, TransientError, Unmatched
from connector.delivery.outbox import Delivery, Work
from connector.delivery.alerts.messages import AlertView, Message, alert_message, digest_message
from connector.delivery.alerts.planning import ALERT


class AddressRefused(PermanentError):
    """The recipient's address refuses messages for good (a chat that blocked the bot, or no longer exists)."""


Send = Callable[[str, Message, str], None]  # (address, message, a Message-ID stable across tries)


@dataclass(frozen=True)
class AlertWork:
    """The target's own per-job values (`Work.scratch`)."""

    user_id: int | None
    address: str | None
    message: Message | None
    message_id: str = ""
    skip: str | None = None  # why nothing is sent (the person muted the channel since)


def call_url(public_base_url: str, entry_id: str) -> str:
    return f"{public_base_url.rstrip('/')}/calls/{entry_id}"


def views(session: Session, alerts: list[Alert], policy: Policy, zone, public_base_url: str) -> list[AlertView]:
    """The alerts as messages show them, oldest first: three queries whatever their number."""
    ids = {a.call_row for a in alerts}
    calls = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_(ids)))}
    extensions = {c.operator_extension for c in calls.values() if c.operator_extension}
    names = {ext: name for ext, name in session.execute(
        select(Operator.extension, Operator.name).where(Operator.extension.in_(extensions)))} if extensions else {}
    comments: dict[tuple[int, str], str] = {}
    for call_row, source, comment in session.execute(
            select(Score.call_id, Score.source, Score.comment).where(
                Score.call_id.in_(ids), Score.status == ScoreStatus.ACCEPTED, Score.comment.is_not(None))
            .order_by(Score.id.desc())).tuples():
        comments.setdefault((call_row, source), comment)
    found = []
    for alert in sorted(alerts, key=lambda a: a.id):
        call = calls[alert.call_row]
        trigger = Trigger(alert.trigger)
        source = ScoreSource.CUSTOMER if trigger == Trigger.LOW_SCORE else ScoreSource.SUPERVISOR
        ext = call.operator_extension
        operator = f"{names[ext]} ({ext})" if names.get(ext) else ext
        moment = call.created_at or call.ended_at
        found.append(AlertView(trigger, call_url(public_base_url, call.entry_id),
                               moment.astimezone(zone) if moment else None, operator, call.line_number,
                               masked_phone(call.customer_phone) if call.customer_phone else "",
                               call.customer_score, call.supervisor_score, policy.scale_max,
                               comments.get((call.id, source.value))))
    return found


class AlertTarget:
    """Sends a channel's alert and digest jobs through `send`."""

    recording_kinds: tuple[str, ...] = ()

    def __init__(self, channel: Channel, send: Send, *, public_base_url: str, default_zone: str,
                 clock=lambda: datetime.now(timezone.utc)):
        self.channel, self.name, self.send = channel, channel.value, send
        self.public_base_url, self.default_zone, self.clock = public_base_url, default_zone, clock

    def batch_size(self, kind: str) -> int:
        return 1  # one message per request

    def probe(self) -> None:
        """Never paused: a wrong server or token fails each job visibly, and a replay sends them."""

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        zone = zone_in_force(session, self.default_zone).zone
        people = alert_people.people(session)
        now = self.clock()
        for job, _d, work in claimed:
            alerts = list(session.scalars(select(Alert).where(Alert.job_key == job.key, Alert.channel == self.name)))
            if not alerts:
                work.scratch = AlertWork(None, None, None, skip="no alert carries this message")
                continue
            user_id = alerts[0].user_id
            person = people.get(user_id)
            address = alert_people.address(session, user_id, self.channel)
            if person is None or address is None or self.channel not in open_channels(person, now):
                work.scratch = AlertWork(user_id, None, None, skip="the person turned the channel off or muted it")
                continue
            shown = views(session, alerts, policy, zone, self.public_base_url)
            message = alert_message(shown) if job.kind == ALERT else digest_message(shown)
            digest = hashlib.sha256(f"{self.name}:{job.key}".encode()).hexdigest()[:32]
            work.scratch = AlertWork(user_id, address, message, f"<alert-{digest}@connector>")

    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        return [self._one(w.scratch) for w in work]

    def _one(self, job: AlertWork) -> Outcome:
        if job.skip is not None:
            return Done(details={"skipped": job.skip})
        try:
            self.send(job.address, job.message, job.message_id)
        except AddressRefused as exc:
            return Refused(exc.message)
        except PermanentError as exc:
            return Dead(exc.message)
        except TransientError as exc:
            return exc
        return Done(details={"sent": True})

    # --- the queue's effects -----------------------------------------------------------------
    def on_done(self, session: Session, job: DeliveryJob, work: Work, result: Done, now: datetime,
                delivery: Delivery) -> None:
        """Nothing to keep beside the job: its result says whether it went or why not."""

    def on_refused(self, session: Session, job: DeliveryJob, outcome: Refused, now: datetime) -> None:
        """The person's channel goes off with the reason, and the console tells them (a notification on the
        call whose alert did not reach them), so they link it again."""
        user_id = session.scalar(select(Alert.user_id).where(Alert.job_key == job.key, Alert.channel == self.name)
                                 .limit(1))
        if user_id is not None:
            alert_people.refuse(session, user_id, self.channel, outcome.reason)
            session.add(Notification(user_id=user_id, call_id=job.call_id, kind=NotificationKind.ALERT_REFUSED,
                                     read=False))

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     delivery: Delivery) -> None:
        raise TypeError("an alert has no entity to match")  # never reported by this target


def email_sender(mail_in_force: Callable[[], object]) -> Send:
    """Sends through the SMTP server in force (`mail_in_force()`: its MailSettings, None when none is set up)."""
    from connector.delivery.mail import Mail, Mailer

    def send(address: str, message: Message, message_id: str) -> None:
        settings = mail_in_force()
        if settings is None:
            raise PermanentError("no mail server is set up: an admin sets it on the alerts page (or SMTP_HOST)")
        Mailer(settings).send(Mail(address, message.subject, message.text, message.html, message_id))
    return send


def telegram_sender(bot_in_force: Callable[[], object]) -> Send:
    """Sends through the bot in force (`bot_in_force()`: a `connector.delivery.telegram.Bot`, None when no token
    is set); a chat that blocked it or is gone refuses."""
    from connector.delivery.telegram import ChatNotFound, ChatRefused

    def send(address: str, message: Message, message_id: str) -> None:
        bot = bot_in_force()
        if bot is None:
            raise PermanentError("no Telegram bot is set up: an admin saves its token on the alerts page")
        try:
            bot.send_message(address, message.telegram)
        except (ChatRefused, ChatNotFound) as exc:
            raise AddressRefused(f"Telegram: {exc.message}") from None
    return send
