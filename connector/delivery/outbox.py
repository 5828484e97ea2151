"""The durable outbox: the job rows that carry each target's effects, and the queue that moves them.

Each effect is one job with a unique key (entry_id + kind + what it carries), created in the same
transaction as the change that calls for it, by the target's planning rules (`Planning`: amoCRM's in
`targets/amocrm/target.py`, Bitrix24's in `targets/bitrix24/target.py`, the webhook's in `targets/webhook.py`).
`DeliveryQueue` claims due jobs with a lease, stores their outcomes and releases what was claimed but
not sent. A target reports one outcome per job (`connector.delivery.contract`), stored as:
- `Done`: done, the entity and the details in `job.result`; the target's `on_done` writes its record
  fields and plans the follow-up jobs;
- `Superseded`: done with `{"superseded": true}` in its result, and no effects;
- `SendAgain`: pending again at once, the try not counted;
- `Unmatched`: the target's `on_unmatched` decides (amoCRM: wait for a new contact, or unmatched);
- `Dead`: dead at once, with the reason (`Refused`: the target's `on_refused` turns the address off);
- `TransientError`: retried on the schedule of `connector.delivery.retry`, then dead.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Protocol

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from connector.core import lease
from connector.core.db import Database
from connector.core.metrics import DELIVERIES
from connector.delivery.contract import (Dead, Done, Outcome, Refused, SendAgain, Superseded, TransientError,
                                        Unmatched)
from connector.delivery.retry import next_try

from connector.core.models import (Call, CrmRecord, DeliveryJob, DeliveryStatus, JobStatus, Score, SurveyState,
                              crm_summary)
from connector.core.policy import HighScores, ScoreStatus, writes_score

log = logging.getLogger(__name__)


class Planning(Protocol):
    """A target as ingest sees it: its name and the jobs a call needs in it now (idempotent)."""

    name: str

    def plan(self, session: Session, d: "Delivery") -> None: ...


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class Delivery:
    """What the outbox knows of one call in one CRM, loaded in a few queries for a whole batch."""

    call: Call
    record: CrmRecord
    jobs: dict[str, DeliveryJob]  # by key
    score: Score | None  # the customer score in force
    supervisor_score: Score | None = None  # the supervisor score in force (the newest accepted)
    others: list[CrmRecord] = field(default_factory=list)  # the call's records in the other targets

    def job(self, kind: str, suffix: str = "") -> DeliveryJob | None:
        return self.jobs.get(job_key(self.call.entry_id, kind, suffix))


def written_score(score: Score | None, target_default: HighScores) -> Score | None:
    """The customer score a CRM target writes: None when there is none, the feature was off when it came,
    or it is at or above the threshold and the policy (or, by default, the target) ignores such scores."""
    if score is None or not score.record or not writes_score(score.high_scores, target_default):
        return None
    return score


def job_key(entry_id: str, kind: str, suffix: str = "") -> str:
    return f"{entry_id}:{kind}{':' + suffix if suffix else ''}"


def lock_calls(session: Session, call_ids: list[int]) -> None:
    """Lock the calls first, in id order, as ingest does: every writer of a call's record and jobs
    then takes locks in the same order (call -> record -> jobs), so PostgreSQL never deadlocks."""
    session.execute(select(Call.id).where(Call.id.in_(sorted(set(call_ids)))).order_by(Call.id).with_for_update())


def load(session: Session, crm: str, call_ids: list[int]) -> dict[int, Delivery]:
    """Deliveries of these calls in one target: 4 queries whatever the batch size."""
    return load_targets(session, (crm,), call_ids)[crm]


def load_targets(session: Session, crms: tuple[str, ...], call_ids: list[int]) -> dict[str, dict[int, Delivery]]:
    """Deliveries of these calls in each of these targets: 4 queries whatever the batch and the targets."""
    ids = list(set(call_ids))
    calls = {c.id: c for c in session.scalars(select(Call).where(Call.id.in_(ids)))}
    all_records: dict[int, list[CrmRecord]] = {i: [] for i in ids}
    for r in session.scalars(select(CrmRecord).where(CrmRecord.call_id.in_(ids))):
        all_records[r.call_id].append(r)
    jobs: dict[tuple[str, int], dict[str, DeliveryJob]] = {}
    for job in session.scalars(select(DeliveryJob).where(DeliveryJob.call_id.in_(ids), DeliveryJob.crm.in_(crms))):
        jobs.setdefault((job.crm, job.call_id), {})[job.key] = job
    scores: dict[int, Score] = {}
    supervisor: dict[int, Score] = {}
    for score in session.scalars(select(Score).where(Score.call_id.in_(ids), Score.status == ScoreStatus.ACCEPTED)
                                 .order_by(Score.id.desc())):
        if score.source == "customer":
            if score.call_id not in scores and score.value == calls[score.call_id].customer_score:
                scores[score.call_id] = score
        elif score.call_id not in supervisor:
            supervisor[score.call_id] = score
    out: dict[str, dict[int, Delivery]] = {crm: {} for crm in crms}
    for i in ids:
        for record in all_records[i]:
            if record.crm in out:
                others = [r for r in all_records[i] if r is not record]
                out[record.crm][i] = Delivery(calls[i], record, jobs.get((record.crm, i), {}), scores.get(i),
                                              supervisor.get(i), others)
    return out


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


def schedule_call(session: Session, d: Delivery, crm: str, kind: str, survey_wait_seconds: int,
                  now: datetime) -> None:
    """The job that writes the call itself: due once the customer's score came or the survey is known
    to bring none, else SURVEY_WAIT_SECONDS after the call ended; brought forward when the score comes."""
    call, job = d.call, d.job(kind)
    settled = d.score is not None or call.survey in (SurveyState.NO_ANSWER, SurveyState.NOT_OFFERED)
    if job is None:
        wait_until = (call.ended_at or now) + timedelta(seconds=survey_wait_seconds)
        add_job(session, d, crm, kind, due=now if settled else max(now, wait_until))
    elif job.status == JobStatus.PENDING and settled and job.sent_at is None and job.not_before > now:
        job.not_before = now


def nothing_to_send(d: Delivery, reason: str) -> None:
    """The target has nothing to write for this call (its jobs decide otherwise once there are any): the
    record says so instead of waiting for ever."""
    if d.jobs:
        return
    d.record.status, d.record.reason = DeliveryStatus.SKIPPED, reason
    d.call.crm_status = crm_summary([d.record, *d.others])


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
    d.call.crm_status = crm_summary([record, *d.others])


# --- claiming -----------------------------------------------------------------

def claim(session: Session, crm: str, owner: str, *, limit: Callable[[str], int], lease_seconds: float,
          skip_locked: bool) -> list[DeliveryJob]:
    """Lease up to `limit(kind)` due jobs of one kind (the kind of the oldest due job)."""
    now = _now()
    due = (select(DeliveryJob)
           .where(DeliveryJob.crm == crm, DeliveryJob.status == JobStatus.PENDING, DeliveryJob.not_before <= now,
                  lease.free(DeliveryJob, now))
           .order_by(DeliveryJob.not_before, DeliveryJob.id))
    first = lease.claim_locked(session, due.limit(1), skip_locked=skip_locked)
    if not first:
        return []
    jobs = lease.claim(session, due.where(DeliveryJob.kind == first[0].kind).limit(limit(first[0].kind)), owner,
                       now, lease_seconds, skip_locked=skip_locked)
    for job in jobs:
        job.attempts += 1
    return jobs


@dataclass
class Work:
    """One claimed job with what sending it needs, read inside the claim transaction."""

    job_id: int
    kind: str
    in_doubt_since: datetime | None  # when an earlier try may have reached the target
    call_row: int  # the call's database row (`calls.id`); `entry_id` is the PBX's id
    entry_id: str
    item: object = None
    score_value: int | None = None
    responsible: tuple[int | None, bool] = (None, False)
    scratch: object = None  # the target's own per-job values, a dataclass of its module; the queue never reads it


class Effects(Protocol):
    """What the queue asks of a target when it stores outcomes: the target's own record fields and
    follow-up jobs. Everything else (leases, retries, dead letters) is the queue's."""

    def on_done(self, session: Session, job: DeliveryJob, work: Work, result: Done, now: datetime,
                delivery: Delivery) -> None: ...

    def on_unmatched(self, session: Session, job: DeliveryJob, result: Unmatched, now: datetime,
                     delivery: Delivery) -> None: ...


