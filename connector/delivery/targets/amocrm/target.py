"""amoCRM as a delivery target: which jobs a call needs there (`AmoCrmPlanning`), which items its jobs
become, how doubts are settled before a resend, and what a done job writes on the call's record. The
HTTP is `AmoCrm`'s; the queue's bookkeeping is `outbox.DeliveryQueue`'s; the loop is `DeliveryLoop`'s.

Jobs:
- `log_call`: POST the call (score text, recording link); due once the summary is in and a customer
  score is in, the survey is known to bring none (no answer, not offered), or SURVEY_WAIT_SECONDS have
  passed since the call ended;
- `contact`: create a contact for an unknown caller, then the call is logged again;
- `note`: a score that came after the call was logged (or AMOCRM_LOG_CALLS=false); keyed by score id;
- `tags`: bring the entity's low-score tag from the one last applied to the one of the score in force
  (add / remove), and write the score field. A tags job whose score was replaced before it was sent is
  dropped: the replacing score's own job carries the change;
- `task` (LOW_SCORE_TASK): a follow-up task on the entity for each tagged score, keyed by score id.

A score at or above the threshold that amoCRM ignores (the policy's `high_scores`, by default `ignore`) is
no score to write: the call is logged without score text, and no note, tag, field or task follows.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.core import follow_ups
from connector.core.accounts import SharedRateLimiter
from connector.delivery import outbox
from connector.delivery.contract import (DOUBT_MARGIN, CallItem, ContactItem, CrmAdapter, Dead, Done, NoteItem, PermanentError,
                           Superseded, TagItem, TaskItem, TransientError, Unmatched)
from connector.core.links import recording_link
from connector.core.models import DeliveryJob, JobStatus, Score
from connector.core.policy import HighScores, Policy
from connector.delivery.outbox import Outcome, Work
from connector.delivery.targets.amocrm.kinds import JobKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AmoCrmPlanning:
    """amoCRM's planning rules (see `plan`); `crm` names the target."""

    crm: str
    log_calls: bool = True
    survey_wait_seconds: int = 180
    score_field_id: int = 0
    low_score_task: bool = False
    # A score at or above the threshold, unless the policy says otherwise: ignored, as MANGO's own amoCRM
    # setting does (people moving from it expect its behaviour).
    high_scores: HighScores = HighScores.IGNORE

    @property
    def name(self) -> str:
        return self.crm

    def plan(self, session: Session, d: outbox.Delivery) -> None:
        plan(session, self, d)

    def on_replay(self, session: Session, job: DeliveryJob) -> None:
        """An unmatched call replayed may meet a contact created meanwhile, or need a new one: a failed
        contact creation is dropped, so that it can start again."""
        if job.kind != JobKind.LOG_CALL:
            return
        contact = session.scalars(select(DeliveryJob).where(DeliveryJob.call_id == job.call_id,
                                                            DeliveryJob.crm == job.crm,
                                                            DeliveryJob.kind == JobKind.CONTACT)).first()
        if contact is not None and contact.status in (JobStatus.DEAD, JobStatus.UNMATCHED):
            session.delete(contact)


