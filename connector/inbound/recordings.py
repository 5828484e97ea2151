"""Recordings: when the PBX may be asked for a file, and the copies kept for targets that download it.

Every wrong request counts towards the PBX's account-wide 2-minute block, so:
- a recording the PBX says it does not have is remembered for `UNAVAILABLE_FOR`: nobody asks again
  until then;
- right after the PBX says a file is in its cloud, a fetch may still find none (the vendor warns of it
  under load). The first fetch waits `FIRST_FETCH_DELAY`; until `SETTLING` has passed a fetch is a
  "probing" request (sent only when no other wrong request is in the 2-minute window, one at a time),
  and a miss is "not ready yet", never "the PBX lacks it".

Copies: a target that downloads recordings inside its own request (a CRM portal attaching the file)
would otherwise spend the PBX's few files a second at delivery time, and wait for the PBX inside the
portal's request. So while such a target still has to fetch a call's recording, `RecordingCopier` copies
the file once, at the PBX's pace and ahead of delivery; the player's link serves the copy; a copy goes
once no job waits for it (or after `COPY_KEEP` at most). A copy that fails is not tried again: the link
then asks the PBX itself, as without copies, and the delivery job counts its own tries.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import delete, exists, func, select, update

from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.metrics import RECORDING_COPIES
from connector.core.models import Call, DeliveryJob, JobStatus, RecordingCopy
from connector.inbound.pbx import PbxUnavailable, PbxWrongRequest, RecordingFile

log = logging.getLogger(__name__)

UNAVAILABLE_FOR = timedelta(minutes=3)
FIRST_FETCH_DELAY = timedelta(seconds=45)
SETTLING = timedelta(minutes=5)
COPY_KEEP = timedelta(days=2)  # the longest a copy stays, whatever still waits for it
COPIES_PER_ROUND = 20


@dataclass(frozen=True)
class NotReady:
    """Not yet: ask again in `seconds` (the PBX is still storing the file)."""

    seconds: float
    why: str


@dataclass(frozen=True)
class Missing:
    why: str


@dataclass(frozen=True)
class Fetch:
    """Ask the PBX; `probing` while the file may not have settled (a miss is then "not yet")."""

    probing: bool


def fetch_plan(recording_id: str | None, unavailable_until: datetime | None, stored_at: datetime | None,
               now: datetime) -> NotReady | Missing | Fetch:
    """Whether the PBX may be asked for a call's recording now, from what the connector knows of it."""
    if not recording_id:
        return Missing("recording not ready yet: the PBX has not reported a recording in its cloud")
    settling = stored_at is not None and now < stored_at + SETTLING
    if stored_at is not None and now < stored_at + FIRST_FETCH_DELAY:
        return NotReady((stored_at + FIRST_FETCH_DELAY - now).total_seconds(), "the PBX is still storing the recording")
    if unavailable_until and unavailable_until > now:
        if settling:
            return NotReady((unavailable_until - now).total_seconds(), "the PBX has not stored the recording yet")
        return Missing("recording not available: the PBX had no file for it moments ago; try again later")
    return Fetch(probing=settling)


def unavailable_hold(probing: bool, probe_hold: timedelta) -> timedelta:
    """How long a miss keeps everyone from asking again: a probing miss as long as the PBX holds it against
    the account (`probe_hold`, MANGO's strike window)."""
    return probe_hold if probing else UNAVAILABLE_FOR


