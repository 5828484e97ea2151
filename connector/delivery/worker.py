"""The delivery loop: claim a batch of due jobs, have the target deliver it, store the outcomes.

Outcomes, per item (types of `connector.delivery.contract`, stored by `outbox.DeliveryQueue`):
- `Done`: the effect is in the target (sent, or found by a look-up); follow-up jobs (tags after the
  call, etc.) are planned;
- `Superseded`: a newer job carries the change (amoCRM: a tags job whose score was replaced); done,
  nothing planned;
- `SendAgain`: the target refused another item of the batch, not this one; back at once, not counted;
- `Unmatched`: the CRM has no entity for the call (amoCRM: no contact has the phone); the target decides
  (a new contact, or unmatched);
- `TransientError`: rate limit, 5xx, timeout, or in doubt; retried on the schedule of
  `connector.delivery.retry` for about 24 h, then dead;
- `Dead`: refused for good; dead at once, with the target's detail; `connector deliveries replay` revives it;
- account blocked (402/403, lost authorization; `AccountBlocked` raised for the batch): the whole account
  pauses, nothing is counted.
A job whose request may have gone out before a crash or timeout is looked up in the target first.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from connector.core.accounts import pause, pause_state, resume
from connector.core.db import Database
from connector.core.loop import run_until_stopped, worker_id
from connector.core.models import DeliveryJob
from connector.core.policy import Policy
from connector.core.runtime_settings import SettingsCache
from connector.delivery.contract import AccountBlocked, CrmError
from connector.delivery.outbox import Delivery, DeliveryQueue, Effects, Outcome, Work, batch_failure, call_ids

log = logging.getLogger(__name__)


class Target(Effects, Protocol):
    """A delivery target: builds its jobs' items, delivers a batch, and writes its own fields when the
    queue stores an outcome (`Effects`)."""

    name: str
    recording_kinds: tuple[str, ...]  # its job kinds that have the target download a call's recording

    def batch_size(self, kind: str) -> int:
        """How many jobs of this kind go in one request."""

    def probe(self) -> None: ...

    def prepare(self, session: Session, claimed: list[tuple[DeliveryJob, Delivery, Work]], policy: Policy,
                user_map: dict) -> None: ...

    def deliver(self, kind: str, work: list[Work]) -> list[Outcome]: ...


@dataclass(frozen=True)
class WorkerOptions:
    initial_policy: Policy
    initial_user_map: dict
    user_map_scope: str  # the target's own map in the runtime settings (`user_map_scope(name)`)
    lease_seconds: float = 60.0
    poll_seconds: float = 1.0
    probe_seconds: float = 300.0


class DeliveryLoop:
    """The loop of one target, and its pause: while the account is blocked, nothing is claimed and a
    probe every `probe_seconds` resumes it."""

    def __init__(self, db: Database, target: Target, opts: WorkerOptions, *, owner: str | None = None):
        self.db, self.target, self.opts = db, target, opts
        self.crm = target.name
        self.owner = owner or worker_id()
        self.queue = DeliveryQueue(db, self.crm, self.owner, lease_seconds=opts.lease_seconds)
        self.settings = SettingsCache(opts.initial_policy, opts.initial_user_map, opts.user_map_scope)
        self._last_probe = float("-inf")  # monotonic time starts near 0 on a fresh machine
        self._recorder: ThreadPoolExecutor | None = None
        self._recording: Future | None = None
        self._claimer: ThreadPoolExecutor | None = None
        self._ahead: Future | None = None  # the next batch, claimed while this one is sent

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
                    self.queue.release(self._claimed_ahead() or [])  # now, not when the lease ends
                except SQLAlchemyError:
                    log.warning("%s: could not hand back the jobs claimed ahead; their leases bring them back",
                                self.crm)
                self._await_outcomes()
                self._recorder = self._claimer = None

    def run_once(self) -> int:
        """Process one batch; returns how many jobs it claimed (0: idle or paused)."""
        paused, _reason, _at = pause_state(self.db, self.crm)
        if paused:
            self.queue.release(self._claimed_ahead() or [])
            self._probe()
            return 0
        self._upkeep()
        work = self._claimed_ahead()
        if work is None:
            work = self._claim()
        if not work:
            return 0
        if len(work) == self.target.batch_size(work[0].kind) and self._claimer is not None:
            self._ahead = self._claimer.submit(self._claim)  # a backlog: claim the next batch meanwhile
        try:
            outcomes = self.target.deliver(work[0].kind, work)
        except AccountBlocked as exc:
            self._blocked(work, exc)
            return len(work)
        except Exception as exc:  # a bug or an answer of a shape nobody foresaw: never a silent loop
            log.exception("%s: delivering a batch of %d failed (calls %s)", self.crm, len(work), call_ids(work))
            outcomes = [batch_failure(exc)] * len(work)
        self._await_outcomes()  # one batch in flight at most, stored in the order sent
        if self._recorder is None:
            self.queue.finish(work, outcomes, self.target)
        else:
            self._recording = self._recorder.submit(self.queue.finish, work, outcomes, self.target)
        return len(work)

    def _upkeep(self) -> None:
        """The target's own chores between batches (Bitrix24: its uninstall handler), if it has any. They
        keep their own schedule and failure count; a bug there is logged and never stops deliveries."""
        upkeep = getattr(self.target, "upkeep", None)
        if upkeep is None:
            return
        try:
            upkeep()
        except Exception:
            log.exception("%s: upkeep between batches failed", self.crm)

    def _blocked(self, work: list[Work], exc: AccountBlocked) -> None:
        """Pause the target. The jobs whose outcome it knows are stored; the rest go back, keeping the
        mark that they may have been sent (looked up after the resume) unless the target is sure."""
        pause(self.db, self.crm, exc.message)
        self._last_probe = time.monotonic()  # the next probe waits its full interval
        known = len(exc.settled)
        self._await_outcomes()
        if known:
            self.queue.finish(work[:known], exc.settled, self.target)
        self.queue.release(work[known:], maybe_sent=exc.maybe_applied)
        self.queue.release(self._claimed_ahead() or [])

    def _claim(self) -> list[Work]:
        def prepare(session: Session, claimed) -> None:
            self.target.prepare(session, claimed, *self.settings.read(session))

        return self.queue.claim(self.target.batch_size, prepare)

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
            self.target.probe()
        except CrmError as exc:
            log.warning("%s still paused; probe failed: %s", self.crm, exc.message)
            return
        resume(self.db, self.crm)