def plan(session: Session, opts: AmoCrmPlanning, d: outbox.Delivery) -> None:
    """Create the jobs the call now needs. Safe to call after every change: keys make it idempotent."""
    call, record, score = d.call, d.record, d.score
    if call.summary_received_at is None or call.direction == "internal":
        return
    now = datetime.now(timezone.utc)
    if opts.log_calls:
        outbox.schedule_call(session, d, opts.crm, JobKind.LOG_CALL, opts.survey_wait_seconds, now)
        if record.logged_at is None:
            return  # the call is not in the CRM yet; what it carries is decided when it is sent

    if score is None or not score.record:  # no score, or the feature was off when it came
        return
    if outbox.written_score(score, opts.high_scores) is None:
        # A high score this target ignores: nothing about it goes in. Only a low-score tag that the score
        # it replaced left comes off, or QA staff would call back a customer who has since rated high.
        if record.applied_tag:
            outbox.add_job(session, d, opts.crm, JobKind.TAGS, str(score.id), score=score)
        elif not opts.log_calls:
            outbox.nothing_to_send(d, "score at or above the threshold: nothing written (high scores ignored)")
        return
    if record.written_score != score.value:
        outbox.add_job(session, d, opts.crm, JobKind.NOTE, str(score.id), score=score)
    elif score.tag != record.applied_tag or score.tag_to_remove or opts.score_field_id:
        outbox.add_job(session, d, opts.crm, JobKind.TAGS, str(score.id), score=score)
    if opts.low_score_task and score.tag and record.entity_id:  # once per tagged score, on its entity
        outbox.add_job(session, d, opts.crm, JobKind.TASK, str(score.id), score=score)


@dataclass(frozen=True)
class AmoCrmOptions:
    delivery: AmoCrmPlanning
    public_base_url: str
    secret_key: str
    create_contacts: bool = True
    task_hours: int = 24  # a low score's follow-up task is due this long after the score came
    task_template: str = "Перезвонить клиенту: оценка {score}"


@dataclass
class AmoWorkNotes:
    """What `prepare` and `deliver` note on one job for later steps (`Work.scratch`)."""

    phone: str | None = None  # a note's caller, to find the entity by when the record has none
    tag: str | None = None  # the low-score tag a tags job leaves on the entity
    entity: tuple[str, int] | None = None  # the entity a note found by phone: the record takes it
    superseded: bool = False  # a tags job whose score was replaced: the newer one's job carries the change


def _phone(number: str | None) -> str:
    digits = re.sub(r"\D", "", number or "")
    return f"+{digits}" if len(digits) >= 10 else (number or "")


