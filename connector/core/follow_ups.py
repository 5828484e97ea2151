"""The follow-up loop: a low customer score asks someone to call the customer back.

One follow-up per call that got a tagged (low) customer score, made in the transaction that applied the score
(`note_low_score`, then `open_noted` once for the batch); due LOW_SCORE_TASK_HOURS after the score, or when its CRM
task is, once one is made (`link_task`: the target's `on_done`). Read back on a schedule
(`connector.delivery.follow_ups`), it is done when the CRM task is completed (`apply_read`, with the CRM's result
text), and a supervisor may close it in the console (`close`) with an outcome and a note. Overdue is an open
follow-up past its due time: computed, never stored.

A second low score on the same call keeps its follow-up: the customer is still to be called back once.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, select
from sqlalchemy.orm import Session

from connector.core.models import (Call, FollowUp, FollowUpOutcome, FollowUpStatus, Score, SettingsAudit,
                                   TaskState)
from connector.core.validation import text_problem

NOTE_MAX = 500
AUDIT_SCOPE = "follow_up"  # the audit rows of closings: `follow_up`, the call's entry_id in `after`
DEFAULT_HOURS = 24  # LOW_SCORE_TASK_HOURS' default


class FollowUpFilter(enum.StrEnum):
    """The calls list's filter «Обратная связь» (`?follow_up=`)."""

    OPEN = "open"  # open, overdue or not
    OVERDUE = "overdue"  # open past its due time
    RECOVERED = "recovered"  # closed as called back and recovered


def _now() -> datetime:
    return datetime.now(timezone.utc)


def is_overdue(row: FollowUp, now: datetime | None = None) -> bool:
    return row.status == FollowUpStatus.OPEN and row.due_at < (now or _now())


def shown_status(row: FollowUp, now: datetime | None = None) -> str:
    """open, overdue or done: what a person reads."""
    return FollowUpFilter.OVERDUE.value if is_overdue(row, now) else str(row.status)


# --- made with the score, linked with the task -----------------------------------------------------------------

NOTED = "follow_ups_to_open"  # session.info: call row -> (score, hours), opened in bulk by `open_noted`


def note_low_score(session: Session, call: Call, score: Score, hours: int = DEFAULT_HOURS) -> None:
    """A call's customer score in force is now tagged: its follow-up is to be opened (`open_noted`, once per
    batch). No query here: an ingest batch of any size then costs one look-up for all its low scores."""
    session.info.setdefault(NOTED, {}).setdefault(call.id, (score, hours))


def open_noted(session: Session) -> int:
    """Open the follow-ups the transaction's low scores asked for, once per call (a call that has one keeps it):
    one query for the batch; how many it opened. Called by ingest where it plans the calls' deliveries."""
    noted = session.info.pop(NOTED, None)
    if not noted:
        return 0
    have = set(session.scalars(select(FollowUp.call_row).where(FollowUp.call_row.in_(list(noted)))))
    now = _now()
    opened = 0
    for call_row, (score, hours) in noted.items():
        if call_row in have:
            continue
        session.add(FollowUp(call_row=call_row, score=score, status=FollowUpStatus.OPEN, opened_at=now,
                             due_at=now + timedelta(hours=hours), read_failures=0))
        opened += 1
    return opened


def drop_untouched_follow_up(session: Session, call: Call) -> None:
    """A score decided again before anything went out (its line's own policy, known only from the call's summary)
    is no longer low: the follow-up its first decision asked for goes, unless a task or a person touched it."""
    if session.info.get(NOTED, {}).pop(call.id, None) is not None:
        return  # noted in this batch, not opened yet
    row = session.scalars(select(FollowUp).where(FollowUp.call_row == call.id)).first()
    if row is not None and row.status == FollowUpStatus.OPEN and row.target is None and row.closed_at is None:
        session.delete(row)


def link_task(session: Session, call_row: int, target: str, task_id: object, due_at: datetime | None) -> None:
    """A target made the CRM task of a call's low score (its `on_done`): the call's follow-up tracks it, and is
    due when it is. The first task linked stays linked (a second target's, or a later score's, is not tracked)."""
    row = session.scalars(select(FollowUp).where(FollowUp.call_row == call_row)).first()
    if row is None or row.target is not None or task_id in (None, ""):
        return
    row.target, row.task_id, row.task_state = target, str(task_id), TaskState.OPEN
    if due_at is not None:
        row.due_at = due_at


# --- read back ---------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ReadTask:
    """A CRM task as a target read it back (`connector.delivery.contract.TaskReader`)."""

    task_id: str
    completed: bool
    result_text: str | None = None
    completed_at: datetime | None = None
    due_at: datetime | None = None


def due_for_reading(session: Session, target: str, older_than: datetime, limit: int) -> list[FollowUp]:
    """Open follow-ups whose task in `target` was not read since `older_than` (never read first), locked."""
    query = (select(FollowUp)
             .where(FollowUp.target == target, FollowUp.status == FollowUpStatus.OPEN,
                    FollowUp.task_id.is_not(None), FollowUp.task_state == TaskState.OPEN,
                    (FollowUp.checked_at.is_(None)) | (FollowUp.checked_at < older_than))
             .order_by(FollowUp.checked_at.is_not(None), FollowUp.checked_at, FollowUp.id).limit(limit))
    return list(session.scalars(query.with_for_update(skip_locked=session.get_bind().dialect.name == "postgresql")))


