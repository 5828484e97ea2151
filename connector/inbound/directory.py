"""The operator directory: who is behind each extension, read from the PBX's user list when the PBX is
connected and then on a schedule, so the console names operators instead of showing bare extensions.

The schedule is a `pbx_scans` row (`operators`) shared by every process, as the quality scans' are: whoever
holds its lease reads the list. A failed read is logged, counted (`failures`, shown in `/api/v1/status` and
on the settings page with its error) and tried again after `RETRY`, never at once: every request to the PBX
spends its shared rate, and a refused one counts towards its block.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterable, Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from connector.core import lease
from connector.core.db import Database, get_or_create
from connector.core.loop import run_until_stopped, worker_id
from connector.core.models import Operator, PbxScan, Role, User
from connector.inbound.pbx import OperatorEntry, PbxError, PbxUnavailable

log = logging.getLogger(__name__)

SCAN = "operators"  # the directory's row in pbx_scans
EVERY = timedelta(hours=6)  # names change rarely
RETRY = timedelta(minutes=10)  # after a failure (or when the PBX says when, then)


def store(session: Session, entries: Iterable[OperatorEntry], now: datetime | None = None) -> int:
    """Make the directory what the PBX listed: its users upserted, those it no longer lists removed."""
    now = now or datetime.now(timezone.utc)
    listed = {e.extension: e for e in entries}
    rows = {o.extension: o for o in session.scalars(select(Operator).with_for_update())}
    for extension, row in rows.items():
        if extension not in listed:
            session.delete(row)
    for extension, entry in listed.items():
        row = rows.get(extension) or Operator(extension=extension)
        row.name, row.groups, row.seen_at = entry.name, list(entry.groups), now
        session.add(row)
    return len(listed)


def store_read(session: Session, entries: Sequence[OperatorEntry], now: datetime | None = None) -> int:
    """A read made outside the loop (when an admin connects the PBX, its check lists the users): stored, and
    the schedule starts from it, its failures forgotten."""
    now = now or datetime.now(timezone.utc)
    listed = store(session, entries, now)
    row = get_or_create(session, select(PbxScan).where(PbxScan.name == SCAN).with_for_update(),
                        lambda: PbxScan(name=SCAN, next_at=now, last_calls=0, failures=0))
    row.next_at, row.last_error, row.failures = now + EVERY, None, 0
    row.last_finished_at, row.last_calls = now, listed
    return listed


def operator_names(session: Session) -> dict[str, str]:
    """extension -> the name people know the operator by: the PBX's, else the username of the console's
    operator account linked to that extension. One read of two small tables."""
    names = {ext: name for ext, name in session.execute(select(Operator.extension, Operator.name)) if name}
    for username, extensions in session.execute(select(User.username, User.extensions).where(
            User.role == Role.OPERATOR, User.disabled.is_(False)).order_by(User.id)):
        for extension in extensions or []:
            names.setdefault(str(extension), username)
    return names


def directory_state(session: Session, now: datetime) -> dict:
    """The directory's last read, for `/api/v1/status` and the settings page."""
    row = session.get(PbxScan, SCAN)
    count = session.scalar(select(func.count()).select_from(Operator))
    if row is None:
        return {"state": "not_read", "operators": count, "last_read_at": None, "failures": 0, "last_error": None,
                "next_at": None}
    return {"state": "failing" if row.failures else "ok" if row.last_finished_at else "not_read",
            "operators": count, "last_read_at": row.last_finished_at.isoformat() if row.last_finished_at else None,
            "failures": row.failures or 0, "last_error": row.last_error,
            "next_at": row.next_at.isoformat() if row.next_at else None}


class DirectoryRefresher:
    """The background loop: reads the PBX's user list when due (EVERY; RETRY after a failure)."""

    def __init__(self, db: Database, fetch: Callable[[], Sequence[OperatorEntry]], *,
                 ready: Callable[[], bool] = lambda: True, every: timedelta = EVERY, retry: timedelta = RETRY,
                 poll_seconds: float = 30.0, lease_seconds: float = 300.0, owner: str | None = None,
                 clock=time.time):
        self.db, self.fetch, self.ready = db, fetch, ready
        self.every, self.retry = every, retry
        self.poll_seconds, self.lease_length = poll_seconds, timedelta(seconds=lease_seconds)
        self.owner = owner or worker_id()
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(f"operator directory {self.owner}", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Read the directory if it is due (and the PBX is connected); 1 when it tried, else 0."""
        if not self.ready() or not self._claim():
            return 0
        started = self.now()
        try:
            entries = self.fetch()
        except PbxUnavailable as exc:  # blocked, busy, unreachable: when the PBX allows, not before RETRY
            self._failed(exc.message, max(exc.retry_at, started + self.retry))
        except PbxError as exc:
            self._failed(exc.message, started + self.retry)
        else:
            with self.db.transaction() as s:
                listed = store(s, entries, started)
                row = self._own_row(s)
                if row is not None:
                    lease.release(row)
                    row.next_at, row.last_error, row.failures = started + self.every, None, 0
                    row.last_finished_at, row.last_calls = self.now(), listed
            log.info("operator directory: %d operator(s) read from the PBX", listed)
        return 1

    def _failed(self, message: str, next_at: datetime) -> None:
        with self.db.transaction() as s:
            row = self._own_row(s)
            if row is None:
                return
            lease.release(row)
            row.failures = (row.failures or 0) + 1
            row.last_error, row.next_at = message[:1000], next_at
            failures = row.failures
        log.warning("operator directory: reading the PBX's user list failed (%d in a row): %s; next try at %s UTC",
                    failures, message, next_at.strftime("%H:%M:%S"))

    def _row(self, s: Session) -> PbxScan:
        return get_or_create(s, select(PbxScan).where(PbxScan.name == SCAN).with_for_update(),
                             lambda: PbxScan(name=SCAN, next_at=self.now(), last_calls=0, failures=0))

    def _own_row(self, s: Session) -> PbxScan | None:
        row = s.get(PbxScan, SCAN, with_for_update=True)
        return row if lease.holds(row, self.owner) else None

    def _claim(self) -> bool:
        now = self.now()
        with self.db.transaction() as s:
            self._row(s)
            due = select(PbxScan).where(PbxScan.name == SCAN, PbxScan.next_at <= now, lease.free(PbxScan, now))
            rows = lease.claim(s, due, self.owner, now, self.lease_length.total_seconds(), skip_locked=False)
            if not rows:
                return False
            rows[0].last_started_at = now
            return True

