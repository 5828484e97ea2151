"""The follow-up loop's read-back: every open follow-up's CRM task is read back from its target on a schedule,
in batches through the target's own client and shared rate limiter (`contract.TaskReader`), so a completed task
makes the follow-up done with the CRM's result (`connector.core.follow_ups.apply_read`).

A batch is claimed by stamping its `checked_at` in one short transaction, read with no transaction open, and
stored in a second: two processes never read one task at once, and a failed read (typed: TransientError,
PermanentError, AccountBlocked) is stored on each follow-up of the batch (its error and the time), counted and
logged, and tried again only at the next round: never a silent loop, nor a hot one. A paused target is not read.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta, timezone

from sqlalchemy import select

from connector.core import follow_ups
from connector.core.accounts import pause_state
from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.metrics import FOLLOW_UP_READS
from connector.core.models import FollowUp
from connector.delivery.contract import AccountBlocked, CrmError, TaskReader

log = logging.getLogger(__name__)

IDLE_SECONDS = 60.0  # a new task is read within this long; each one is read again every `every`


class FollowUpReader:
    def __init__(self, db: Database, readers: dict[str, TaskReader], *, every: timedelta,
                 clock=lambda: datetime.now(timezone.utc)):
        self.db, self.readers, self.every, self.clock = db, readers, every, clock

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("follow-up read-back", self.run_once, stop, min(IDLE_SECONDS, self.every.total_seconds()))

    def run_once(self) -> int:
        """Read one batch per target; how many follow-ups it read (or tried to)."""
        return sum(self.read_batch(name, reader) for name, reader in self.readers.items()
                   if not pause_state(self.db, name)[0])

    def read_batch(self, name: str, reader: TaskReader) -> int:
        now = self.clock()
        with self.db.transaction() as s:
            rows = follow_ups.due_for_reading(s, name, now - self.every, reader.read_batch)
            for row in rows:
                row.checked_at = now  # claimed: another process skips it until the next round
            claimed = {row.id: row.task_id for row in rows}
        if not claimed:
            return 0
        try:
            found = reader.read_tasks(sorted(set(claimed.values())))
        except (CrmError, ValueError) as exc:  # ValueError: an answer that could not be read
            self._failed(name, claimed, exc, now)
            return len(claimed)
        with self.db.transaction() as s:
            for row in s.scalars(select(FollowUp).where(FollowUp.id.in_(claimed)).with_for_update()):
                if row.task_id != claimed[row.id]:
                    continue
                # One closed in the console meanwhile keeps its closing; what the CRM says is kept beside it.
                follow_ups.apply_read(row, found.get(row.task_id), now)
                FOLLOW_UP_READS.labels(name, row.task_state).inc()
        gone = [task for task in claimed.values() if task not in found]
        if gone:
            log.warning("%s: %d follow-up task(s) no longer in the CRM (deleted there): %s", name, len(gone),
                        ", ".join(gone[:10]))
        return len(claimed)

    def _failed(self, name: str, claimed: dict[int, str], exc: Exception, now: datetime) -> None:
        kind = "blocked" if isinstance(exc, AccountBlocked) else type(exc).__name__
        error = f"{kind}: {getattr(exc, 'message', None) or exc}"
        log.warning("%s: reading %d follow-up task(s) back failed (%s); next try in %d min", name, len(claimed),
                    error, self.every.total_seconds() // 60)
        FOLLOW_UP_READS.labels(name, "failed").inc(len(claimed))
        with self.db.transaction() as s:
            for row in s.scalars(select(FollowUp).where(FollowUp.id.in_(claimed)).with_for_update()):
                follow_ups.read_failed(row, error, now)
