"""The rating requests' planner: a request for each call that qualifies, and each due one handed to the
outbox as an SMS job (`sms.SmsTarget` sends it).

A request is made once per call (`rating_requests.call_row` is unique), as soon as the call qualifies, due
`delay_minutes` after it ended and moved into the sending hours (`rules.send_time`). When it comes due, it is
checked again: the channel or the line off, the customer rated meanwhile, the number on the do-not-contact
list or over the daily cap, no extension to send from, or a link that would expire before it is read: each
ends it as skipped with that reason. A call is considered until LOOKBACK after its delay: one that waited
longer (the worker was down for a day) is not asked about so late, nor is one that ended before the channel was
turned on (an admin turning it on never texts yesterday's customers).

Queueing runs under the channel's account row lock, so two processes never queue two requests to one number
past the daily cap. Locks: the call first, then its request, as the outbox takes them.
"""
from __future__ import annotations

import logging
import secrets
import threading
from datetime import datetime, time, timedelta, timezone

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from connector.core.accounts import account_row
from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.models import (Call, CrmRecord, DeliveryStatus, RatingRequest, RequestReason, RequestStatus,
                                   SurveyState)
from connector.core.policy import Policy
from connector.core.runtime_settings import current_policies
from connector.core.time_zone import zone_in_force
from connector.delivery import outbox
from connector.inbound.link import contacts, settings as link_settings
from connector.inbound.link.rules import (EXTERNAL, CallFacts, expires_at, mobile_number, qualifies, send_time,
                                          token_for, token_hash)
from connector.inbound.link.settings import LinkSettings
from connector.inbound.link.sms import CHANNEL, JobKind

log = logging.getLogger(__name__)

LOOKBACK = timedelta(hours=24)
BATCH = 200


def facts(call: Call) -> CallFacts:
    return CallFacts(call.direction, call.talk_seconds, call.customer_phone, call.survey, call.customer_score,
                     call.ended_at)


