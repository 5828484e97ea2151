"""The bulk quality scan: the PBX's call statistics for rolling windows, applied as quality reports.

Asking about calls one by one stalls at scale: a call the contact centre never handled answers "not
found", a wrong request that counts towards the PBX's account-wide block, so such questions go at most
one per 2 minutes. Statistics list every call of a period with its marks and no per-call "not found".
So the scanner, on a schedule kept in the database (`pbx_scans`, one lease row per window, so several
processes never scan the same window at once), asks for each window's report, waits until it is ready,
and applies every listed call's marks through `quality.apply_reports` (the same lock and policy as
every score; the same marks twice change nothing). Recent calls are scanned often, older ones less
often, since supervisors evaluate calls hours or days later.

It also tells the per-call poll queue what it learnt: a call the contact centre handled may be asked
about one by one (quickly, between scans); any other call is settled here and never asked about.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from connector.core import lease
from connector.core.db import Database
from connector.core.loop import run_until_stopped, worker_id
from connector.core.models import Call, PbxPoll, PbxScan, PollStatus, ScanProblem, SurveyState
from connector.delivery.outbox import lock_calls
from connector.inbound import quality
from connector.inbound.ingest import IngestContext
from connector.inbound.mango.api import MangoApi, ReportStatus, STATS_MAX_SPAN, StatsWindow
from connector.inbound.pbx import PbxBlocked, PbxBusy, PbxCoolingDown, PbxError, PbxUnavailable, ScannedCall

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanWindow:
    """Calls of the last `span`, scanned every `every`."""

    name: str
    span: timedelta
    every: timedelta


# The customer's mark comes right after the call: the last half hour every minute. Supervisors'
# marks come later: the last day (and a margin) every 20 minutes, the last 4 days every 3 hours.
WINDOWS = (ScanWindow("recent", timedelta(minutes=30), timedelta(seconds=60)),
           ScanWindow("day", timedelta(hours=26), timedelta(minutes=20)),
           ScanWindow("days", timedelta(days=4), timedelta(hours=3)))
MARGIN = timedelta(minutes=5)  # the statistics' own lag, and clocks that differ
PAGE = 5000  # the largest page MANGO allows
MAX_PAGES = 40  # 200,000 calls in one window: beyond it, a later scan goes on
APPLY_CHUNK = 200  # calls per transaction: short locks, whatever the page
# A call the statistics never listed by then is given up on (its survey unknown): the recent window
# has listed it about 30 times.
UNSEEN_AFTER = timedelta(minutes=30)


class ScanFailed(Exception):
    """A report ended without data (cancelled, failed, expired, or never ready); the window is due again
    on its schedule."""

    def __init__(self, message: str, problem: ScanProblem):
        super().__init__(message)
        self.problem = problem


def scan_problem(exc: PbxError | ScanFailed) -> ScanProblem:
    """What a person is told of a failed scan, by the error's class (never by its text)."""
    if isinstance(exc, ScanFailed):
        return exc.problem
    if isinstance(exc, PbxCoolingDown):
        return ScanProblem.COOLING_DOWN
    if isinstance(exc, PbxBusy):
        return ScanProblem.RATE_LIMITED
    if isinstance(exc, PbxBlocked):
        return ScanProblem.BLOCKED
    if isinstance(exc, PbxUnavailable):
        return ScanProblem.UNAVAILABLE
    return ScanProblem.REFUSED


