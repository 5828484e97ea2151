"""Use cases of the inbound side: store an event, join it to its call, attach a score.

Every function runs inside the caller's transaction; the caller acknowledges the
sender only after that transaction commits.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import Boolean, bindparam, select, text
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session, joinedload

from connector.delivery import outbox
from connector.delivery.alerts.planning import AlertContext, plan_alerts
from connector.core.models import (NO_TARGET, Call, CrmRecord, DeliveryStatus, PbxPoll, PollStatus, Score, ScoreOrigin,
                              ScoreSource, SurveyState, UTCDateTime, crm_summary)
from connector.core.follow_ups import DEFAULT_HOURS, drop_untouched_follow_up, note_low_score, open_noted
from connector.core.notifications import notify_low_score
from connector.core.runtime_settings import current_policies
from connector.inbound.link.sms import apply_report
from connector.inbound.pbx import CallState, CallSummary, Digits, InboundMessage, Recording, SmsReport, dedupe_key
from connector.core.policy import (Decision, Policies, Policy, ScoreStatus, decide, decide_again,
                                 parse_score)

CUSTOMER, SUPERVISOR = ScoreSource.CUSTOMER, ScoreSource.SUPERVISOR


class DuplicateEvent(Exception):
    """The same message was stored before; nothing changed."""


@dataclass(frozen=True)
class IngestContext:
    initial_policy: Policy  # seeds the runtime settings on first use
    targets: tuple[outbox.Planning, ...] = ()  # where calls go, each independently (none: store and report)
    survey_location: str = ""  # the IVR location whose digits are the customer's score
    poll_quality: bool = False  # ask the PBX's quality control for each call's scores (MANGO_QUALITY_API)
    alerts: AlertContext | None = None  # who hears of low scores (None: nobody, as in tools and tests)
    follow_up_hours: int = DEFAULT_HOURS  # a low score's follow-up is due this long after it (LOW_SCORE_TASK_HOURS)


FIRST_POLL_DELAY = timedelta(seconds=5)  # the summary can come a moment before the PBX saves the mark


def call_for_update(session: Session, entry_id: str) -> Call:
    """The call row for `entry_id`, created by whichever event comes first, locked for this transaction."""
    return calls_for_update(session, [entry_id])[entry_id]


def calls_for_update(session: Session, entry_ids: list[str]) -> dict[str, Call]:
    """The calls of these entry_ids, created where missing (one statement), locked in id order,
    with their scores and CRM records loaded: two round trips whatever the number of calls. The relations come
    joined in the same query (a call has a few of each), which cost a third of what two more queries did."""
    wanted = sorted(set(entry_ids))
    now = datetime.now(timezone.utc)
    session.execute(_NEW_CALLS, [{"entry_id": e, "first_seen_at": now, "listed_at": now, "updated_at": now,
                                  "decision_record": False} for e in wanted])
    rows = session.scalars(select(Call).where(Call.entry_id.in_(wanted)).order_by(Call.id).with_for_update(of=Call)
                           .options(joinedload(Call.scores), joinedload(Call.crm_records))
                           .execution_options(populate_existing=True)).unique()
    return {call.entry_id: call for call in rows}


# The calls an ingest batch needs, created where missing: one row's statement run for many rows (executemany).
# Written out, as SQLite and PostgreSQL both read it: SQLAlchemy's own INSERT ... ON CONFLICT is compiled again
# at every use (its dialects' inserts are not cached), which cost every batch a compilation.
_NEW_CALLS = text("INSERT INTO calls (entry_id, first_seen_at, listed_at, updated_at, decision_record) "
                  "VALUES (:entry_id, :first_seen_at, :listed_at, :updated_at, :decision_record) "
                  "ON CONFLICT (entry_id) DO NOTHING").bindparams(
    bindparam("entry_id", type_=Call.__table__.c.entry_id.type),
    *(bindparam(name, type_=UTCDateTime()) for name in ("first_seen_at", "listed_at", "updated_at")),
    bindparam("decision_record", type_=Boolean()))


_COLUMNS = ("source", "kind", "dedupe_key", "entry_id", "payload", "received_at", "applied_at")


@functools.lru_cache(maxsize=512)
def _receive_statement(rows: int, placeholder: str) -> str:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING for `rows` messages, in the driver's own placeholders,
    written once per size: the same statement for SQLite and PostgreSQL."""
    values = ", ".join(["(" + ", ".join([placeholder] * len(_COLUMNS)) + ")"] * rows)
    return (f"INSERT INTO inbound_events ({', '.join(_COLUMNS)}) VALUES {values} "
            "ON CONFLICT (source, dedupe_key) DO NOTHING RETURNING source, dedupe_key")