class RecordingCopier:
    """Copies the recordings that jobs of `kinds` (the targets that download recordings) still wait for,
    one at a time at the PBX's pace; deletes copies nothing waits for. Several processes may run it:
    a call is claimed by stamping `recording_copy_tried_at` before the fetch."""

    def __init__(self, db: Database, fetch: Callable[[str], RecordingFile], kinds: Iterable[str], *,
                 max_bytes: int, poll_seconds: float = 1.0, clock=lambda: datetime.now(timezone.utc),
                 ready: Callable[[], bool] = lambda: True):
        self.db, self.fetch, self.kinds = db, fetch, tuple(kinds)
        self.ready = ready  # the PBX's key and salt are set: until then nothing is fetched (nor given up on)
        self.max_bytes, self.poll_seconds, self.clock = max_bytes, poll_seconds, clock

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("recording copier", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Copy what is due and prune; returns how many copies were made."""
        self.prune()
        if not self.ready():
            return 0
        claimed = self._claim()
        copied = 0
        for n, (call_id, recording_id) in enumerate(claimed):
            outcome = self._copy(call_id, recording_id)
            if outcome is None:  # the PBX hands out nothing now: the rest of the round waits too
                self._unclaim([c for c, _ in claimed[n:]])
                break
            copied += outcome
        return copied

    def _waiting(self):
        """Jobs of a downloading target that still have to fetch the call's recording."""
        return exists().where(DeliveryJob.call_id == Call.id, DeliveryJob.kind.in_(self.kinds),
                              DeliveryJob.status.in_((JobStatus.PENDING, JobStatus.WAITING)))

    def _due(self, now: datetime):
        settled = now - SETTLING  # a copy never probes: it must not spend the account's one tolerated miss
        return (select(Call.id, Call.recording_id)
                .where(Call.recording_id.is_not(None), Call.recording_copy_tried_at.is_(None),
                       (Call.recording_stored_at.is_(None)) | (Call.recording_stored_at <= settled),
                       (Call.recording_unavailable_until.is_(None)) | (Call.recording_unavailable_until <= now),
                       self._waiting(),
                       ~exists().where(RecordingCopy.recording_id == Call.recording_id))
                .order_by(Call.id).limit(COPIES_PER_ROUND))

    def _claim(self) -> list[tuple[int, str]]:
        now = self.clock()
        with self.db.reading() as session:  # idle rounds never take the writer's lock (SQLite's is the PBX's too)
            if not session.execute(self._due(now)).first():
                return []
        with self.db.transaction() as session:
            stored = session.scalar(select(func.coalesce(func.sum(RecordingCopy.size), 0)))
            if stored >= self.max_bytes:
                log.warning("recording copies: %d bytes kept, the limit; new recordings go through the PBX's "
                            "link until some are delivered", stored)
                RECORDING_COPIES.labels("over_limit").inc()
                return []
            rows = session.execute(self._due(now)).all()
            if rows:
                session.execute(update(Call).where(Call.id.in_([r.id for r in rows]),
                                                   Call.recording_copy_tried_at.is_(None))
                                .values(recording_copy_tried_at=now))
        return [(r.id, r.recording_id) for r in rows]

    def _unclaim(self, call_ids: list[int]) -> None:
        with self.db.transaction() as session:
            session.execute(update(Call).where(Call.id.in_(call_ids)).values(recording_copy_tried_at=None))

    def _copy(self, call_id: int, recording_id: str) -> bool | None:
        """True: copied; False: not copied, for good; None: not now (the PBX is blocked or busy)."""
        try:
            file = self.fetch(recording_id)
        except PbxWrongRequest as exc:
            with self.db.transaction() as session:
                session.execute(update(Call).where(Call.id == call_id)
                                .values(recording_unavailable_until=self.clock() + UNAVAILABLE_FOR))
            log.warning("recording copy: the PBX has no file for call %d (result %s)", call_id, exc.result)
            RECORDING_COPIES.labels("missing").inc()
            return False
        except PbxUnavailable as exc:  # not now: tried again in a later round
            log.info("recording copy: the PBX cannot hand out files now (%s)", exc.message)
            RECORDING_COPIES.labels("deferred").inc()
            return None
        except Exception as exc:  # noqa: BLE001 - the link asks the PBX itself; the job counts its tries
            log.warning("recording copy of call %d failed: %s", call_id, exc)
            RECORDING_COPIES.labels("failed").inc()
            return False
        with self.db.transaction() as session:
            if session.get(RecordingCopy, recording_id) is None:
                session.add(RecordingCopy(recording_id=recording_id, body=file.body, size=len(file.body),
                                          content_type=file.content_type[:64], fetched_at=self.clock()))
        RECORDING_COPIES.labels("copied").inc()
        return True

    def prune(self) -> int:
        """Delete the copies no job waits for, and those older than COPY_KEEP."""
        now = self.clock()
        with self.db.reading() as session:  # most rounds have no copy to look at: no write then
            if session.scalar(select(func.count()).select_from(RecordingCopy)) == 0:
                return 0
        waiting = exists().where(Call.recording_id == RecordingCopy.recording_id, self._waiting())
        with self.db.transaction() as session:
            result = session.execute(delete(RecordingCopy).where(
                ~waiting | (RecordingCopy.fetched_at < now - COPY_KEEP)).execution_options(synchronize_session=False))
        return result.rowcount or 0
