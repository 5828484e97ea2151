"""The delivery worker: claim a batch of due jobs, send it through the CRM adapter, record the outcome.

Outcomes, per item:
- done: the effect is in the CRM; follow-up jobs (tags after the call, etc.) are planned;
- transient failure: retried with exponential backoff and jitter for about 24 h, then dead;
- permanent failure: dead at once, with the CRM's detail; `connector deliveries replay` revives it;
- account blocked (402/403, lost authorization): the whole account pauses, nothing is counted.
A job whose request may have gone out before a crash or timeout is looked up in the CRM first.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.exc import OperationalError, SQLAlchemyError, StatementError
from tenacity import RetryCallState, wait_exponential_jitter

from connector import outbox
from connector.crm import (DOUBT_MARGIN, AccountBlocked, CallItem, ContactItem, CrmAdapter, CrmError, ItemResult,
                           NoteItem, PermanentError, RateLimited, TagItem, TransientError)
from connector.accounts import SharedRateLimiter
from connector.crm.account import pause, pause_state, resume
from connector.db import Database
from connector.links import recording_link
from connector.loop import run_until_stopped, worker_id
from connector.metrics import DELIVERIES
from connector.models import DeliveryJob, JobStatus, Score
from connector.outbox import JobKind
from connector.runtime_settings import SettingsCache
from connector.threshold import Policy

log = logging.getLogger(__name__)

RETRY_HORIZON = timedelta(hours=24)
# 30 s, 1 min, 2 min, ... capped at 1 h, each with up to 30 s of jitter: ~30 tries in 24 h.
BACKOFF = wait_exponential_jitter(multiplier=30, max=3600, jitter=30)


def retry_delay(attempt: int, exc: TransientError) -> float:
    """A request refused for the rate alone is sent again when the CRM says (the job did nothing
    wrong); any other failure waits for the schedule, or longer when the CRM asks."""
    if isinstance(exc, RateLimited):
        return exc.retry_after
    return max(exc.retry_after or 0.0, backoff_seconds(attempt))


def backoff_seconds(attempt: int) -> float:
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = attempt
    return BACKOFF(state)


@dataclass(frozen=True)
class WorkerOptions:
    delivery: outbox.DeliveryOptions
    initial_policy: Policy
    initial_user_map: dict
    public_base_url: str
    secret_key: str
    create_contacts: bool = True
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    probe_seconds: float = 300.0


@dataclass
class Work:
    """One claimed job with what sending it needs, read inside the claim transaction."""

    job_id: int
    kind: str
    in_doubt_since: datetime | None
    call_id: int
    entry_id: str
    item: object = None
    score_value: int | None = None
    responsible: tuple[int | None, bool] = (None, False)
    extra: dict = field(default_factory=dict)


def _phone(number: str | None) -> str:
    digits = re.sub(r"\D", "", number or "")
    return f"+{digits}" if len(digits) >= 10 else (number or "")


def _outcome(outcome) -> str:
    if isinstance(outcome, TransientError):
        return "retry"
    if outcome.ok:
        return "done"
    return "retry" if outcome.extra.get("retry") else ("unmatched" if outcome.unmatched else "dead")


def _call_ids(work: list[Work], shown: int = 10) -> str:
    ids = [w.entry_id for w in work]
    return ", ".join(ids[:shown]) + (f" and {len(ids) - shown} more" if len(ids) > shown else "")


class DeliveryWorker:
    def __init__(self, db: Database, adapter: CrmAdapter, opts: WorkerOptions, *,
                 limiter: SharedRateLimiter | None = None, owner: str | None = None):
        self.db, self.adapter, self.opts, self.limiter = db, adapter, opts, limiter
        self.crm = opts.delivery.crm
        self.owner = owner or worker_id()
        self.settings = SettingsCache(opts.initial_policy, opts.initial_user_map)
        self._last_probe = float("-inf")  # monotonic time starts near 0 on a fresh machine
        self._recorder: ThreadPoolExecutor | None = None
        self._recording: Future | None = None
        self._claimer: ThreadPoolExecutor | None = None
        self._ahead: Future | None = None  # the next batch, claimed while this one is sent

    # --- loop -------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Batch after batch, with the bookkeeping beside the wait for the rate-limit slot: while a
        full batch is sent, a second thread claims the next one, and a third stores the outcomes."""
        with ThreadPoolExecutor(1, thread_name_prefix=f"{self.crm}-outcomes") as self._recorder, \
                ThreadPoolExecutor(1, thread_name_prefix=f"{self.crm}-claims") as self._claimer:
            try:
                run_until_stopped(f"delivery worker {self.owner} for {self.crm}", self.run_once, stop,
                                  self.opts.poll_seconds)
            finally:
                try:
                    self._release(self._claimed_ahead() or [])  # back to the queue now, not when the lease ends
                except SQLAlchemyError:
                    log.warning("%s: could not hand back the jobs claimed ahead; their leases bring them back",
                                self.crm)
                self._await_outcomes()
                self._recorder = self._claimer = None

    def run_once(self) -> int:
        """Process one batch; returns how many jobs it claimed (0: idle or paused)."""
        paused, _reason, _at = pause_state(self.db, self.crm)
        if paused:
            self._release(self._claimed_ahead() or [])
            self._probe()
            return 0
        work = self._claimed_ahead()
        if work is None:
            work = self._claim()
        if not work:
            return 0
        kind, claimed = work[0].kind, len(work)
        superseded = [w for w in work if w.extra.get("superseded")]
        if superseded:
            self._record(superseded, [ItemResult(True, extra={"superseded": True})] * len(superseded))
            work = [w for w in work if not w.extra.get("superseded")]
        try:
            work = self._settle_doubts(kind, self._resolve_entities(kind, work))
            if claimed == self.adapter.max_batch and self._claimer is not None:
                self._ahead = self._claimer.submit(self._claim)  # a backlog: claim the next batch meanwhile
            results = self._send(kind, [w.item for w in work]) if work else []
        except AccountBlocked as exc:
            pause(self.db, self.crm, exc.message)
            self._last_probe = time.monotonic()  # the next probe waits its full interval
            self._release(work + (self._claimed_ahead() or []))
            return claimed
        except TransientError as exc:
            if exc.retry_after and self.limiter:
                self.limiter.hold(exc.retry_after)  # every worker waits, not just this one
            results = [exc] * len(work)
        except PermanentError as exc:
            results = [ItemResult(False, error=exc.message)] * len(work)
        self._await_outcomes()  # one batch in flight at most, stored in the order sent
        if self._recorder is None:
            self._record(work, results)
        else:
            self._recording = self._recorder.submit(self._record, work, results)
        return claimed

    def _claimed_ahead(self) -> list[Work] | None:
        """The batch claimed while the previous one was sent (None: none was). A failed claim (the
        database down) surfaces here, in the loop."""
        ahead, self._ahead = self._ahead, None
        return ahead.result() if ahead is not None else None

    def _await_outcomes(self) -> None:
        """Wait until the previous batch's outcomes are stored. Its failure (the database down)
        surfaces here, in the loop, and its leases bring the jobs back."""
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.result()

    def _probe(self) -> None:
        if time.monotonic() - self._last_probe < self.opts.probe_seconds:
            return
        self._last_probe = time.monotonic()
        try:
            self.adapter.probe()
        except CrmError as exc:
            log.warning("%s still paused; probe failed: %s", self.crm, exc.message)
            return
        resume(self.db, self.crm)

    # --- claim and build items ---------------------------------------------
    def _claim(self) -> list[Work]:
        with self.db.transaction() as s:
            jobs = outbox.claim(s, self.crm, self.owner, limit=self.adapter.max_batch,
                                lease_seconds=self.opts.lease_seconds, skip_locked=self.db.is_postgres)
            if not jobs:
                return []
            policy, user_map = self.settings.read(s)
            deliveries = outbox.load(s, self.crm, [job.call_id for job in jobs])
            score_ids = [job.score_id for job in jobs if job.score_id]
            scores = {sc.id: sc for sc in s.scalars(select(Score).where(Score.id.in_(score_ids)))} if score_ids \
                else {}
            now = datetime.now(timezone.utc)
            work = []
            for job in jobs:
                d = deliveries[job.call_id]
                w = Work(job.id, job.kind, job.sent_at, job.call_id, d.call.entry_id)
                job.sent_at = now  # from here on, a crash leaves the outcome in doubt
                self._build(job, d, scores.get(job.score_id), w, policy, user_map)
                work.append(w)
            return work

    def _build(self, job: DeliveryJob, d: outbox.Delivery, job_score: Score | None, w: Work, policy: Policy,
               user_map: dict) -> None:
        call, record = d.call, d.record
        user_id = user_map.get(call.operator_extension or "")
        w.responsible = (user_id, user_id is not None)
        phone = _phone(call.customer_phone)
        if job.kind == JobKind.LOG_CALL:
            score = d.score
            text = policy.score_text(score.value) if score is not None and score.record else None
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
                w.extra["phone"] = phone
            elif job_score is None or d.score is None or job_score.id != d.score.id:
                w.extra["superseded"] = True  # a newer score's own tags job carries the change
            else:
                field_id = self.opts.delivery.score_field_id
                new_tag = job_score.tag
                # Remove what we last applied (and what the policy says this score replaces).
                remove = {record.applied_tag, job_score.tag_to_remove} - {None, new_tag}
                w.extra["tag"] = new_tag
                w.item = TagItem(entity_type, entity_id, add=(new_tag,) if new_tag else (),
                                 remove=tuple(sorted(remove)),
                                 score_field=(field_id, w.score_value) if field_id else None)

    # --- doubts: look before sending twice ----------------------------------
    def _settle_doubts(self, kind: str, work: list[Work]) -> list[Work]:
        """Jobs whose earlier request may have reached the CRM are looked up, not re-sent."""
        doubtful = [w for w in work if w.in_doubt_since is not None]
        if not doubtful:
            return work
        since = int(min(w.in_doubt_since for w in doubtful).timestamp()) - DOUBT_MARGIN
        settled: dict[int, ItemResult] = {}
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
                    settled[w.job_id] = ItemResult(True, w.item.entity_type, w.item.entity_id)
        elif kind == JobKind.TAGS:
            # Resending is harmless to the tags, but every add is one more "Теги добавлены" row in the
            # CRM's events list, the list QA staff count: look at the entity first.
            applied = self.adapter.tags_in_place([w.item for w in doubtful])
            settled = {w.job_id: ItemResult(True, w.item.entity_type, w.item.entity_id)
                       for w, done in zip(doubtful, applied) if done}
        if settled:
            done = [w for w in work if w.job_id in settled]
            log.info("%d %s job(s) were already applied before a crash or timeout; not re-sent (calls %s)",
                     len(settled), kind, _call_ids(done))
            self._record(done, [settled[w.job_id] for w in done])
        return [w for w in work if w.job_id not in settled]

    def _resolve_entities(self, kind: str, work: list[Work]) -> list[Work]:
        """A note with no known entity (AMOCRM_LOG_CALLS=false) first finds it by phone."""
        if kind != JobKind.NOTE:
            return work
        ready, unmatched = [], []
        for w in work:
            if not w.item.entity_id:
                hit = self.adapter.find_entity_by_phone(w.extra["phone"])
                if hit is None:
                    unmatched.append(w)
                    continue
                w.item = NoteItem(hit.entity_type, hit.entity_id, w.item.text, w.item.responsible_user_id)
                w.extra["entity"] = (hit.entity_type, hit.entity_id)
            ready.append(w)
        if unmatched:
            self._record(unmatched, [ItemResult(False, unmatched=True, error="no contact has this phone")]
                         * len(unmatched))
        return ready

    def _send(self, kind: str, items: list) -> list[ItemResult]:
        send = {JobKind.LOG_CALL: self.adapter.log_calls, JobKind.CONTACT: self.adapter.create_contacts,
                JobKind.NOTE: self.adapter.add_notes, JobKind.TAGS: self.adapter.update_tags}[kind]
        return send(items)

    # --- outcomes -------------------------------------------------------------
    def _release(self, work: list[Work]) -> None:
        """Hand claimed jobs back untouched (the account paused, or the worker stops before sending
        them), not counting this attempt."""
        if not work:
            return
        with self.db.transaction() as s:
            for w in work:
                job = s.get(DeliveryJob, w.job_id)
                if job is None or job.lease_owner != self.owner:
                    continue  # settled before the block, or taken over
                job.attempts = max(0, job.attempts - 1)
                job.lease_owner = job.lease_until = None
                job.sent_at = w.in_doubt_since

    def _record(self, work: list[Work], outcomes: list) -> None:
        """Store the outcomes. A batch whose outcome the database refuses to store (a value that
        slipped past validation) goes dead with the reason, instead of coming back forever."""
        if not work:
            return
        try:
            self._store_outcomes(work, outcomes)
        except (StatementError, OverflowError) as exc:  # sqlite3 raises OverflowError unwrapped
            if isinstance(exc, OperationalError):
                raise  # the database is down: the lease brings the batch back
            cause = getattr(exc, "orig", None) or exc
            reason = f"the outcome could not be stored ({type(cause).__name__}); fix the data and replay"
            log.error("%s: %d job(s) dead (calls %s): %s", self.crm, len(work), _call_ids(work), reason)
            self._bury(work, reason)

    def _bury(self, work: list[Work], reason: str) -> None:
        with self.db.transaction() as s:
            outbox.lock_calls(s, [w.call_id for w in work])
            for job in s.scalars(select(DeliveryJob).where(DeliveryJob.id.in_([w.job_id for w in work]))):
                if job.lease_owner == self.owner:
                    job.status, job.last_error, job.lease_owner, job.lease_until = JobStatus.DEAD, reason, None, None
            for d in outbox.load(s, self.crm, [w.call_id for w in work]).values():
                outbox.refresh_record(d)

    def _store_outcomes(self, work: list[Work], outcomes: list) -> None:
        with self.db.transaction() as s:
            now = datetime.now(timezone.utc)
            outbox.lock_calls(s, [w.call_id for w in work])
            jobs = {j.id: j for j in s.scalars(select(DeliveryJob).where(
                DeliveryJob.id.in_([w.job_id for w in work])).with_for_update())}
            deliveries = outbox.load(s, self.crm, [w.call_id for w in work])
            with s.no_autoflush:
                for w, outcome in zip(work, outcomes):
                    job = jobs.get(w.job_id)
                    if job is None or job.lease_owner != self.owner:
                        continue  # our lease ran out and another worker took the job over
                    job.lease_owner = job.lease_until = None
                    d = deliveries[job.call_id]
                    DELIVERIES.labels(self.crm, job.kind, _outcome(outcome)).inc()
                    if isinstance(outcome, TransientError):
                        self._retry_later(job, outcome, now)
                    elif outcome.ok:
                        self._done(s, job, w, outcome, now, d)
                    elif outcome.extra.get("retry"):
                        job.status, job.not_before, job.sent_at = JobStatus.PENDING, now, None
                        job.attempts = max(0, job.attempts - 1)
                    elif outcome.unmatched:
                        self._unmatched(s, job, outcome, now, d)
                    else:
                        job.status, job.last_error = JobStatus.DEAD, outcome.error
                        log.error("%s job %s dead: %s", self.crm, job.key, outcome.error)
                for d in deliveries.values():
                    outbox.refresh_record(d)

    def _retry_later(self, job: DeliveryJob, exc: TransientError, now: datetime) -> None:
        job.first_failed_at = job.first_failed_at or now
        job.last_error = exc.message
        if not exc.maybe_applied:
            job.sent_at = None
        if now - job.first_failed_at >= RETRY_HORIZON:
            job.status = JobStatus.DEAD
            job.last_error = f"gave up after {job.attempts} attempts over 24 h: {exc.message}"
            log.error("%s job %s dead: %s", self.crm, job.key, job.last_error)
            return
        delay = retry_delay(job.attempts, exc)
        job.not_before = now + timedelta(seconds=delay)

    def _done(self, s, job: DeliveryJob, w: Work, result: ItemResult, now: datetime,
              d: outbox.Delivery) -> None:
        job.status, job.last_error, job.sent_at = JobStatus.DONE, None, None
        job.result = {"entity_type": result.entity_type, "entity_id": result.entity_id, **result.extra}
        record = d.record
        if result.extra.get("superseded"):
            return
        if job.kind in (JobKind.LOG_CALL, JobKind.CONTACT) or (job.kind == JobKind.NOTE and "entity" in w.extra):
            record.entity_type, record.entity_id = result.entity_type, result.entity_id
        if job.kind == JobKind.LOG_CALL:
            record.logged_at = now
            record.written_score = w.score_value
            record.responsible_user_id, record.responsible_mapped = w.responsible
        elif job.kind == JobKind.NOTE:
            record.written_score = w.score_value
            record.logged_at = record.logged_at or (None if self.opts.delivery.log_calls else now)
        elif job.kind == JobKind.TAGS:
            record.applied_tag = w.extra.get("tag")
        elif job.kind == JobKind.CONTACT:
            # The caller exists now: send what waited for the contact.
            for waiting in d.jobs.values():
                if waiting.status == JobStatus.WAITING:
                    waiting.status, waiting.not_before, waiting.sent_at = JobStatus.PENDING, now, None
        outbox.plan(s, self.opts.delivery, d)

    def _unmatched(self, s, job: DeliveryJob, result: ItemResult, now: datetime, d: outbox.Delivery) -> None:
        if self.opts.create_contacts and d.job(JobKind.CONTACT) is None:
            outbox.add_job(s, d, self.crm, JobKind.CONTACT, due=now)
            job.status, job.sent_at = JobStatus.WAITING, None
            job.last_error = f"{result.error}: creating a contact"
            return
        job.status, job.last_error = JobStatus.UNMATCHED, result.error
        if not self.opts.create_contacts:
            job.last_error += " (AMOCRM_CREATE_CONTACTS is off)"