@functools.lru_cache(maxsize=8)
def _stamp_for(dialect: Dialect):
    """How the driver is handed a moment, as SQLAlchemy hands it (UTCDateTime: naive UTC; SQLite: its text)."""
    return UTCDateTime().dialect_impl(dialect).bind_processor(dialect)


def receive_many(conn: Session | Connection, messages: list[tuple[str, InboundMessage]], *,
                 applied: bool = False) -> list[bool]:
    """Keep verified raw messages in the inbox in one statement; for each, True when it is new, False for
    a duplicate of one stored before or earlier in the list (nothing changed). `applied`: nothing is
    left to apply.

    The statement goes straight to the driver, in `conn`'s transaction: on this path (the webhook's group
    commit) SQLAlchemy's own work per statement, held up by every other thread wanting the interpreter,
    cost more than the insert (docs/performance.md)."""
    now = datetime.now(timezone.utc)
    first: dict[tuple[str, str], int] = {}
    for index, (source, message) in enumerate(messages):
        first.setdefault((source, message.dedupe_key), index)
    unique = [messages[i] for i in sorted(first.values())]
    connection = conn.connection() if isinstance(conn, Session) else conn
    dialect = connection.dialect
    stamp = _stamp_for(dialect)(now)
    params = []
    for source, m in unique:
        params += (source, m.kind, m.dedupe_key, m.entry_id, m.payload, stamp,
                   stamp if applied or m.event is None else None)
    statement = _receive_statement(len(unique), "?" if dialect.paramstyle == "qmark" else "%s")
    cursor = connection.connection.cursor()
    try:
        # The driver's cursor, through SQLAlchemy's own hook for a statement it did not build: its events
        # (what counts statements) and its errors (a driver's error raised as SQLAlchemy's) as for any other.
        connection._cursor_execute(cursor, statement, params)
        stored = {(row[0], row[1]) for row in cursor.fetchall()}
    finally:
        cursor.close()
    return [(source, m.dedupe_key) in stored and first[(source, m.dedupe_key)] == index
            for index, (source, m) in enumerate(messages)]


def receive(conn: Session | Connection, source: str, message: InboundMessage, *, applied: bool = False) -> bool:
    """Keep one verified raw message in the inbox; False for a duplicate (nothing changed)."""
    return receive_many(conn, [(source, message)], applied=applied)[0]


def store_event(session: Session, source: str, message: InboundMessage) -> None:
    """Keep a message that is applied in this same transaction; raise DuplicateEvent if seen before."""
    if not receive(session, source, message, applied=True):
        raise DuplicateEvent(f"duplicate {message.kind}: already stored")


def apply_messages(session: Session, ctx: IngestContext, messages: list[InboundMessage]) -> None:
    """Apply stored PBX messages, in order, to their calls: a few round trips for the whole batch."""
    events = [m.event for m in messages if m.event is not None and not isinstance(m.event, SmsReport)]
    for report in (m.event for m in messages if isinstance(m.event, SmsReport)):
        apply_report(session, report, datetime.now(timezone.utc))  # a rating request's, not a call's
    if not events:
        return
    calls = calls_for_update(session, [e.entry_id for e in events])
    policies = current_policies(session, ctx.initial_policy)
    for event in events:
        _apply_event(session, ctx, calls[event.entry_id], event, policies)
    refresh_crm_many(session, ctx, list(calls.values()), policies)


def _apply_event(session: Session, ctx: IngestContext, call: Call, event, policies: Policies) -> None:
    policy = policies.for_line(call.line_number)
    if isinstance(event, CallState):
        _apply_call_state(call, event)
    elif isinstance(event, CallSummary):
        line_was_known = call.line_number is not None
        _apply_summary(call, event)
        if not line_was_known and policies.for_line(call.line_number) != policy:
            _decide_again(session, call, policies.for_line(call.line_number), ctx.follow_up_hours)
        if ctx.poll_quality and call.direction != "internal":
            call.survey = call.survey or SurveyState.PENDING
            session.add(PbxPoll(call=call, status=PollStatus.PENDING, found=False, polls=0, misses=0,
                                not_before=datetime.now(timezone.utc) + FIRST_POLL_DELAY))
    elif isinstance(event, Recording):
        if event.playable:
            if event.stored and (call.recording_stored_at is None or call.recording_id != event.recording_id):
                call.recording_stored_at = datetime.now(timezone.utc)
            call.recording_id = event.recording_id
            call.recording_unavailable_until = None
    elif isinstance(event, Digits):
        if ctx.survey_location and event.location == ctx.survey_location:
            add_customer_score(session, call, policy, event.digits, origin=ScoreOrigin.PBX_SURVEY, rated_at=event.at,
                               follow_up_hours=ctx.follow_up_hours)