def outcome_label(outcome: Outcome) -> str:
    """The outcome as the DELIVERIES metric counts it."""
    match outcome:
        case Done() | Superseded():
            return "done"
        case TransientError() | SendAgain():
            return "retry"
        case Unmatched():
            return "unmatched"
        case Dead():
            return "dead"
    raise TypeError(f"not a delivery outcome: {outcome!r}")  # a target's bug: stored as a failed try


def batch_failure(exc: Exception) -> TransientError:
    """The outcome of each job of a batch that raised where it should have answered: the try counts, the
    error text is the job's, it may have been applied (looked up before a resend), and the retry schedule
    ends it dead, where a person sees it, instead of a loop that retries without counting."""
    if isinstance(exc, TransientError):
        return exc
    text = str(exc).strip()
    return TransientError(f"{type(exc).__name__}: {text}"[:500] if text else type(exc).__name__, maybe_applied=True)


def call_ids(work: list[Work], shown: int = 10) -> str:
    ids = [w.entry_id for w in work]
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class DeliveryQueue:
    """One target's jobs from claim to outcome: claiming with a lease, storing outcomes (done,
    retried on the schedule of `connector.delivery.retry`, dead, unmatched), releasing unsent claims.
    Each method is one transaction; a lease another worker took over is never touched."""

    def __init__(self, db: Database, crm: str, owner: str, *, lease_seconds: float):
        self.db, self.crm, self.owner, self.lease_seconds = db, crm, owner, lease_seconds

    def claim(self, limit: Callable[[str], int],
              prepare: Callable[[Session, list[tuple[DeliveryJob, Delivery, Work]]], None]) -> list[Work]:
        """Lease up to `limit(kind)` due jobs of one kind; `prepare` builds their items in the same
        transaction. From here on, a crash leaves their outcome in doubt (`sent_at`)."""
        with self.db.transaction() as s:
            jobs = claim(s, self.crm, self.owner, limit=limit, lease_seconds=self.lease_seconds,
                         skip_locked=self.db.is_postgres)
            if not jobs:
                return []
            deliveries = load(s, self.crm, [job.call_id for job in jobs])
            now = _now()
            claimed = []
            for job in jobs:
                d = deliveries[job.call_id]
                claimed.append((job, d, Work(job.id, job.kind, job.sent_at, job.call_id, d.call.entry_id)))
                job.sent_at = now
            prepare(s, claimed)
            return [w for _job, _d, w in claimed]

    def release(self, work: list[Work], *, maybe_sent: bool = False) -> None:
        """Hand claimed jobs back (the target paused, or the worker stops before sending them), not
        counting this attempt. With `maybe_sent` (a block met in the middle of a batch) each keeps the
        mark that it may have reached the target, so it is looked up before it is sent again."""
        if not work:
            return
        with self.db.transaction() as s:
            for w in work:
                job = s.get(DeliveryJob, w.job_id)
                if not lease.holds(job, self.owner):
                    continue  # settled before the pause, or taken over
                job.attempts = max(0, job.attempts - 1)
                lease.release(job)
                if not maybe_sent:
                    job.sent_at = w.in_doubt_since

    def finish(self, work: list[Work], outcomes: list[Outcome], effects: Effects) -> None:
        """Store the outcomes. A batch whose outcome the database refuses to store (a value that
        slipped past validation) goes dead with the reason, instead of coming back forever."""
        if not work:
            return
        try:
            self._store(work, outcomes, effects)
        except (StatementError, OverflowError) as exc:  # sqlite3 raises OverflowError unwrapped
            if isinstance(exc, OperationalError):
                raise  # the database is down: the lease brings the batch back
            cause = getattr(exc, "orig", None) or exc
            reason = f"the outcome could not be stored ({type(cause).__name__}); fix the data and replay"
            log.error("%s: %d job(s) dead (calls %s): %s", self.crm, len(work), call_ids(work), reason)
            self._bury(work, reason)
        except Exception as exc:  # a target's bookkeeping failed: the try counts, and the job is looked up
            log.exception("%s: storing the outcomes of %d job(s) failed (calls %s)", self.crm, len(work),
                          call_ids(work))
            self._store(work, [batch_failure(exc)] * len(work), effects)

    def _store(self, work: list[Work], outcomes: list[Outcome], effects: Effects) -> None:
        with self.db.transaction() as s:
            now = _now()
            lock_calls(s, [w.call_row for w in work])
            jobs = {j.id: j for j in s.scalars(select(DeliveryJob).where(
                DeliveryJob.id.in_([w.job_id for w in work])).with_for_update())}
            deliveries = load(s, self.crm, [w.call_row for w in work])
            with s.no_autoflush:
                for w, outcome in zip(work, outcomes):
                    job = jobs.get(w.job_id)
                    if not lease.holds(job, self.owner):
                        continue  # our lease ran out and another worker took the job over
                    lease.release(job)
                    d = deliveries[job.call_id]
                    DELIVERIES.labels(self.crm, job.kind, outcome_label(outcome)).inc()
                    match outcome:
                        case TransientError():
                            self._retry_later(job, outcome, now)
                            if job.status == JobStatus.DEAD:
                                _heard_dead(effects, s, job, now)
                        case Done(entity_type, entity_id, details):
                            job.status, job.last_error, job.sent_at = JobStatus.DONE, None, None
                            job.result = {"entity_type": entity_type, "entity_id": entity_id, **details}
                            effects.on_done(s, job, w, outcome, now, d)
                        case Superseded():
                            job.status, job.last_error, job.sent_at = JobStatus.DONE, None, None
                            # the result superseded jobs have always stored, so older rows and new ones read alike
                            job.result = {"entity_type": None, "entity_id": None, "superseded": True}
                        case SendAgain():
                            job.status, job.not_before, job.sent_at = JobStatus.PENDING, now, None
                            job.attempts = max(0, job.attempts - 1)
                        case Unmatched():
                            effects.on_unmatched(s, job, outcome, now, d)
                        case Dead(reason):
                            job.status, job.last_error = JobStatus.DEAD, reason
                            log.error("%s job %s dead: %s", self.crm, job.key, reason)
                            if isinstance(outcome, Refused):
                                effects.on_refused(s, job, outcome, now)
                            _heard_dead(effects, s, job, now)
                for d in deliveries.values():
                    refresh_record(d)

    def _retry_later(self, job: DeliveryJob, exc: TransientError, now: datetime) -> None:
        job.first_failed_at = job.first_failed_at or now
        job.last_error = exc.message
        if exc.progress:
            job.result = {**(job.result or {}), **exc.progress}
        if not exc.maybe_applied:
            job.sent_at = None
        when = next_try(job.first_failed_at, job.attempts, exc, now)
        if when is None:
            job.status = JobStatus.DEAD
            job.last_error = f"gave up after {job.attempts} attempts over 24 h: {exc.message}"
            log.error("%s job %s dead: %s", self.crm, job.key, job.last_error)
            return
        job.not_before = when

    def _bury(self, work: list[Work], reason: str) -> None:
        with self.db.transaction() as s:
            lock_calls(s, [w.call_row for w in work])
            for job in s.scalars(select(DeliveryJob).where(DeliveryJob.id.in_([w.job_id for w in work]))):
                if lease.holds(job, self.owner):
                    job.status, job.last_error = JobStatus.DEAD, reason
                    lease.release(job)
            for d in load(s, self.crm, [w.call_row for w in work]).values():
                refresh_record(d)


