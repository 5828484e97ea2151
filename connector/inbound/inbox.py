"""The inbox: a webhook stores a verified raw event in one write and answers; the worker applies
stored events to their calls in batches (join, policy, outbox planning, quality polls).

- Events of one call are applied in the order they were stored (by id), also with many workers:
  a worker leaves a call's events alone while an older one is held by another worker.
- Each event is applied exactly once: it is marked applied in the transaction that applies it,
  so a crash mid-batch rolls the whole batch back and it is applied again.
- A batch costs a few round trips per kind of work, not a few per event.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from connector.core import lease
from connector.core.db import Database
from connector.core.loop import run_until_stopped
from connector.core.metrics import APPLY_LAG, EVENTS_APPLIED
from connector.core.models import InboundEvent
from connector.inbound.ingest import IngestContext, apply_messages, receive_many
from connector.inbound.pbx import CallbackRejected, InboundMessage

log = logging.getLogger(__name__)

Parser = Callable[[str, str], InboundMessage]


def claim(session: Session, *, limit: int, skip_locked: bool) -> list[InboundEvent]:
    """The oldest pending events, locked; without those of a call whose older event another worker holds."""
    pending = select(InboundEvent).where(InboundEvent.applied_at.is_(None)).order_by(InboundEvent.id).limit(limit)
    events = lease.claim_locked(session, pending, skip_locked=skip_locked)  # applied in this transaction: no lease
    if not skip_locked or not events:
        return events  # SQLite: one writer at a time, so nobody else holds any
    mine: dict[str, int] = {}
    for event in events:
        if event.entry_id is not None:
            mine.setdefault(event.entry_id, event.id)
    oldest = dict(session.execute(
        select(InboundEvent.entry_id, func.min(InboundEvent.id))
        .where(InboundEvent.applied_at.is_(None), InboundEvent.entry_id.in_(list(mine)))
        .group_by(InboundEvent.entry_id)).all())
    held_elsewhere = {entry for entry, first in mine.items() if oldest.get(entry, first) < first}
    return [e for e in events if e.entry_id not in held_elsewhere]


class InboxApplier:
    # A callback's events wait this long for company before a batch is applied: well inside the
    # 1 s the API may lag, and under load it turns many one-event batches into few large ones.
    GATHER_SECONDS = 0.05

    def __init__(self, db: Database, ctx: IngestContext, parsers: dict[str, Parser], *, batch: int = 200,
                 idle_seconds: float = 0.05, wake: threading.Event | None = None):
        self.db, self.ctx, self.parsers = db, ctx, parsers
        self.batch, self.idle_seconds, self.wake = batch, idle_seconds, wake

    def run(self, stop: threading.Event) -> None:
        run_until_stopped("inbox", self.run_once, stop, self.idle_seconds, wake=self.wake, batch=self.batch,
                          gather_seconds=self.GATHER_SECONDS)

    def run_once(self) -> int:
        """Apply one batch; returns how many events it applied."""
        try:
            return self._apply(limit=self.batch)
        except (StatementError, OverflowError) as exc:
            if isinstance(exc, OperationalError):
                raise  # the database is down: nothing was applied, the batch waits
            # One event the database refuses must not hold every later one: go one by one,
            # and set aside (applied, with the reason) the one that fails.
            log.warning("inbox: a batch failed (%s); applying its events one by one", type(exc).__name__)
            return sum(self._apply_alone() for _ in range(self.batch))

    def _apply(self, *, limit: int) -> int:
        with self.db.transaction() as s:
            events = claim(s, limit=limit, skip_locked=self.db.is_postgres)
            messages = []
            for event in events:
                try:
                    messages.append(self.parsers[event.source](event.kind, event.payload))
                except (KeyError, CallbackRejected) as exc:
                    # Verified and valid when it came; unreadable now (a source or rule removed since).
                    event.error = f"cannot be read: {getattr(exc, 'message', 'no parser for its source')}"[:255]
                    log.error("inbox: call %s event %s (%s) %s", event.entry_id, event.id, event.kind, event.error)
            apply_messages(s, self.ctx, messages)
            now = datetime.now(timezone.utc)
            for event in events:
                event.applied_at = now
        for event in events:  # committed: visible now
            APPLY_LAG.observe(max(0.0, (now - event.received_at).total_seconds()))
        EVENTS_APPLIED.inc(len(events))
        return len(events)

    def _apply_alone(self) -> int:
        try:
            return self._apply(limit=1)
        except (StatementError, OverflowError) as exc:
            if isinstance(exc, OperationalError):
                raise
            with self.db.transaction() as s:
                [event] = claim(s, limit=1, skip_locked=self.db.is_postgres) or [None]
                if event is None:
                    return 0
                event.applied_at = datetime.now(timezone.utc)
                event.error = f"the database refused it ({type(exc).__name__}); set aside"
                log.error("inbox: call %s event %s (%s) %s", event.entry_id, event.id, event.kind, event.error)
            return 1

    def drain(self) -> int:
        """Apply everything pending (tests, `connector simulate`'s in-process checks)."""
        total = 0
        while applied := self.run_once():
            total += applied
        return total


class _Ticket:
    __slots__ = ("source", "message", "done", "stored", "error")

    def __init__(self, source: str, message: InboundMessage):
        self.source, self.message = source, message
        self.done = threading.Event()
        self.stored: bool | None = None
        self.error: BaseException | None = None


class InboxWriter:
    """Group commit for the webhook. Request threads hand their verified message to one writer
    thread, which stores everything that is waiting in one transaction and one statement, then tells
    each request whether its message was new. A request is still answered only after the commit
    that holds its message; many callbacks share one commit instead of queueing for one each.

    A request says it is on its way (`on_the_way`) before it reads and checks its callback: the writer,
    holding a first message, waits for those (at most GATHER_SECONDS) so that they share its commit. Without
    that, the writer took each message the moment it came, as the others were still being checked, and
    paid a commit for each under load."""

    GATHER_SECONDS = 0.002

    def __init__(self, db: Database, *, max_batch: int = 200, wake: threading.Event | None = None):
        self.db, self.max_batch, self.wake = db, max_batch, wake
        self._queue: queue.SimpleQueue[_Ticket] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._coming = 0  # requests on their way to `submit`
        self._count = threading.Lock()

    @contextmanager
    def on_the_way(self) -> Iterator["Coming"]:
        """A request that will hand over a message unless its callback is refused: `coming.submit(...)`."""
        coming = Coming(self)
        self._add_coming(1)
        try:
            yield coming
        finally:
            coming.arrived()

    def _add_coming(self, change: int) -> None:
        with self._count:
            self._coming += change

    def submit(self, source: str, message: InboundMessage, *, timeout: float = 30.0) -> bool:
        """Store the message; True when new, False for a duplicate. Raises what the database raised."""
        if self._thread is None:
            with self._start:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                    self._thread.start()
        ticket = _Ticket(source, message)
        self._queue.put(ticket)
        if not ticket.done.wait(timeout):
            raise OperationalError("inbox writer", {}, TimeoutError("not stored in time"))
        if ticket.error is not None:
            raise ticket.error
        return bool(ticket.stored)

    def _store(self, batch: list[_Ticket]) -> None:
        with self.db.connection() as conn:
            results = receive_many(conn, [(t.source, t.message) for t in batch])
        for ticket, stored in zip(batch, results):
            ticket.stored = stored

    def _gather(self) -> list[_Ticket]:
        """The first message, what waits beside it, and what the requests on their way bring in time."""
        batch = [self._queue.get()]
        deadline = None
        while len(batch) < self.max_batch:
            try:
                batch.append(self._queue.get_nowait())
                continue
            except queue.Empty:
                if self._coming <= 0:
                    break
            deadline = deadline or time.monotonic() + self.GATHER_SECONDS
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                batch.append(self._queue.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            try:
                self._store(batch)
            except OperationalError as exc:  # the database is down: all answer 503, nothing was stored
                for ticket in batch:
                    ticket.error = exc
            except Exception:  # one message the database refuses must not fail the others
                for ticket in batch:
                    try:
                        self._store([ticket])
                    except Exception as exc:
                        ticket.error = exc
            finally:
                for ticket in batch:
                    ticket.done.set()
            if self.wake is not None:
                self.wake.set()  # the inbox worker of this process applies them


class Coming:
    """One request on its way to the writer (InboxWriter.on_the_way)."""

    __slots__ = ("writer", "on_its_way")

    def __init__(self, writer: InboxWriter):
        self.writer, self.on_its_way = writer, True

    def arrived(self) -> None:
        """It hands over its message now, or was refused: the writer no longer waits for it."""
        if self.on_its_way:
            self.on_its_way = False
            self.writer._add_coming(-1)

    def submit(self, source: str, message: InboundMessage) -> bool:
        self.arrived()  # first: the writer must not wait for the message it already holds
        return self.writer.submit(source, message)
