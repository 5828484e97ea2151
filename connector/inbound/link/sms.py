"""The rating requests' SMS: an outbox target that sends each through the PBX's SMS command, and the PBX's
later reports of it (`result/sms`: sent or not; `events/sms`: delivered or not), tied by our `command_id`.

It is a target like a CRM for the queue (claims with a lease, retries on the outbox's schedule, a dead letter
that can be replayed, the deliveries metric), under the name `sms`; its record of a call (`crm_records`)
says where the SMS is, and the request (`rating_requests`) says it in the channel's own words.

Exactly once: the command carries the request's `command_id`, and the same text and link on every try. A try
that may have reached the PBX (no answer) is sent again only when no report of it came within IN_DOUBT_WAIT.
A refusal (3xxx) or a failure the PBX reports ends the request as failed, with the reason: never sent again
blind. The PBX's 2-minute block after a wrong request is kept by sending each command as one that may fail
(one in flight across every process, none in the 2 minutes after a strike).
"""
from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core.models import (SMS_CHANNEL, Call, DeliveryJob, Operator, RatingRequest, RequestReason,
                                   RequestStatus)
from connector.core.policy import Policy
from connector.core.time_zone import zone_in_force
from connector.delivery.contract import Done, Outcome, TransientError, Unmatched
from connector.delivery.outbox import Delivery, Work
from connector.inbound.link import settings as link_settings
from connector.inbound.link.rules import failure_reason, token_for
from connector.inbound.link.settings import LINK_PATH, OPERATOR_SHOWN, sms_limit
from connector.inbound.pbx import (PbxBlocked, PbxBusy, PbxCoolingDown, PbxError, PbxUnavailable, PbxWrongRequest,
                                   SmsMessage, SmsReport)

log = logging.getLogger(__name__)

CHANNEL = SMS_CHANNEL  # the outbox target's name
IN_DOUBT_WAIT = timedelta(minutes=5)  # how long a report of a try that may have reached the PBX is awaited
# Statuses in the order a request moves through them; a late report never moves one back.
PROGRESS = (RequestStatus.QUEUED, RequestStatus.ACCEPTED, RequestStatus.SENT, RequestStatus.DELIVERED)


class JobKind(enum.StrEnum):
    RATING_REQUEST = "rating_request"  # one SMS with the link to rate a call


@dataclass(frozen=True)
class SmsWork:
    """The target's own per-job values (`Work.scratch`)."""

    request_id: int
    message: SmsMessage | None  # None: nothing to send (reported already, or waiting for a report)
    settled: bool = False  # an earlier try reached the PBX: its report came
    wait: float = 0.0  # seconds to wait for a report of an earlier try


def link_of(public_base_url: str, secret_key: str, request_id: int) -> str:
    return public_base_url.rstrip("/") + LINK_PATH + token_for(secret_key, request_id)


def render(template: str, link: str, operator: str | None, call_date: str) -> str:
    return template.format(link=link, operator=(operator or "")[:OPERATOR_SHOWN], date=call_date)