class RatingPlanner:
    def __init__(self, db: Database, *, secret_key: str, initial_policy: Policy, default_zone: str,
                 poll_seconds: float = 30.0, clock=lambda: datetime.now(timezone.utc)):
        self.db, self.secret_key, self.initial_policy = db, secret_key, initial_policy
        self.default_zone, self.poll_seconds, self.clock = default_zone, poll_seconds, clock

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("rating requests", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Make the requests of the calls that now qualify, and queue the due ones; how many it touched."""
        with self.db.reading() as s:
            settings, _ = link_settings.read(s)
        if not settings.on_anywhere:
            return 0
        with self.db.transaction() as s:
            made = self.make_requests(s, settings)
        with self.db.transaction() as s:
            queued = self.queue_due(s, settings)
        return made + queued

    # --- making ------------------------------------------------------------------------------
    def make_requests(self, session: Session, settings: LinkSettings) -> int:
        now = self.clock()
        zone = zone_in_force(session, self.default_zone).zone
        delay = timedelta(minutes=settings.delay_minutes)
        oldest = now - delay - LOOKBACK
        turned_on = link_settings.on_since(session)
        if turned_on is not None:
            oldest = max(oldest, turned_on)  # a call that ended before the channel was turned on is not asked
        calls = session.scalars(self._candidates(settings, oldest, now)).all()
        made = 0
        for call in calls:
            line = settings.for_line(call.line_number)
            if not (line.enabled and qualifies(facts(call), line)):
                continue  # the query and the rules disagree only on odd numbers: left alone
            due = send_time(call.ended_at + delay, zone, line)
            request = RatingRequest(call_row=call.id, number=mobile_number(call.customer_phone),
                                    line_number=call.line_number, status=RequestStatus.SCHEDULED, due_at=due,
                                    expires_at=due + timedelta(days=line.valid_days))
            try:
                with session.begin_nested():  # another process may make it first: the unique call_row says so
                    session.add(request)
            except IntegrityError:
                continue
            made += 1
        return made

    @staticmethod
    def _candidates(settings: LinkSettings, oldest: datetime, now: datetime):
        """The calls that may qualify and have no request: the rules' cheap parts in SQL (an answered
        external call with a Russian mobile number, no score unless a second opinion is asked, the line on)."""
        query = (select(Call).outerjoin(RatingRequest, RatingRequest.call_row == Call.id)
                 .where(RatingRequest.id.is_(None), Call.ended_at >= oldest, Call.ended_at <= now,
                        Call.direction.in_(EXTERNAL), Call.talk_seconds > 0, func.length(Call.customer_phone) == 11,
                        or_(Call.customer_phone.like("79%"), Call.customer_phone.like("89%")))
                 .order_by(Call.ended_at, Call.id).limit(BATCH))
        if not settings.also_scored:
            query = query.where(Call.customer_score.is_(None),
                                or_(Call.survey.is_(None), Call.survey != SurveyState.ANSWERED))
        off = [line for line, o in settings.lines.items() if not o["enabled"]]
        on = [line for line, o in settings.lines.items() if o["enabled"]]
        if settings.enabled:
            query = query.where(or_(Call.line_number.is_(None), Call.line_number.not_in(off))) if off else query
        else:
            query = query.where(Call.line_number.in_(on))
        return query

    # --- queueing ------------------------------------------------------------------------------
    def queue_due(self, session: Session, settings: LinkSettings) -> int:
        now = self.clock()
        account_row(session, CHANNEL, lock=True)  # one queueing process at a time: the daily cap holds
        due = session.execute(select(RatingRequest.id, RatingRequest.call_row)
                              .where(RatingRequest.status == RequestStatus.SCHEDULED, RatingRequest.due_at <= now)
                              .order_by(RatingRequest.due_at, RatingRequest.id).limit(BATCH)).all()
        if not due:
            return 0
        outbox.lock_calls(session, [call_row for _, call_row in due])
        calls = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_([c for _, c in due])))}
        requests = session.scalars(select(RatingRequest).where(RatingRequest.id.in_([i for i, _ in due]))
                                   .order_by(RatingRequest.due_at, RatingRequest.id).with_for_update()).all()
        policies = current_policies(session, self.initial_policy)
        zone = zone_in_force(session, self.default_zone).zone
        day_start = datetime.combine(now.astimezone(zone).date(), time(0), zone)
        for request in requests:
            if request.status != RequestStatus.SCHEDULED:
                continue
            call = calls[request.call_row]
            line, policy = settings.for_line(call.line_number), policies.for_line(call.line_number)
            reason = self._reason_to_skip(session, request, call, line, day_start)
            if reason is not None:
                request.status, request.reason = RequestStatus.SKIPPED, reason
                continue
            if send_time(now, zone, line) > now:  # due while the worker was down, and now it is night
                request.due_at = send_time(now, zone, line)
                continue
            until = expires_at(now, call.ended_at, line, policy)
            if until <= now + timedelta(hours=1):
                request.status, request.reason = RequestStatus.SKIPPED, RequestReason.TOO_LATE
                continue
            self._queue(session, request, call, line, until, now)
            session.flush()  # the next request to this number counts this one against the cap
        return len(requests)

    def _reason_to_skip(self, session: Session, request: RatingRequest, call: Call, line: LinkSettings,
                        day_start: datetime) -> RequestReason | None:
        if not line.enabled:
            return RequestReason.CHANNEL_OFF
        if not qualifies(facts(call), line):
            return RequestReason.SCORED
        if contacts.is_listed(session, request.number):
            return RequestReason.DO_NOT_CONTACT
        today = session.scalar(select(func.count()).select_from(RatingRequest).where(
            RatingRequest.number == request.number, RatingRequest.queued_at >= day_start))
        if today >= line.daily_cap:
            return RequestReason.DAILY_CAP
        if not (call.operator_extension or line.from_extension):
            return RequestReason.NO_EXTENSION
        return None

    def _queue(self, session: Session, request: RatingRequest, call: Call, line: LinkSettings, until: datetime,
               now: datetime) -> None:
        request.status, request.queued_at, request.expires_at = RequestStatus.QUEUED, now, until
        request.scale = line.scale  # the page asks on it, whatever the setting later
        request.from_extension = call.operator_extension or line.from_extension
        # Ours on the PBX's reports; a random part keeps two deployments on one account apart.
        request.command_id = f"rating-{request.id}-{secrets.token_hex(4)}"
        request.token_hash = token_hash(token_for(self.secret_key, request.id))
        record = session.scalars(select(CrmRecord).where(CrmRecord.call_id == call.id,
                                                         CrmRecord.crm == CHANNEL)).one_or_none()
        if record is None:
            session.add(CrmRecord(call=call, crm=CHANNEL, status=DeliveryStatus.PENDING, attempts=0))
            session.flush()
        delivery = outbox.load(session, CHANNEL, [call.id])[call.id]
        outbox.add_job(session, delivery, CHANNEL, JobKind.RATING_REQUEST)
        outbox.refresh_record(delivery)
        log.info("rating request %s for call %s queued", request.id, call.entry_id)
