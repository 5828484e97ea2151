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
import threading
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import Row, bindparam, func, select, update
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


# What applying an event reads of it: plain rows, not the ORM's objects (which cost more than applying them).
_PENDING = (select(InboundEvent.id, InboundEvent.source, InboundEvent.kind, InboundEvent.entry_id,
                   InboundEvent.payload, InboundEvent.received_at)
            .where(InboundEvent.applied_at.is_(None)).order_by(InboundEvent.id))


def claim(session: Session, *, limit: int, skip_locked: bool) -> list[Row]:
    """The oldest pending events, locked; without those of a call whose older event another worker holds."""
    # Applied in this transaction: the row locks are enough, no lease.
    events = session.execute(lease.locked(_PENDING.limit(limit), skip_locked=skip_locked)).all()
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


# A batch's events marked applied in one plain statement, beside the ORM's own work (which the commit flushes):
# through the ORM, a bulk UPDATE flushed everything pending first and cost more than the rest of a small batch.
_EVENTS = InboundEvent.__table__
_MARK_APPLIED = (update(_EVENTS).where(_EVENTS.c.id.in_(bindparam("ids", expanding=True)))
                 .values(applied_at=bindparam("now", type_=_EVENTS.c.applied_at.type)))


def _set_aside(session: Session, event: Row, error: str, *, applied_at: datetime | None = None) -> None:
    """The reason an event is not applied, kept on it for a person to read; with `applied_at` it is done with
    (else the batch's own mark, in the same transaction, does that)."""
    error = error[:255]
    done = {"applied_at": applied_at} if applied_at is not None else {}
    session.execute(update(_EVENTS).where(_EVENTS.c.id == event.id).values(error=error, **done))
    log.error("inbox: call %s event %s (%s) %s", event.entry_id, event.id, event.kind, error)


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
                    _set_aside(s, event, f"cannot be read: {getattr(exc, 'message', 'no parser for its source')}")
            apply_messages(s, self.ctx, messages)
            now = datetime.now(timezone.utc)
            if events:  # one statement for the batch, not one per event
                s.connection().execute(_MARK_APPLIED, {"ids": [e.id for e in events], "now": now})
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
                _set_aside(s, event, f"the database refused it ({type(exc).__name__}); set aside",
                           applied_at=datetime.now(timezone.utc))
            return 1

    def drain(self) -> int:
        """Apply everything pending (tests, `connector simulate`'s in-process checks)."""
        total = 0
        while applied := self.run_once():
            total += applied
        return total


class _Ticket:
    __slots__ = ("source", "message", "done", "stored", "error", "leads")

    def __init__(self, source: str, message: InboundMessage):
        self.source, self.message = source, message
        self.done = threading.Event()  # stored (or failed), or handed the lead
        self.stored: bool | None = None
        self.error: BaseException | None = None
        self.leads = False


class InboxWriter:
    """Group commit for the webhook. A request hands its verified message over and waits; whoever finds
    no commit under way leads: it stores everything that waits in one transaction and one statement, tells
    each request whether its message was new, and hands the lead to the first that came meanwhile. A
    request is still answered only after the commit that holds its message; many callbacks share one
    commit instead of queueing for one each.

    The requests lead in turn, rather than a writer thread of its own: on a busy interpreter every hand-over
    between threads waits for its turn, and a writer thread was one more for each commit (`bench/ingest.py`)."""

    def __init__(self, db: Database, *, max_batch: int = 200, wake: threading.Event | None = None):
        self.db, self.max_batch, self.wake = db, max_batch, wake
        self._lock = threading.Lock()
        self._waiting: list[_Ticket] = []
        self._leading = False  # a commit is under way (then every waiting ticket has a leader to come)

    @property
    def waiting(self) -> int:
        """Callbacks waiting for their commit now."""
        return len(self._waiting)

    def submit(self, source: str, message: InboundMessage, *, timeout: float = 30.0) -> bool:
        """Store the message; True when new, False for a duplicate. Raises what the database raised."""
        ticket = _Ticket(source, message)
        with self._lock:
            self._waiting.append(ticket)
            ticket.leads = not self._leading
            self._leading = True
        if not ticket.leads and not ticket.done.wait(timeout):
            with self._lock:
                if not ticket.leads and ticket in self._waiting:  # given up: nobody may hand it the lead
                    self._waiting.remove(ticket)
                    raise OperationalError("inbox writer", {}, TimeoutError("not stored in time"))
            ticket.done.wait()  # handed the lead or stored in the meantime
        if ticket.leads and ticket.stored is None and ticket.error is None:
            self._lead()
        if ticket.error is not None:
            raise ticket.error
        return bool(ticket.stored)

    def _lead(self) -> None:
        """Store what waits (this request's message first among it), then hand the lead on."""
        with self._lock:
            batch, self._waiting = self._waiting[:self.max_batch], self._waiting[self.max_batch:]
        try:
            self._store_batch(batch)
        finally:  # whatever happened, the lead goes on: nobody waits for a leader that is gone
            for ticket in batch:
                if ticket.stored is None and ticket.error is None:  # the leader died mid-commit: never "stored"
                    ticket.error = OperationalError("inbox writer", {}, InterruptedError("the commit was cut short"))
            with self._lock:
                successor = self._waiting[0] if self._waiting else None
                if successor is None:
                    self._leading = False
                else:
                    successor.leads = True
            for ticket in batch:
                ticket.done.set()
            if successor is not None:
                successor.done.set()
            if self.wake is not None:
                self.wake.set()  # the inbox worker of this process applies them

    def _store_batch(self, batch: list[_Ticket]) -> None:
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

    def _store(self, batch: list[_Ticket]) -> None:
        messages = [(t.source, t.message) for t in batch]
        results = self.db.write_statement(lambda conn: receive_many(conn, messages))
        for ticket, stored in zip(batch, results):
            ticket.stored = stored
