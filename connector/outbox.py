"""The durable outbox: which CRM effects a call needs, and the job rows that carry them.

Each effect is one job with a unique key (entry_id + kind + what it carries), created
in the same transaction as the change that calls for it. Jobs:
- `log_call`: POST the call (score text, recording link); due once the summary is in and
  a customer score is in, the survey is known to bring none (no answer, not offered), or
  SURVEY_WAIT_SECONDS have passed since the call ended;
- `contact`: create a contact for an unknown caller, then the call is logged again;
- `note`: a score that came after the call was logged (or AMOCRM_LOG_CALLS=false); keyed by score id;
- `tags`: bring the entity's low-score tag from the one last applied to the one of the score in
  force (add / remove), and write the score field. A tags job whose score was replaced before it
  was sent is dropped: the replacing score's own job carries the change.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from connector.models import Call, CrmRecord, DeliveryJob, DeliveryStatus, JobStatus, Score, SurveyState
from connector.threshold import ACCEPTED


class JobKind(enum.StrEnum):
    """The effects a call may need in amoCRM, one job each (see the module's docstring)."""

    LOG_CALL = "log_call"
    CONTACT = "contact"
    NOTE = "note"
    TAGS = "tags"


@dataclass(frozen=True)
class DeliveryOptions:
    crm: str
    log_calls: bool = True
    survey_wait_seconds: int = 180
    score_field_id: int = 0


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Delivery:
    """What the outbox knows of one call in one CRM, loaded in a few queries for a whole batch."""

    call: Call
    record: CrmRecord
    jobs: dict[str, DeliveryJob]  # by key
    score: Score | None  # the customer score in force

    def job(self, kind: str, suffix: str = "") -> DeliveryJob | None:
        return self.jobs.get(job_key(self.call.entry_id, kind, suffix))


def job_key(entry_id: str, kind: str, suffix: str = "") -> str:
    return f"{entry_id}:{kind}{':' + suffix if suffix else ''}"


def lock_calls(session: Session, call_ids: list[int]) -> None:
    """Lock the calls first, in id order, as ingest does: every writer of a call's record and jobs
    then takes locks in the same order (call -> record -> jobs), so PostgreSQL never deadlocks."""
    session.execute(select(Call.id).where(Call.id.in_(sorted(set(call_ids)))).order_by(Call.id).with_for_update())


def load(session: Session, crm: str, call_ids: list[int]) -> dict[int, Delivery]:
    """Deliveries of these calls: 4 queries whatever the batch size."""
    ids = list(set(call_ids))
    calls = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_(ids)))}
    records = {r.call_id: r for r in session.scalars(
        select(CrmRecord).where(CrmRecord.call_id.in_(ids), CrmRecord.crm == crm))}
    jobs: dict[int, dict[str, DeliveryJob]] = {i: {} for i in ids}
    for job in session.scalars(select(DeliveryJob).where(DeliveryJob.call_id.in_(ids), DeliveryJob.crm == crm)):
        jobs[job.call_id][job.key] = job
    scores: dict[int, Score] = {}
    for score in session.scalars(select(Score).where(Score.call_id.in_(ids), Score.source == "customer",
                                                     Score.status == ACCEPTED).order_by(Score.id.desc())):
        if score.call_id not in scores and score.value == calls[score.call_id].customer_score:
            scores[score.call_id] = score
    return {i: Delivery(calls[i], records[i], jobs[i], scores.get(i)) for i in ids if i in records}


def add_job(session: Session, d: Delivery, crm: str, kind: str, suffix: str = "", *,
         score: Score | None = None, due: datetime | None = None) -> DeliveryJob:
    key = job_key(d.call.entry_id, kind, suffix)
    job = d.jobs.get(key)
    if job is None:
        job = DeliveryJob(crm=crm, key=key, kind=kind, call_id=d.call.id, score_id=score.id if score else None,
                          status=JobStatus.PENDING, not_before=due or _now(), attempts=0)
        session.add(job)
        d.jobs[key] = job
    return job


def plan(session: Session, opts: DeliveryOptions, d: Delivery) -> None:
    """Create the jobs the call now needs. Safe to call after every change: keys make it idempotent."""
    call, record, score = d.call, d.record, d.score
    if call.summary_received_at is None or call.direction == "internal":
        return
    now = _now()
    if opts.log_calls:
        log_job = d.job(JobKind.LOG_CALL)
        # No need to wait any longer once the score came, or the survey is known to bring none.
        settled = score is not None or call.survey in (SurveyState.NO_ANSWER, SurveyState.NOT_OFFERED)
        if log_job is None:
            wait_until = (call.ended_at or now) + timedelta(seconds=opts.survey_wait_seconds)
            add_job(session, d, opts.crm, JobKind.LOG_CALL, due=now if settled else max(now, wait_until))
        elif log_job.status == JobStatus.PENDING and settled and log_job.sent_at is None and log_job.not_before > now:
            log_job.not_before = now
        if record.logged_at is None:
            return  # the call is not in the CRM yet; what it carries is decided when it is sent

    if score is None or not score.record:  # no score, or the feature was off when it came
        return
    if record.written_score != score.value:
        add_job(session, d, opts.crm, JobKind.NOTE, str(score.id), score=score)
    elif score.tag != record.applied_tag or score.tag_to_remove or opts.score_field_id:
        add_job(session, d, opts.crm, JobKind.TAGS, str(score.id), score=score)