def apply_read(row: FollowUp, found: ReadTask | None, now: datetime) -> None:
    """What one read found of the follow-up's task: completed (done, with the result), still open (its due
    time may have moved), or gone from the CRM (said, and never read again)."""
    row.checked_at, row.last_error, row.read_failures = now, None, 0
    if found is None:
        row.task_state = TaskState.DELETED
        return
    if found.due_at is not None:
        row.due_at = found.due_at
    if not found.completed:
        row.task_state = TaskState.OPEN
        return
    row.task_state = TaskState.COMPLETED
    row.crm_result = (found.result_text or "").strip()[:4000] or None
    row.crm_completed_at = found.completed_at or now
    if row.status == FollowUpStatus.OPEN:
        row.status, row.done_at = FollowUpStatus.DONE, row.crm_completed_at


def read_failed(row: FollowUp, error: str, now: datetime) -> None:
    """A read that failed: the follow-up says so (and when), and waits for the next round."""
    row.checked_at, row.last_error = now, error[:255]
    row.read_failures = (row.read_failures or 0) + 1


# --- closed in the console -----------------------------------------------------------------------------------------

class CloseProblem(enum.StrEnum):
    """Why a closing was refused (nothing written); the console says it in its own words."""

    NO_FOLLOW_UP = "no_follow_up"  # the call was never scored low
    ALREADY_CLOSED = "already_closed"  # closed once already: a closing is never overwritten
    OUTCOME = "outcome"  # not one of FollowUpOutcome
    NOTE = "note"  # longer than NOTE_MAX, or not plain text


class CloseRefused(ValueError):
    def __init__(self, problem: CloseProblem):
        super().__init__(problem.value)
        self.problem = problem


def close(session: Session, call: Call, actor: str, outcome: FollowUpOutcome | str, note: str | None,
          now: datetime | None = None) -> FollowUp:
    """A supervisor closes the call's follow-up: who, when, how it ended, a note. Audited. Raises CloseRefused
    (nothing written) for a call without one, one closed already, an unknown outcome or an unfit note."""
    row = session.scalars(select(FollowUp).where(FollowUp.call_row == call.id).with_for_update()).first()
    if row is None:
        raise CloseRefused(CloseProblem.NO_FOLLOW_UP)
    if row.closed_at is not None:
        raise CloseRefused(CloseProblem.ALREADY_CLOSED)
    try:
        outcome = FollowUpOutcome(outcome)
    except ValueError:
        raise CloseRefused(CloseProblem.OUTCOME) from None
    note = (note or "").strip() or None
    if note is not None and (len(note) > NOTE_MAX or text_problem(note, multiline=True)):
        raise CloseRefused(CloseProblem.NOTE)
    now = now or _now()
    before = {"status": row.status, "outcome": None}
    row.closed_by, row.closed_at, row.outcome, row.note = actor, now, outcome, note
    if row.status == FollowUpStatus.OPEN:
        row.status, row.done_at = FollowUpStatus.DONE, now
    session.add(SettingsAudit(scope=AUDIT_SCOPE, actor=actor, before=before,
                              after={"call_id": call.entry_id, "status": row.status, "outcome": str(outcome),
                                     "note": note}))
    return row


# --- as the API shows it -------------------------------------------------------------------------------------------

def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def follow_up_json(row: FollowUp | None, now: datetime | None = None) -> dict | None:
    if row is None:
        return None
    return {"status": shown_status(row, now), "overdue": is_overdue(row, now),
            "opened_at": _iso(row.opened_at), "due_at": _iso(row.due_at), "done_at": _iso(row.done_at),
            "task": {"target": row.target, "id": row.task_id, "state": row.task_state,
                     "result": row.crm_result, "completed_at": _iso(row.crm_completed_at),
                     "checked_at": _iso(row.checked_at), "last_error": row.last_error} if row.target else None,
            "closing": {"by": row.closed_by, "at": _iso(row.closed_at), "outcome": row.outcome,
                        "note": row.note} if row.closed_at else None}


# --- the calls list's filter -----------------------------------------------------------------------------------------

def follow_up_condition(kind: FollowUpFilter, now: datetime):
    """The calls whose follow-up is open, overdue or recovered, as a condition on `calls.id` (an IN over the
    follow-ups' own index)."""
    wanted = {FollowUpFilter.OPEN: FollowUp.status == FollowUpStatus.OPEN,
              FollowUpFilter.OVERDUE: and_(FollowUp.status == FollowUpStatus.OPEN, FollowUp.due_at < now),
              FollowUpFilter.RECOVERED: FollowUp.outcome == FollowUpOutcome.RECOVERED}[FollowUpFilter(kind)]
    return Call.id.in_(select(FollowUp.call_row).where(wanted))