def _apply_call_state(call: Call, event: CallState) -> None:
    # Events arrive out of order; an older seq must not overwrite a newer state.
    if call.last_event_seq is not None and event.seq <= call.last_event_seq:
        return
    call.last_event_seq = event.seq
    call.last_call_state = event.state
    call.line_number = call.line_number or event.line_number


def _apply_summary(call: Call, s: CallSummary) -> None:
    call.direction = s.direction
    call.operator_extension = s.operator_extension
    call.customer_phone = s.customer_phone
    call.line_number = s.line_number or call.line_number
    call.created_at, call.forwarded_at = s.created_at, s.forwarded_at
    call.listed_at = s.created_at or call.first_seen_at
    call.talk_started_at, call.ended_at = s.talk_started_at, s.ended_at
    call.talk_seconds = s.talk_seconds
    call.entry_result, call.disconnect_reason = s.entry_result, s.disconnect_reason
    call.summary_received_at = datetime.now(timezone.utc)
    # A survey score usually comes before the summary: give it the operator it rated.
    for score in call.scores:
        if score.operator_extension is None:
            score.operator_extension = s.operator_extension


def _decide_again(session: Session, call: Call, policy: Policy, follow_up_hours: int) -> None:
    """The score came before the call's line was known, and that line has its own policy. Nothing went
    to the CRM yet (the call is logged after its summary), so the score in force is simply decided again, and
    the call's follow-up follows its tag (one opened by the first decision, untouched since, goes)."""
    if call.customer_score is None:
        return
    in_force = next((s for s in reversed(call.scores) if s.source == CUSTOMER
                     and s.status == ScoreStatus.ACCEPTED and s.value == call.customer_score), None)
    if in_force is None:
        return
    decision = decide_again(policy, call.customer_score)
    in_force.record, in_force.tag, in_force.reason = decision.record, decision.tag, decision.reason[:255]
    in_force.high_scores = decision.high_scores
    was_low = call.decision_tag is not None
    _put_in_force(call, decision)
    if decision.tag and not was_low:
        note_low_score(session, call, in_force, follow_up_hours)
    elif was_low and not decision.tag:
        drop_untouched_follow_up(session, call)


def _put_in_force(call: Call, decision: Decision) -> None:
    call.customer_score = decision.value
    call.decision_record = decision.record
    call.decision_tag = decision.tag
    call.decision_reason = decision.reason[:255]
    call.decision_high_scores = decision.high_scores


def add_customer_score(session: Session, call: Call, policy: Policy, raw: str | int, *, origin: str,
                       rated_at: datetime, comment: str | None = None, operator: str | None = None,
                       follow_up_hours: int = DEFAULT_HOURS) -> Decision:
    """Store a customer score and, when it is in force, put its decision on the call; a tagged one asks for the
    call's follow-up, due `follow_up_hours` (LOW_SCORE_TASK_HOURS) later, which `refresh_crm_many` opens: every
    caller refreshes the call's deliveries after it."""
    decision = decide(policy, raw, previous=call.customer_score, rated_at=rated_at,
                      call_ended_at=call.ended_at)
    score = Score(call=call, source=CUSTOMER, origin=origin, raw=str(raw)[:64], value=decision.value,
                  status=decision.status, reason=decision.reason[:255], record=decision.record,
                  tag=decision.tag, tag_to_remove=decision.tag_to_remove, high_scores=decision.high_scores,
                  comment=comment, operator_extension=operator or call.operator_extension, rated_at=rated_at)
    session.add(score)
    if decision.status != ScoreStatus.REFUSED:
        call.survey = SurveyState.ANSWERED
    if decision.in_force:
        was_low = call.decision_tag is not None
        _put_in_force(call, decision)
        if decision.tag and not was_low:  # a low score replacing a low one: the call is no newer news
            notify_low_score(session, call)
        if decision.tag:  # someone is to call the customer back: opened by refresh_crm_many, once per call
            note_low_score(session, call, score, follow_up_hours)
    return decision