def _heard_dead(effects: Effects, session: Session, job: DeliveryJob, now: datetime) -> None:
    """A target that keeps its own state of a job (the rating link's request) hears of its death: optional, as
    a CRM's record already says it (`refresh_record`)."""
    on_dead = getattr(effects, "on_dead", None)
    if on_dead is not None:
        on_dead(session, job, job.last_error or "", now)


# --- operators' tools -----------------------------------------------------------

def list_jobs(session: Session, status: str | None = None, limit: int = 100, *,
              targets: tuple[str, ...] | None = None) -> list[DeliveryJob]:
    query = select(DeliveryJob).order_by(DeliveryJob.id.desc()).limit(limit)
    if status:
        query = query.where(DeliveryJob.status == status)
    if targets is not None:
        query = query.where(DeliveryJob.crm.in_(targets))
    return list(session.scalars(query))


def jobs_to_replay(session: Session, status: str, since: datetime | None, *,
                   targets: tuple[str, ...] | None = None) -> list[int]:
    query = select(DeliveryJob.id).where(DeliveryJob.status == status).order_by(DeliveryJob.id)
    if since:
        query = query.where(DeliveryJob.updated_at >= since)
    if targets is not None:
        query = query.where(DeliveryJob.crm.in_(targets))
    return list(session.scalars(query))


def replay(session: Session, job_id: int, plannings: dict[str, Planning] | None = None) -> None:
    """Put a dead or unmatched job back in the queue, with a fresh retry budget. A target's planning
    may tidy up around it (`on_replay`: amoCRM drops a failed contact creation so a new one can start)."""
    job = session.get(DeliveryJob, job_id)
    if job is None or job.status not in (JobStatus.DEAD, JobStatus.UNMATCHED):
        return
    lock_calls(session, [job.call_id])
    session.refresh(job, with_for_update=True)
    if job.status not in (JobStatus.DEAD, JobStatus.UNMATCHED):
        return
    job.status, job.not_before = JobStatus.PENDING, _now()
    lease.release(job)
    job.attempts, job.first_failed_at = 0, None
    on_replay = getattr((plannings or {}).get(job.crm), "on_replay", None)  # optional in a Planning
    if on_replay is not None:
        on_replay(session, job)
    session.flush()
    delivery = load(session, job.crm, [job.call_id]).get(job.call_id)
    if delivery is not None:
        refresh_record(delivery)