class AmoCrmTarget:
    recording_kinds = ()  # notes carry the player's link; amoCRM never downloads the file

    def __init__(self, adapter: CrmAdapter, opts: AmoCrmOptions, limiter: SharedRateLimiter | None = None):
        self.adapter, self.opts, self.limiter = adapter, opts, limiter
        self.name = opts.delivery.crm
        self.max_batch = adapter.max_batch

    def batch_size(self, kind: str) -> int:
        return self.max_batch  # amoCRM takes up to 50 entities a request, whatever the kind

    def probe(self) -> None:
        self.adapter.probe()

    # --- items -----------------------------------------------------------------
    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, outbox.Delivery, Work]], policy: Policy,
                user_map: dict) -> None:
        score_ids = [job.score_id for job, _d, _w in claimed if job.score_id]
        scores = {sc.id: sc for sc in session.scalars(select(Score).where(Score.id.in_(score_ids)))} \
            if score_ids else {}
        for job, d, w in claimed:
            self._build(job, d, scores.get(job.score_id), w, policy, user_map)

    def _build(self, job: DeliveryJob, d: outbox.Delivery, job_score: Score | None, w: Work, policy: Policy,
               user_map: dict) -> None:
        call, record = d.call, d.record
        w.scratch = notes = AmoWorkNotes()
        user_id = user_map.get(call.operator_extension or "")
        w.responsible = (user_id, user_id is not None)
        phone = _phone(call.customer_phone)
        if job.kind == JobKind.LOG_CALL:
            score = outbox.written_score(d.score, self.opts.delivery.high_scores)
            text = policy.score_text(score.value) if score is not None else None
            w.score_value = score.value if text else None
            link = (recording_link(self.opts.public_base_url, self.opts.secret_key, call.entry_id)
                    if call.recording_id else None)
            w.item = CallItem(entry_id=call.entry_id, direction=call.direction or "inbound", phone=phone,
                              duration=call.talk_seconds or 0,
                              started_at=int(call.created_at.timestamp()) if call.created_at else None,
                              score_text=text, recording_link=link, responsible_user_id=user_id,
                              answered=call.talk_started_at is not None)
        elif job.kind == JobKind.CONTACT:
            w.item = ContactItem(phone=phone, name=phone, responsible_user_id=user_id)
        else:
            w.score_value = job_score.value if job_score else None
            entity_type, entity_id = record.entity_type or "", record.entity_id or 0
            if job.kind == JobKind.NOTE:
                w.item = NoteItem(entity_type, entity_id, policy.score_text(w.score_value),
                                  responsible_user_id=user_id)
                notes.phone = phone
            elif job.kind == JobKind.TASK:
                due = job_score.received_at + timedelta(hours=self.opts.task_hours) if job_score else job.created_at
                w.item = TaskItem(entity_type, entity_id, self.opts.task_template.format(score=w.score_value),
                                  complete_till=int(due.timestamp()), responsible_user_id=user_id)
            elif job_score is None or d.score is None or job_score.id != d.score.id:
                notes.superseded = True  # a newer score's own tags job carries the change
            else:
                written = outbox.written_score(job_score, self.opts.delivery.high_scores) is not None
                field_id = self.opts.delivery.score_field_id if written else 0
                new_tag = job_score.tag
                # Remove what we last applied (and what the policy says this score replaces).
                remove = {record.applied_tag, job_score.tag_to_remove} - {None, new_tag}
                notes.tag = new_tag
                w.item = TagItem(entity_type, entity_id, add=(new_tag,) if new_tag else (),
                                 remove=tuple(sorted(remove)),
                                 score_field=(field_id, w.score_value) if field_id else None)

    # --- sending -----------------------------------------------------------------
    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]:
        """One outcome per job, in order. Raises AccountBlocked: the whole account must pause."""
        outcomes: dict[int, Outcome] = {}
        for w in work:
            if w.scratch.superseded:
                outcomes[w.job_id] = Superseded("a newer score's tags job carries the change")
        ready = self._resolve_entities(kind, [w for w in work if w.job_id not in outcomes], outcomes)
        try:
            ready = self._settle_doubts(kind, ready, outcomes)
            results = self._send(kind, [w.item for w in ready]) if ready else []
        except TransientError as exc:
            if exc.retry_after and self.limiter:
                self.limiter.hold(exc.retry_after)  # every worker waits, not just this one
            results = [exc] * len(ready)
        except PermanentError as exc:
            results = [Dead(exc.message)] * len(ready)
        outcomes.update(zip((w.job_id for w in ready), results))
        return [outcomes[w.job_id] for w in work]

    def _settle_doubts(self, kind: str, work: list[Work], outcomes: dict[int, Outcome]) -> list[Work]:
        """Jobs whose earlier request may have reached the CRM are looked up, not re-sent."""
        doubtful = [w for w in work if w.in_doubt_since is not None]
        if not doubtful:
            return work
        since = int(min(w.in_doubt_since for w in doubtful).timestamp()) - DOUBT_MARGIN
        settled: dict[int, Done] = {}
        if kind == JobKind.LOG_CALL:
            found = self.adapter.find_logged_calls([w.entry_id for w in doubtful], since)
            settled = {w.job_id: found[w.entry_id] for w in doubtful if w.entry_id in found}
        elif kind == JobKind.CONTACT:
            for w in doubtful:
                hit = self.adapter.find_entity_by_phone(w.item.phone)
                if hit:
                    settled[w.job_id] = hit
        elif kind == JobKind.NOTE:
            for w in doubtful:
                if w.item.entity_id and self.adapter.find_note(w.item, since):
                    settled[w.job_id] = Done(w.item.entity_type, w.item.entity_id)
        elif kind == JobKind.TASK:
            for w in doubtful:
                task_id = self.adapter.find_task(w.item)
                if task_id:
                    settled[w.job_id] = Done(w.item.entity_type, w.item.entity_id, {"task_id": task_id,
                                                                                     "looked_up": True})
        elif kind == JobKind.TAGS:
            # Resending is harmless to the tags, but every add is one more "Теги добавлены" row in the
            # CRM's events list, the list QA staff count: look at the entity first.
            applied = self.adapter.tags_in_place([w.item for w in doubtful])
            settled = {w.job_id: Done(w.item.entity_type, w.item.entity_id)
                       for w, done in zip(doubtful, applied) if done}
        if settled:
            log.info("%d %s job(s) were already applied before a crash or timeout; not re-sent (calls %s)",
                     len(settled), kind, outbox.call_ids([w for w in work if w.job_id in settled]))
            outcomes.update(settled)
        return [w for w in work if w.job_id not in settled]

    def _resolve_entities(self, kind: str, work: list[Work], outcomes: dict[int, Outcome]) -> list[Work]:
        """A note with no known entity (AMOCRM_LOG_CALLS=false) first finds it by phone."""
        if kind != JobKind.NOTE:
            return work
        ready = []
        for w in work:
            if not w.item.entity_id:
                hit = self.adapter.find_entity_by_phone(w.scratch.phone)
                if hit is None:
                    outcomes[w.job_id] = Unmatched("no contact has this phone")
                    continue
                w.item = NoteItem(hit.entity_type, hit.entity_id, w.item.text, w.item.responsible_user_id)
                w.scratch.entity = (hit.entity_type, hit.entity_id)
            ready.append(w)
        return ready

    def _send(self, kind: str, items: list) -> list[Outcome]:
        send = {JobKind.LOG_CALL: self.adapter.log_calls, JobKind.CONTACT: self.adapter.create_contacts,
                JobKind.NOTE: self.adapter.add_notes, JobKind.TAGS: self.adapter.update_tags,
                JobKind.TASK: self.adapter.add_tasks}[kind]
        return send(items)

    # --- effects of outcomes ----------------------------------------------------
    def on_done(self, session: Session, job: DeliveryJob, w: Work, result: Done, now: datetime,
                d: outbox.Delivery) -> None:
        record = d.record
        if job.kind in (JobKind.LOG_CALL, JobKind.CONTACT) or (job.kind == JobKind.NOTE and w.scratch.entity):
            record.entity_type, record.entity_id = result.entity_type, result.entity_id
        if job.kind == JobKind.LOG_CALL:
            record.logged_at = now
            record.written_score = w.score_value
            record.responsible_user_id, record.responsible_mapped = w.responsible
        elif job.kind == JobKind.NOTE:
            record.written_score = w.score_value
            record.logged_at = record.logged_at or (None if self.opts.delivery.log_calls else now)
        elif job.kind == JobKind.TAGS:
            record.applied_tag = w.scratch.tag
        elif job.kind == JobKind.TASK:  # the call's follow-up tracks the task, due when it is
            follow_ups.link_task(session, job.call_id, self.name, result.details.get("task_id"),
                                 datetime.fromtimestamp(w.item.complete_till, timezone.utc))
        elif job.kind == JobKind.CONTACT:
            # The caller exists now: send what waited for the contact.
            for waiting in d.jobs.values():
                if waiting.status == JobStatus.WAITING:
                    waiting.status, waiting.not_before, waiting.sent_at = JobStatus.PENDING, now, None
        self.opts.delivery.plan(session, d)

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     d: outbox.Delivery) -> None:
        if self.opts.create_contacts and d.job(JobKind.CONTACT) is None:
            outbox.add_job(session, d, self.name, JobKind.CONTACT, due=now)
            job.status, job.sent_at = JobStatus.WAITING, None
            job.last_error = f"{result.reason}: creating a contact"
            return
        job.status, job.last_error = JobStatus.UNMATCHED, result.reason
        if not self.opts.create_contacts:
            job.last_error += " (AMOCRM_CREATE_CONTACTS is off)"