def add_supervisor_score(session: Session, call: Call, policy: Policy, raw: str | int, *, origin: str,
                         rated_at: datetime, comment: str | None = None,
                         operator: str | None = None) -> Score:
    """A supervisor's rating sits beside the customer's; the newest supervisor rating is in force."""
    try:
        value, status, reason = parse_score(raw, policy), ScoreStatus.ACCEPTED, "supervisor rating"
    except ValueError as exc:
        value, status, reason = None, ScoreStatus.REFUSED, str(exc)
    score = Score(call=call, source=SUPERVISOR, origin=origin, raw=str(raw)[:64], value=value,
                  status=status, reason=reason[:255], comment=comment,
                  operator_extension=operator or call.operator_extension, rated_at=rated_at)
    session.add(score)
    if value is not None:
        call.supervisor_score = value
    return score


@dataclass(frozen=True)
class ScoreOutcome:
    """What became of a score sent to the score API, whichever source it came from."""

    status: ScoreStatus
    reason: str


def ingest_api_score(session: Session, ctx: IngestContext, message_id: str, payload: str,
                     score: dict) -> tuple[Call, ScoreOutcome]:
    """A score from the generic score API (already verified and validated)."""
    message = InboundMessage("scores", dedupe_key(message_id), score["call_id"], payload, None)
    store_event(session, "scores_api", message)
    call = call_for_update(session, score["call_id"])
    policies = current_policies(session, ctx.initial_policy)
    policy = policies.for_line(call.line_number)
    if score["source"] == CUSTOMER:
        result = add_customer_score(session, call, policy, score["score"], origin=ScoreOrigin.API,
                                    rated_at=score["rated_at"], comment=score.get("comment"),
                                    operator=score.get("operator"), follow_up_hours=ctx.follow_up_hours)
    else:
        result = add_supervisor_score(session, call, policy, score["score"], origin=ScoreOrigin.API,
                                      rated_at=score["rated_at"], comment=score.get("comment"),
                                      operator=score.get("operator"))
    if score.get("phone") and not call.customer_phone:
        call.customer_phone = score["phone"]
    refresh_crm(session, ctx, call, policies)
    return call, ScoreOutcome(ScoreStatus(result.status), result.reason)


def refresh_crm(session: Session, ctx: IngestContext, call: Call, policies: Policies) -> None:
    refresh_crm_many(session, ctx, [call], policies)


def refresh_crm_many(session: Session, ctx: IngestContext, calls: list[Call], policies: Policies) -> None:
    """Keep the calls' records in every target in step and enqueue what each target now needs (the
    outbox sends it). One record per target; with none, one `none` record says it is stored only."""
    open_noted(session)  # the follow-ups the batch's low scores asked for, before the jobs that link to them
    names = [t.name for t in ctx.targets] or [NO_TARGET]
    active: dict[str, list[int]] = {name: [] for name in names}
    for call in calls:
        records = {r.crm: r for r in call.crm_records}
        for name in names:
            record = records.get(name)
            if record is None:
                record = CrmRecord(call=call, crm=name, status=DeliveryStatus.PENDING, attempts=0)
                session.add(record)
            if record.status in (DeliveryStatus.PENDING, DeliveryStatus.SKIPPED) and record.logged_at is None:
                if name == NO_TARGET:
                    record.status, record.reason = DeliveryStatus.SKIPPED, "no CRM configured: stored and reported only"
                elif call.direction == "internal":
                    record.status, record.reason = DeliveryStatus.SKIPPED, "internal call"
                elif not policies.for_line(call.line_number).enabled:
                    record.status, record.reason = DeliveryStatus.SKIPPED, "feature off"
                else:
                    record.status, record.reason = DeliveryStatus.PENDING, None
            if record.status != DeliveryStatus.SKIPPED:
                active[name].append(call.id)
        call.crm_status = crm_summary(call.crm_records)
    if any(active.values()):
        session.flush()  # the outbox reads the new rows (score ids, the records)
    planned = [t for t in ctx.targets if active[t.name]]
    if planned:  # one load for every target: 4 queries a batch however many targets
        deliveries = outbox.load_targets(session, tuple(t.name for t in planned),
                                         sorted({i for t in planned for i in active[t.name]}))
        for target in planned:
            for call_id in active[target.name]:
                delivery = deliveries[target.name][call_id]
                target.plan(session, delivery)
                outbox.refresh_record(delivery)
    if ctx.alerts is not None:
        plan_alerts(session, ctx.alerts, calls)