class QualityScanner:
    def __init__(self, db: Database, api: MangoApi, ctx: IngestContext, *, survey_wait_seconds: int,
                 utc_offset: timedelta, per_call: bool, windows: tuple[ScanWindow, ...] = WINDOWS,
                 poll_seconds: float = 1.0, result_poll_seconds: float = 1.0, max_result_polls: int = 120,
                 lease_seconds: float = 900.0, owner: str | None = None, clock=time.time, sleep=time.sleep):
        self.db, self.api, self.ctx = db, api, ctx
        self.survey_wait = timedelta(seconds=survey_wait_seconds)
        self.utc_offset, self.per_call, self.windows = utc_offset, per_call, {w.name: w for w in windows}
        self.poll_seconds, self.result_poll_seconds = poll_seconds, result_poll_seconds
        self.max_result_polls, self.lease_length = max_result_polls, timedelta(seconds=lease_seconds)
        self.owner = owner or worker_id()
        self.clock, self.sleep = clock, sleep
        self.requests = 0  # commands sent by this scanner (the benchmark reads it)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def run(self, stop: threading.Event) -> None:
        run_until_stopped(f"quality scanner {self.owner}", self.run_once, stop, self.poll_seconds)

    def run_once(self) -> int:
        """Scan the most overdue window, if one is due; returns 1 when it scanned, else 0."""
        window = self._claim()
        if window is None:
            self._give_up_unseen()
            return 0
        started = self.now()
        try:
            seen = self.scan(window)
        except PbxUnavailable as exc:  # blocked, rate-limited, overloaded: due again when it allows
            self._release(window, next_at=exc.retry_at, error=exc.message, problem=scan_problem(exc))
        except (PbxError, ScanFailed) as exc:
            message = exc.message if isinstance(exc, PbxError) else str(exc)
            log.warning("quality scan %s: %s", window.name, message)
            self._release(window, next_at=started + window.every, error=message, problem=scan_problem(exc))
        else:
            self._release(window, next_at=started + window.every, calls=seen)
        return 1

    # --- one window ------------------------------------------------------------------------
    def scan(self, window: ScanWindow) -> int:
        """Every page of the window's report, applied; returns how many calls were listed."""
        now = self.now()
        end = now + MARGIN
        start = max(now - window.span - MARGIN, end - STATS_MAX_SPAN)
        seen = 0
        for page_number in range(MAX_PAGES):
            page = self._report(StatsWindow(start, end, PAGE, page_number * PAGE))
            self.apply(page.calls)
            seen += page.rows
            if page.rows < PAGE:
                break
        return seen

    def _report(self, window: StatsWindow):
        self.requests += 1
        key = self.api.start_call_statistics(window, self.utc_offset)
        for _ in range(self.max_result_polls):
            self.requests += 1
            page = self.api.call_statistics(key)
            if page.status == ReportStatus.COMPLETE:
                return page
            if page.status not in (ReportStatus.REQUEST, ReportStatus.WORK):
                raise ScanFailed(f"the statistics report ended as {page.status.value}", ScanProblem.REPORT_FAILED)
            self.sleep(self.result_poll_seconds)  # a prepared report is kept for at least a minute
        raise ScanFailed("the statistics report was not ready in time", ScanProblem.REPORT_LATE)

    def apply(self, calls: tuple[ScannedCall, ...]) -> None:
        """What one page of the statistics tells of the calls this connector knows: their marks, through
        `quality.apply_reports`, a chunk of calls per transaction."""
        by_entry = {c.entry_id: c for c in calls}
        entries = sorted(by_entry)
        for first in range(0, len(entries), APPLY_CHUNK):
            self._apply_chunk([by_entry[e] for e in entries[first:first + APPLY_CHUNK]])

    def _apply_chunk(self, scanned: list[ScannedCall]) -> None:
        """One transaction: the calls this connector knows (summary in, external), locked as everywhere."""
        now = self.now()
        with self.db.transaction() as s:
            ids = dict(s.execute(select(Call.entry_id, Call.id).where(
                Call.entry_id.in_([c.entry_id for c in scanned]), Call.summary_received_at.is_not(None),
                Call.direction != "internal")).all())
            if not ids:
                return
            lock_calls(s, list(ids.values()))
            calls = {c.entry_id: c for c in s.scalars(
                select(Call).where(Call.id.in_(ids.values()))
                .options(selectinload(Call.scores), selectinload(Call.crm_records),
                         selectinload(Call.supervisor_marks)).execution_options(populate_existing=True))}
            polls = {p.call_id: p for p in s.scalars(select(PbxPoll).where(
                PbxPoll.call_id.in_(ids.values()), PbxPoll.status == PollStatus.PENDING))}
            known = [c for c in scanned if c.entry_id in calls]
            quality.apply_reports(s, self.ctx, [(calls[c.entry_id], c.report) for c in known], now=now,
                                  survey_wait=self.survey_wait)
            for item in known:
                call = calls[item.entry_id]
                poll = polls.get(call.id)
                if poll is None:
                    continue
                poll.contact_center = poll.contact_center or item.contact_center
                asked_per_call = self.per_call and poll.contact_center
                if call.survey != SurveyState.PENDING and not asked_per_call and poll.lease_owner is None:
                    # Settled, and nobody asks about it one by one: later marks come with the next scans.
                    poll.status, poll.last_error = PollStatus.DONE, None

    def _give_up_unseen(self) -> None:
        """Polls of calls the statistics never listed, long after the survey wait: nothing is known of a
        survey (as for a call the contact centre does not know)."""
        now = self.now()
        ended_before = now - self.survey_wait - UNSEEN_AFTER
        with self.db.transaction() as s:
            query = (select(PbxPoll).join(Call)
                     .where(PbxPoll.status == PollStatus.PENDING, PbxPoll.found.is_(False),
                            PbxPoll.lease_owner.is_(None), Call.ended_at < ended_before)
                     .order_by(PbxPoll.id).limit(200))
            if self.per_call:
                query = query.where(PbxPoll.contact_center.is_(False))
            polls = list(s.scalars(query))
            if not polls:
                return
            lock_calls(s, [p.call_id for p in polls])
            for poll in polls:
                s.refresh(poll.call)
                if poll.call.survey == SurveyState.PENDING:
                    poll.call.survey = None
                poll.status, poll.last_error = PollStatus.DONE, "not in the PBX's call statistics"
            log.warning("%d call(s) never appeared in the PBX's call statistics; their survey is unknown",
                        len(polls))

    # --- the schedule, shared through the database ----------------------------------------------
    def _claim(self) -> ScanWindow | None:
        now = self.now()
        with self.db.transaction() as s:
            self._ensure_rows(s, now)
            due = (select(PbxScan)
                   .where(PbxScan.name.in_(list(self.windows)), PbxScan.next_at <= now, lease.free(PbxScan, now))
                   .order_by(PbxScan.next_at).limit(1))
            rows = lease.claim(s, due, self.owner, now, self.lease_length.total_seconds(),
                               skip_locked=self.db.is_postgres)
            if not rows:
                return None
            rows[0].last_started_at = now
            return self.windows[rows[0].name]

    def _ensure_rows(self, s: Session, now: datetime) -> None:
        insert = postgresql.insert if s.get_bind().dialect.name == "postgresql" else sqlite.insert
        s.execute(insert(PbxScan.__table__).values([
            {"name": name, "next_at": now, "last_calls": 0} for name in self.windows
        ]).on_conflict_do_nothing(index_elements=["name"]))

    def _release(self, window: ScanWindow, *, next_at: datetime, error: str | None = None,
                 problem: ScanProblem | None = None, calls: int | None = None) -> None:
        with self.db.transaction() as s:
            row = s.get(PbxScan, window.name, with_for_update=True)
            if not lease.holds(row, self.owner):
                return  # the lease ran out and another process took the window
            lease.release(row)
            row.next_at, row.last_error, row.last_problem = next_at, error, problem
            if calls is not None:
                row.last_calls, row.last_finished_at = calls, self.now()