class SmsTarget:
    """Sends rating requests through `send` (the PBX's `send_sms`)."""

    name = CHANNEL
    recording_kinds: tuple[str, ...] = ()

    def __init__(self, send: Callable[[SmsMessage], None], *, secret_key: str, public_base_url: str,
                 default_zone: str, clock=lambda: datetime.now(timezone.utc)):
        self.send, self.secret_key, self.public_base_url = send, secret_key, public_base_url
        self.default_zone, self.clock = default_zone, clock

    def batch_size(self, kind: str) -> int:
        return 1  # one SMS per command

    def probe(self) -> None:
        """Never paused: the PBX's block and rate are kept by its guard, job by job."""

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        settings, _ = link_settings.read(session)
        zone = zone_in_force(session, self.default_zone).zone
        for _job, d, work in claimed:
            request = session.scalars(select(RatingRequest).where(RatingRequest.call_row == d.call.id)).one()
            if work.in_doubt_since is not None and request.status != RequestStatus.QUEUED:
                work.scratch = SmsWork(request.id, None, settled=True)  # the PBX's report of it came
                continue
            if work.in_doubt_since is not None and self.clock() - work.in_doubt_since < IN_DOUBT_WAIT:
                left = (work.in_doubt_since + IN_DOUBT_WAIT - self.clock()).total_seconds()
                work.scratch = SmsWork(request.id, None, wait=max(1.0, left))
                continue
            work.scratch = SmsWork(request.id, self._message(session, request, d.call, settings, zone))

    def _message(self, session: Session, request: RatingRequest, call: Call, settings, zone) -> SmsMessage:
        operator = session.get(Operator, call.operator_extension) if call.operator_extension else None
        moment = call.created_at or call.ended_at or request.created_at
        text = render(settings.template, link_of(self.public_base_url, self.secret_key, request.id),
                      operator.name if operator else None, moment.astimezone(zone).strftime("%d.%m.%Y"))
        return SmsMessage(request.command_id, request.from_extension, request.number, text,
                          settings.sms_sender or None)

    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        return [self._one(w.scratch) for w in work]

    def _one(self, job: SmsWork) -> Outcome:
        if job.settled:
            return Done(details={"reported": True})
        if job.message is None:
            return TransientError("waiting for the PBX's report of the earlier try", retry_after=job.wait)
        if len(job.message.text) > sms_limit(job.message.text):  # a template saved before a longer name
            return Done(details={"failed": RequestReason.TEXT_TOO_LONG.value,
                                 "detail": f"{len(job.message.text)} characters"})
        try:
            self.send(job.message)
        except PbxWrongRequest as exc:  # refused: the same request would be refused again
            return Done(details={"failed": failure_reason(exc.result or 3000).value, "detail": exc.message[:255]})
        except PbxUnavailable as exc:
            return self._not_now(exc)
        except PbxError as exc:
            return TransientError(exc.message, maybe_applied=True)
        return Done(details={"accepted": True})

    def _not_now(self, exc: PbxUnavailable) -> Outcome:
        if exc.result is not None and 2000 <= exc.result < 3000:  # billing: trying again later would not help
            return Done(details={"failed": RequestReason.BILLING.value, "detail": exc.message[:255]})
        # Held back before it was sent (the block, the 2 minutes after a strike, the rate), or answered
        # "later": not sent. No answer at all: the PBX may have taken it.
        answered = isinstance(exc, (PbxBlocked, PbxCoolingDown, PbxBusy)) or exc.result is not None \
            or exc.status is not None
        return TransientError(exc.message, retry_after=self._seconds_until(exc.retry_at), maybe_applied=not answered)

    def _seconds_until(self, moment: datetime) -> float:
        return max(0.0, (moment - self.clock()).total_seconds())

    # --- the queue's effects -----------------------------------------------------------------
    def on_done(self, session: Session, job: DeliveryJob, work: Work, result: Done, now: datetime,
                delivery: Delivery) -> None:
        request = session.get(RatingRequest, work.scratch.request_id, with_for_update=True)
        failed = result.details.get("failed")
        if failed and request.status in PROGRESS[:2]:
            request.status, request.reason = RequestStatus.FAILED, failed
            request.detail = str(result.details.get("detail") or "")[:255] or None
            log.warning("rating request %s not sent: %s", request.id, request.detail or failed)
        elif request.status == RequestStatus.QUEUED:
            request.status = RequestStatus.ACCEPTED

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     delivery: Delivery) -> None:
        raise TypeError("an SMS has no entity to match")  # never reported by this target

    def on_dead(self, session: Session, job: DeliveryJob, reason: str, now: datetime) -> None:
        """The outbox gave up (or an admin's replay will try again): the request says so meanwhile."""
        request = session.scalars(select(RatingRequest).where(RatingRequest.call_row == job.call_id)
                                  .with_for_update()).one_or_none()
        if request is not None and request.status in PROGRESS[:2]:
            request.status, request.reason, request.detail = RequestStatus.FAILED, RequestReason.GAVE_UP, reason[:255]


def apply_report(session: Session, report: SmsReport, now: datetime) -> bool:
    """The PBX's report of a request's SMS; False when it is not one of ours (another integration's command)."""
    request = session.scalars(select(RatingRequest).where(RatingRequest.command_id == report.command_id)
                              .with_for_update()).one_or_none()
    if request is None:
        return False
    if not report.succeeded:
        if request.status != RequestStatus.FAILED:
            request.status = RequestStatus.FAILED
            request.reason = failure_reason(report.code, carrier=report.delivery)
            request.detail = f"{'delivery report' if report.delivery else 'result'} {report.code}"
        return True
    if request.status == RequestStatus.FAILED and request.reason == RequestReason.GAVE_UP:
        request.status, request.reason, request.detail = RequestStatus.ACCEPTED, None, None  # it did go
    reached = RequestStatus.DELIVERED if report.delivery else RequestStatus.SENT
    if report.delivery:
        request.delivered_at = request.delivered_at or now
    request.sent_at = request.sent_at or now  # a delivery report proves it was sent
    if request.status in PROGRESS and PROGRESS.index(request.status) < PROGRESS.index(reached):
        request.status = reached
    return True
