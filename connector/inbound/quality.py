"""Scores pulled from the PBX's quality control: when to ask, and what an answer changes.

After a call's summary (and `ingest.FIRST_POLL_DELAY`) the PBX is asked for the call every
`CUSTOMER_POLL_EVERY` until the customer's post-call mark is known or `SURVEY_WAIT_SECONDS` after the
end have passed; then
again at each of `SUPERVISOR_RECHECKS` after the end, because supervisors evaluate calls hours
or days later. Everything here runs inside the caller's transaction, except the pure schedule.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from connector.inbound.ingest import (SUPERVISOR, DuplicateEvent, IngestContext, add_customer_score, refresh_crm,
                              refresh_crm_many, store_event)
from connector.core.models import Call, QualityQuestion, ScoreOrigin, SupervisorMark, SurveyState
from connector.core.policy import ScoreStatus
from connector.core.runtime_settings import current_policies
from connector.inbound.pbx import InboundMessage, QualityReport, Question, dedupe_key

CUSTOMER_POLL_EVERY = timedelta(seconds=20)
SUPERVISOR_RECHECKS = (timedelta(hours=1), timedelta(hours=6), timedelta(hours=24), timedelta(hours=72))
# A call the Contact Center does not know (result 3300) is asked again after the strike window,
# at most this many times in all: each such answer counts towards MANGO's block.
MAX_MISSES = 3
MISS_RETRY = timedelta(seconds=150)


SETTLED = (SurveyState.ANSWERED, SurveyState.NO_ANSWER, SurveyState.NOT_OFFERED)


def next_poll_at(*, ended_at: datetime, now: datetime, survey_wait: timedelta, settled: bool,
                 rechecks: tuple[timedelta, ...] = SUPERVISOR_RECHECKS) -> datetime | None:
    """When to ask the PBX about a call again; None when there is nothing more to wait for.
    `rechecks`: () when another source (the bulk scan) picks up the supervisors' late marks."""
    deadline = ended_at + survey_wait
    if not settled and now < deadline:
        return min(now + CUSTOMER_POLL_EVERY, deadline)
    later = [ended_at + offset for offset in rechecks if ended_at + offset > now]
    return later[0] if later else None


def rounded_mean(values: list[int]) -> int | None:
    """The supervisor's score from a form's marks, rounded half up (4.5 -> 5, not banker's 4)."""
    if not values:
        return None
    mean = Decimal(sum(values)) / Decimal(len(values))
    return int(mean.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def unknown_questions(session: Session, report: QualityReport) -> list[str]:
    """Question ids of the report that are not cached yet (each costs one PBX request)."""
    wanted = {m.question_id for m in report.marks}
    if not wanted:
        return []
    cached = set(session.scalars(select(QualityQuestion.question_id)
                                 .where(QualityQuestion.question_id.in_(wanted))))
    return sorted(wanted - cached)


def cache_questions(session: Session, found: list[Question], missing: list[str]) -> None:
    for q in found:
        session.merge(QualityQuestion(question_id=q.question_id, known=True, name=q.name, block=q.block,
                                      form=q.form))
    for question_id in missing:
        session.merge(QualityQuestion(question_id=question_id, known=False))


def _fact_is_new(session: Session, call: Call, kind: str, value: object) -> bool:
    """Keep a polled fact in the inbox, once: the same answer polled again changes nothing."""
    payload = json.dumps(value, ensure_ascii=False, sort_keys=True)
    try:
        store_event(session, ScoreOrigin.PBX_QUALITY.value, InboundMessage(  # kept under the channel's name
            f"cc/call:{kind}", dedupe_key("cc/call", kind, call.entry_id, payload), call.entry_id, payload, None))
    except DuplicateEvent:
        return False
    return True


def apply_report(session: Session, ctx: IngestContext, call: Call, report: QualityReport, *,
                 now: datetime, survey_wait: timedelta) -> None:
    """What one answer of the PBX changes on a (locked) call."""
    policies = current_policies(session, ctx.initial_policy)
    _apply(session, call, report, policies, now=now, survey_wait=survey_wait, follow_up_hours=ctx.follow_up_hours)
    refresh_crm(session, ctx, call, policies)


def apply_reports(session: Session, ctx: IngestContext, reports: list[tuple[Call, QualityReport]], *,
                  now: datetime, survey_wait: timedelta) -> int:
    """The same for many (locked) calls at once, e.g. a page of bulk statistics; the CRM side is
    refreshed only for the calls that changed, so scanning the same window again costs no writes.
    Returns how many changed."""
    policies = current_policies(session, ctx.initial_policy)
    changed = [call for call, report in reports
               if _apply(session, call, report, policies, now=now, survey_wait=survey_wait,
                         follow_up_hours=ctx.follow_up_hours)]
    if changed:
        refresh_crm_many(session, ctx, changed, policies)
    return len(changed)


def _apply(session: Session, call: Call, report: QualityReport, policies, *, now: datetime,
           survey_wait: timedelta, follow_up_hours: int) -> bool:
    """True when the report changed the call (a new score or form, or its survey state)."""
    policy = policies.for_line(call.line_number)
    survey, changed = call.survey, False
    if report.customer_raw is not None and _fact_is_new(session, call, "customer", report.customer_raw):
        add_customer_score(session, call, policy, report.customer_raw, origin=ScoreOrigin.PBX_QUALITY, rated_at=now,
                           follow_up_hours=follow_up_hours)
        changed = True
    elif report.survey_unanswered and call.survey not in SETTLED:
        call.survey = SurveyState.NO_ANSWER
    if report.marks and _fact_is_new(session, call, "marks", [m.__dict__ for m in report.marks]):
        _replace_marks(session, call, report)
        changed = True
    ended = call.ended_at or call.summary_received_at or now
    if call.survey == SurveyState.PENDING and now >= ended + survey_wait:
        call.survey = SurveyState.NOT_OFFERED
    return changed or call.survey != survey


def _replace_marks(session: Session, call: Call, report: QualityReport) -> None:
    by_question = {m.question_id: m for m in call.supervisor_marks}
    for mark in report.marks:
        row = by_question.pop(mark.question_id, None)
        if row is None:
            call.supervisor_marks.append(SupervisorMark(question_id=mark.question_id, mark=mark.mark,
                                                        comment=mark.comment))
        else:
            row.mark, row.comment = mark.mark, mark.comment
    for stale in by_question.values():  # the supervisor removed an answer from the form
        call.supervisor_marks.remove(stale)
    # A supervisor's own rating (score API, console) stays in force over the PBX form's mean.
    if not any(s.source == SUPERVISOR and s.status == ScoreStatus.ACCEPTED for s in call.scores):
        call.supervisor_score = rounded_mean([m.mark for m in report.marks if m.mark is not None])


def marks_json(session: Session, call: Call) -> list[dict]:
    """`supervisor_marks` of the call JSON, with question names from the cache."""
    ids = [m.question_id for m in call.supervisor_marks]
    questions = {q.question_id: q for q in session.scalars(
        select(QualityQuestion).where(QualityQuestion.question_id.in_(ids)))} if ids else {}
    out = []
    for m in call.supervisor_marks:
        q = questions.get(m.question_id)
        out.append({"question": (q.name if q and q.name else m.question_id), "block": q.block if q else None,
                    "mark": m.mark, "comment": m.comment})
    return out