def refresh_record(d: Delivery) -> None:
    """The call's `crm` status from its jobs: dead > unmatched > pending > delivered."""
    record, jobs = d.record, list(d.jobs.values())
    if not jobs:
        return
    statuses = {j.status for j in jobs}
    if JobStatus.DEAD in statuses:
        record.status = DeliveryStatus.DEAD
    elif JobStatus.UNMATCHED in statuses:
        record.status = DeliveryStatus.UNMATCHED
    elif statuses & {JobStatus.PENDING, JobStatus.WAITING}:
        record.status = DeliveryStatus.PENDING
    else:
        record.status = DeliveryStatus.DELIVERED
    record.attempts = sum(j.attempts or 0 for j in jobs)
    failed = [j for j in jobs if j.last_error and j.status != JobStatus.DONE]
    record.last_error = max(failed, key=lambda j: j.updated_at or _now()).last_error if failed else None
    record.reason = None if record.status in (DeliveryStatus.PENDING, DeliveryStatus.DELIVERED) else record.last_error
    d.call.crm_status = record.status


# --- claiming -----------------------------------------------------------------

def claim(session: Session, crm: str, owner: str, *, limit: int, lease_seconds: float,
          skip_locked: bool) -> list[DeliveryJob]:
    """Lease up to `limit` due jobs of one kind (the kind of the oldest due job)."""
    now = _now()
    due = (select(DeliveryJob)
           .where(DeliveryJob.crm == crm, DeliveryJob.status == JobStatus.PENDING, DeliveryJob.not_before <= now,
                  or_(DeliveryJob.lease_until.is_(None), DeliveryJob.lease_until < now))
           .order_by(DeliveryJob.not_before, DeliveryJob.id))
    lock = {"skip_locked": True} if skip_locked else {}
    first = session.scalars(due.limit(1).with_for_update(**lock)).first()
    if first is None:
        return []
    jobs = list(session.scalars(due.where(DeliveryJob.kind == first.kind).limit(limit).with_for_update(**lock)))
    for job in jobs:
        job.lease_owner, job.lease_until = owner, now + timedelta(seconds=lease_seconds)
        job.attempts += 1
    return jobs


# --- operators' tools -----------------------------------------------------------

def list_jobs(session: Session, status: str | None = None, limit: int = 100) -> list[DeliveryJob]:
    query = select(DeliveryJob).order_by(DeliveryJob.id.desc()).limit(limit)
    if status:
        query = query.where(DeliveryJob.status == status)
    return list(session.scalars(query))


def jobs_to_replay(session: Session, status: str, since: datetime | None) -> list[int]:
    query = select(DeliveryJob.id).where(DeliveryJob.status == status).order_by(DeliveryJob.id)
    if since:
        query = query.where(DeliveryJob.updated_at >= since)
    return list(session.scalars(query))


def replay(session: Session, job_id: int) -> None:
    """Put a dead or unmatched job back in the queue, with a fresh retry budget."""
    job = session.get(DeliveryJob, job_id)
    if job is None or job.status not in (JobStatus.DEAD, JobStatus.UNMATCHED):
        return
    lock_calls(session, [job.call_id])
    session.refresh(job, with_for_update=True)
    if job.status not in (JobStatus.DEAD, JobStatus.UNMATCHED):
        return
    job.status, job.not_before, job.lease_until, job.lease_owner = JobStatus.PENDING, _now(), None, None
    job.attempts, job.first_failed_at = 0, None
    if job.kind == JobKind.LOG_CALL:  # an unmatched call may meet a contact created meanwhile
        contact = session.scalars(select(DeliveryJob).where(DeliveryJob.call_id == job.call_id,
                                                            DeliveryJob.crm == job.crm,
                                                            DeliveryJob.kind == JobKind.CONTACT)).first()
        if contact is not None and contact.status in (JobStatus.DEAD, JobStatus.UNMATCHED):
            session.delete(contact)
    session.flush()
    delivery = load(session, job.crm, [job.call_id]).get(job.call_id)
    if delivery is not None:
        refresh_record(delivery)
