"""The PBX poll queue and its worker: ask the PBX's quality control about calls, on schedule.

The queue (`claim`, `reschedule`) owns the rows; `QualityPoller` only loops: claim a batch,
ask the PBX outside any transaction, apply each answer in its own short transaction.
This is ingestion, so it runs whatever CRM is configured (also with CRM=none).

With `probe_unknown` (QUALITY_SOURCE=cc) every call is asked about, and a call the PBX has never
answered for is a "probing" question (it may be "not found", which counts towards the block).
Without it (the bulk scan runs beside it), only calls the scan showed the contact centre handled are
asked, and only until their survey settles: the scan picks up the supervisors' later marks.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from connector.core import lease
from connector.core.db import Database
from connector.core.loop import run_until_stopped, worker_id
from connector.core.models import Call, PbxPoll, PollStatus, SurveyState
from connector.delivery.outbox import lock_calls
from connector.inbound import quality
from connector.inbound.ingest import IngestContext
from connector.inbound.pbx import (PbxBusy, PbxCoolingDown, PbxError, PbxUnavailable, PbxWrongRequest, QualityControl,
                                   QualityReport)

log = logging.getLogger(__name__)


def _now() -> datetime:
    return datetime.now(timezone.utc)


# --- the queue -------------------------------------------------------------------------

def claim(session: Session, owner: str, *, limit: int, lease_seconds: float, skip_locked: bool,
          contact_center_only: bool = False) -> list[PbxPoll]:
    now = _now()
    due = select(PbxPoll).where(PbxPoll.status == PollStatus.PENDING, PbxPoll.not_before <= now,
                                lease.free(PbxPoll, now))
    if contact_center_only:
        due = due.where(or_(PbxPoll.contact_center.is_(True), PbxPoll.found.is_(True)))
    return lease.claim(session, due.order_by(PbxPoll.not_before, PbxPoll.id).limit(limit), owner, now, lease_seconds,
                       skip_locked=skip_locked)


def reschedule(poll: PbxPoll, when: datetime | None, error: str | None = None) -> None:
    """Hand the poll back: due again at `when`, or done when None."""
    lease.release(poll)
    poll.last_error = error
    if when is None:
        poll.status = PollStatus.DONE
    else:
        poll.not_before = when


@dataclass(frozen=True)
class Claimed:
    poll_id: int
    call_row: int  # the call's database row; `entry_id` is the PBX's id
    entry_id: str
    found: bool


# --- the worker ------------------------------------------------------------------------

class QualityPoller:
    def __init__(self, db: Database, api: QualityControl, ctx: IngestContext, *, survey_wait_seconds: int,
                 probe_unknown: bool = True, batch: int = 20, lease_seconds: float = 120.0,
                 poll_seconds: float = 1.0, owner: str | None = None):
        self.db, self.api, self.ctx = db, api, ctx
        self.survey_wait = timedelta(seconds=survey_wait_seconds)
        self.probe_unknown = probe_unknown
        self.rechecks = quality.SUPERVISOR_RECHECKS if probe_unknown else ()
        self.batch, self.lease_seconds, self.poll_seconds = batch, lease_seconds, poll_seconds
        self.owner = owner or worker_id()

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(f"quality poller {self.owner}", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Ask about one batch of due calls; returns how many were claimed."""
        with self.db.transaction() as s:
            claimed = [Claimed(p.id, p.call_id, p.call.entry_id, p.found)
                       for p in claim(s, self.owner, limit=self.batch, lease_seconds=self.lease_seconds,
                                      skip_locked=self.db.is_postgres, contact_center_only=not self.probe_unknown)]
        for index, item in enumerate(claimed):
            try:
                report = self.api.call_quality(item.entry_id, probing=not item.found)
                self._questions(report)
            except (PbxCoolingDown, PbxBusy) as exc:
                # Only this call's question may fail, or only this request was over the rate: it waits
                # alone (a rate limit briefly holds the shared slot for the others).
                self._later([item.poll_id], exc)
                continue
            except PbxUnavailable as exc:
                # Blocked or overloaded: this call and the rest of the batch wait.
                self._later([c.poll_id for c in claimed[index:]], exc)
                break
            except PbxError as exc:
                self._miss(item, exc)
                continue
            try:
                self._apply(item, report)
            except (StatementError, OverflowError) as exc:
                if isinstance(exc, OperationalError):
                    raise  # the database is down: the lease brings the poll back
                # An answer the database refuses would come back forever: give up on this call.
                self._give_up(item, f"the PBX's answer could not be stored ({type(exc).__name__})")
        return len(claimed)

    def _questions(self, report: QualityReport) -> None:
        with self.db.transaction() as s:
            wanted = quality.unknown_questions(s, report)
        found, missing = [], []
        for question_id in wanted:  # the PBX sent these ids itself: asking cannot be a wrong request
            try:
                found.append(self.api.quality_question(question_id))
            except PbxWrongRequest:
                missing.append(question_id)
        if found or missing:
            with self.db.transaction() as s:
                quality.cache_questions(s, found, missing)

    def _apply(self, item: Claimed, report: QualityReport) -> None:
        with self.db.transaction() as s:
            lock_calls(s, [item.call_row])
            poll, call = s.get(PbxPoll, item.poll_id), s.get(Call, item.call_row)
            if not lease.holds(poll, self.owner):
                return  # the lease ran out and another worker took it
            now = _now()
            quality.apply_report(s, self.ctx, call, report, now=now, survey_wait=self.survey_wait)
            poll.found, poll.polls = True, poll.polls + 1
            ended = call.ended_at or call.summary_received_at or now
            settled = call.survey != SurveyState.PENDING
            reschedule(poll, quality.next_poll_at(ended_at=ended, now=now, survey_wait=self.survey_wait,
                                                  settled=settled, rechecks=self.rechecks))

    def _miss(self, item: Claimed, exc: PbxError) -> None:
        """The PBX refused the question (e.g. 3300: the call is not in the Contact Center's history)."""
        with self.db.transaction() as s:
            lock_calls(s, [item.call_row])
            poll, call = s.get(PbxPoll, item.poll_id), s.get(Call, item.call_row)
            if not lease.holds(poll, self.owner):
                return
            poll.misses += 1
            if poll.misses >= quality.MAX_MISSES:
                log.warning("call %s: the PBX's quality control does not know it (%s); not asked again",
                            item.entry_id, exc.message)
                if call.survey == SurveyState.PENDING:
                    call.survey = None  # nothing is known of a survey
                reschedule(poll, None, exc.message)
            else:
                reschedule(poll, _now() + quality.MISS_RETRY, exc.message)

    def _give_up(self, item: Claimed, reason: str) -> None:
        log.error("call %s: %s; not asked again", item.entry_id, reason)
        with self.db.transaction() as s:
            poll = s.get(PbxPoll, item.poll_id)
            if lease.holds(poll, self.owner):
                reschedule(poll, None, reason)

    def _later(self, poll_ids: list[int], exc: PbxUnavailable) -> None:
        level = logging.INFO if isinstance(exc, (PbxCoolingDown, PbxBusy)) else logging.WARNING
        log.log(level, "PBX quality control: %s; %d call(s) wait until %s UTC", exc.message, len(poll_ids),
                    exc.retry_at.strftime("%H:%M:%S"))
        with self.db.transaction() as s:
            for poll in s.scalars(select(PbxPoll).where(PbxPoll.id.in_(poll_ids))):
                if lease.holds(poll, self.owner):
                    reschedule(poll, exc.retry_at, exc.message)
