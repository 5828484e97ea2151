"""Reading calls: filters, pages, and the call as the API shows it."""
from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import false, func, select, tuple_
from sqlalchemy.orm import Session, selectinload

from connector.core.follow_ups import FollowUpFilter, follow_up_condition, follow_up_json
from connector.core.models import (CHANNELS, NO_TARGET, Call, CrmRecord, DeliveryJob, DeliveryStatus, InboundEvent, JobStatus,
                                   RatingRequest, ScoreOrigin)
from connector.core.validation import text_problem

REVIEW = ScoreOrigin.REVIEW  # the origin of a supervisor score given in the console or by POST .../reviews


@dataclass(frozen=True)
class CallFilter:
    score_lte: int | None = None
    score_gte: int | None = None
    operator: str | None = None
    line: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    tagged: bool | None = None
    crm_status: str | None = None
    supervisor_rated: bool | None = None
    follow_up: FollowUpFilter | None = None  # «Обратная связь»: open, overdue or recovered
    visible_extensions: tuple[str, ...] | None = None  # an operator's own; None: every call


COUNT_CAP = 10_000  # a list counts at most this many: enough for a page count, cheap on millions


class Sort(enum.StrEnum):
    """The orders a list can be read in. Each is a keyset over an index of migration 0006, so a deep page
    costs what the first one does. Sorting by score lists rated calls only (an unrated call has no place
    in that order); among equal scores the order follows the time the same way."""

    NEWEST = "newest"
    OLDEST = "oldest"
    LOWEST_SCORE = "lowest_score"  # score ascending, then oldest first: the worst, longest-waiting first
    HIGHEST_SCORE = "highest_score"

    @property
    def by_score(self) -> bool:
        return self in (Sort.LOWEST_SCORE, Sort.HIGHEST_SCORE)

    @property
    def descending(self) -> bool:
        return self in (Sort.NEWEST, Sort.HIGHEST_SCORE)

    def key(self) -> tuple:
        return (Call.customer_score, Call.listed_at, Call.id) if self.by_score else (Call.listed_at, Call.id)


# `after`: a position in a list, `[score_]microseconds_id` (the score, when the call has one; its listed_at
# as microseconds since 1970 UTC; its row id). Opaque to clients, but bounded so that every cursor the
# pattern admits fits the databases' integers; the OpenAPI document states the same pattern.
CURSOR_PATTERN = r"^(?:(-?[0-9]{1,9})_)?(-?[0-9]{1,18})_([0-9]{1,18})$"
_CURSOR = re.compile(CURSOR_PATTERN.removeprefix("^").removesuffix("$"))
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_EARLIEST = (datetime.min.replace(tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND
_LATEST = (datetime.max.replace(tzinfo=timezone.utc) - _EPOCH) // _MICROSECOND


@dataclass(frozen=True)
class Cursor:
    """A position: just after this call. `_links.next` carries one; every sort reads it, each by its own key:
    the time orders by (listed_at, id), the score orders by (score, listed_at, id). So a cursor taken under
    one sort continues from that call's place under another, and one past the data gives an empty page.
    A cursor without a score (after an unrated call, which the score orders do not list) lies past their
    end."""

    listed_at: datetime
    call_id: int
    score: int | None = None  # the call's score, when it has one

    @classmethod
    def after_call(cls, call: Call) -> "Cursor":
        return cls(call.listed_at, call.id, call.customer_score)

    def values(self, sort: Sort) -> tuple:
        return (self.score, self.listed_at, self.call_id) if sort.by_score else (self.listed_at, self.call_id)

    def encode(self) -> str:
        micros = (self.listed_at - _EPOCH) // _MICROSECOND
        return f"{micros}_{self.call_id}" if self.score is None else f"{self.score}_{micros}_{self.call_id}"

    @classmethod
    def decode(cls, text: str) -> "Cursor":
        """Raises ValueError for anything that does not match CURSOR_PATTERN. A moment beyond the years a
        datetime holds is the earliest or latest one: before or after every call, as it says."""
        match = _CURSOR.fullmatch(text)
        if match is None:
            raise ValueError("not a cursor from _links.next")
        score, micros, call_id = match.groups()
        micros = min(max(int(micros), _EARLIEST), _LATEST)
        return cls(_EPOCH + micros * _MICROSECOND, int(call_id), None if score is None else int(score))


@dataclass
class CallPage:
    calls: list[Call]
    total: int  # the matching calls, counted up to COUNT_CAP
    total_capped: bool  # true: there are at least `total`
    next_cursor: Cursor | None


def filtered_calls(flt: CallFilter):
    query = select(Call)
    if flt.score_lte is not None:
        query = query.where(Call.customer_score <= flt.score_lte)
    if flt.score_gte is not None:
        query = query.where(Call.customer_score >= flt.score_gte)
    if flt.operator:
        query = query.where(Call.operator_extension == flt.operator)
    if flt.line:
        query = query.where(Call.line_number == flt.line)
    if flt.date_from:
        query = query.where(Call.listed_at >= flt.date_from)
    if flt.date_to:
        query = query.where(Call.listed_at < flt.date_to)
    if flt.tagged is not None:
        query = query.where(Call.decision_tag.is_not(None) if flt.tagged else Call.decision_tag.is_(None))
    if flt.crm_status:
        query = query.where(Call.crm_status == flt.crm_status)
    if flt.supervisor_rated is not None:
        rated = Call.supervisor_score.is_not(None)
        query = query.where(rated if flt.supervisor_rated else ~rated)
    if flt.follow_up is not None:
        query = query.where(follow_up_condition(flt.follow_up, datetime.now(timezone.utc)))
    if flt.visible_extensions is not None:
        query = query.where(Call.operator_extension.in_(flt.visible_extensions))
    return query


def find_calls(session: Session, flt: CallFilter, *, per_page: int, page: int = 1,
               after: Cursor | None = None, count: bool = True, sort: Sort = Sort.NEWEST) -> CallPage:
    """One page of calls in `sort` order: after `after` (keyset), or else the `page`-th (offset).
    Without `count`, `total` is 0 (an export walking every page needs no count)."""
    query = filtered_calls(flt)
    if sort.by_score:
        query = query.where(Call.customer_score.is_not(None))
    counted = session.scalar(select(func.count()).select_from(
        query.with_only_columns(Call.id).limit(COUNT_CAP + 1).subquery())) if count else 0
    key = sort.key()
    ordered = query.order_by(*(column.desc() if sort.descending else column.asc() for column in key))
    if after is not None and sort.by_score and after.score is None:
        ordered = ordered.where(false())  # after an unrated call: past the end of a score order
    elif after is not None:
        # A row-value comparison, which both databases turn into an index range (an OR does not).
        here = tuple_(*after.values(sort))
        ordered = ordered.where(tuple_(*key) < here if sort.descending else tuple_(*key) > here)
    else:
        ordered = ordered.offset((page - 1) * per_page)
    rows = list(session.scalars(ordered.options(selectinload(Call.crm_records), selectinload(Call.scores),
                                                selectinload(Call.follow_up))
                                .limit(per_page + 1)))
    more = len(rows) > per_page
    rows = rows[:per_page]
    return CallPage(rows, min(counted, COUNT_CAP), counted > COUNT_CAP,
                    Cursor.after_call(rows[-1]) if more else None)


def line_numbers(session: Session, limit: int = 200) -> list[str]:
    """The lines calls came on, in order (one pass over the index that leads with the line)."""
    query = (select(Call.line_number).where(Call.line_number.is_not(None)).group_by(Call.line_number)
             .order_by(Call.line_number).limit(limit))
    return list(session.scalars(query))


def call_id_problem(entry_id: str) -> str | None:
    """Why no call can have this id (PostgreSQL would refuse to even look for it), or None."""
    return text_problem(entry_id) or ("longer than 128 characters" if len(entry_id) > 128 else None)


def get_visible_call(session: Session, entry_id: str, principal) -> Call | None:
    """The call if `principal` may see it: another operator's call is as unknown as a missing one."""
    if call_id_problem(entry_id):
        return None
    call = get_call(session, entry_id)
    return call if call is not None and principal.may_see(call) else None


def call_timeline(session: Session, call: Call) -> list[dict]:
    """What happened to the call, oldest first: the PBX's callbacks and other systems' scores as they came
    (one index probe on `inbound_events.entry_id`), each CRM effect when it was done, and the steps of its
    rating request by link (sent, delivered, opened, rated)."""
    # Codes, not sentences: a console names each kind, status and source in its own language.
    events = [{"at": _iso(at), "event": kind, "source": source, "error": error}
              for kind, source, at, error in session.execute(
                  select(InboundEvent.kind, InboundEvent.source, InboundEvent.received_at, InboundEvent.error)
                  .where(InboundEvent.entry_id == call.entry_id).order_by(InboundEvent.id))]
    effects = [{"at": _iso(at), "job": kind, "status": status, "source": crm, "error": error}
               for kind, crm, status, at, error in session.execute(
                   select(DeliveryJob.kind, DeliveryJob.crm, DeliveryJob.status, DeliveryJob.updated_at,
                          DeliveryJob.last_error)
                   .where(DeliveryJob.call_id == call.id, DeliveryJob.status != JobStatus.PENDING))]
    request = rating_request(session, call)
    steps = [] if request is None else [
        {"at": _iso(at), "link": step, "source": "link"} for step, at in (("sent", request.sent_at), ("delivered", request.delivered_at),
                                                         ("opened", request.opened_at), ("rated", request.rated_at))
        if at is not None]
    return sorted(events + effects + steps, key=lambda e: e["at"] or "")


def rating_request(session: Session, call: Call) -> RatingRequest | None:
    """The call's request to rate it by link, if one was made (at most one per call)."""
    return session.scalars(select(RatingRequest).where(RatingRequest.call_row == call.id)).first()


def rating_request_json(row: RatingRequest | None) -> dict | None:
    """A call's rating request as the API shows it: where it is and why, when each step happened, and the
    answer on the rating page's scale; never its token or command id."""
    if row is None:
        return None
    return {"status": row.status, "reason": row.reason, "detail": row.detail,
            **{name: _iso(getattr(row, name)) for name in ("due_at", "queued_at", "sent_at", "delivered_at",
                                                           "opened_at", "rated_at", "expires_at")},
            "answer": row.rating, "comment": row.comment}


def get_call(session: Session, entry_id: str) -> Call | None:
    return session.scalars(
        select(Call).where(Call.entry_id == entry_id)
        .options(selectinload(Call.crm_records), selectinload(Call.scores), selectinload(Call.supervisor_marks),
                 selectinload(Call.follow_up))
    ).first()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def _responsible(record: CrmRecord | None) -> dict | None:
    if record is None or record.responsible_mapped is None:
        return None
    if record.responsible_mapped:
        return {"user_id": record.responsible_user_id, "mapped": True}
    return {"user_id": None, "mapped": False,
            "note": "the operator's extension is not mapped; the integration's own user owns the call"}


def call_json(call: Call, *, with_history: bool = False, marks: list[dict] | None = None) -> dict:
    """The call as the API shows it; `marks` (connector.inbound.quality.marks_json) only on a single call."""
    # The first target's detail, as before there were several (`targets` has each).
    crm_records = [r for r in call.crm_records if r.crm not in CHANNELS]  # a message's record is not a CRM's
    record = next((r for r in crm_records if r.crm != NO_TARGET), None) or (crm_records[0] if crm_records else None)
    data = {
        "call_id": call.entry_id,
        "direction": call.direction,
        "operator": call.operator_extension,
        "customer_phone": call.customer_phone,
        "line_number": call.line_number,
        "started_at": _iso(call.created_at),
        "ended_at": _iso(call.ended_at),
        "talk_seconds": call.talk_seconds,
        "entry_result": call.entry_result,
        "recording_id": call.recording_id,
        "survey": call.survey,
        "customer_score": call.customer_score,
        "supervisor_score": call.supervisor_score,
        "reviews": [{"by": s.author, "score": s.value, "comment": s.comment, "at": _iso(s.rated_at)}
                    for s in call.scores if s.origin == REVIEW],
        "decision": {"record": call.decision_record, "tag": call.decision_tag, "reason": call.decision_reason,
                     "at_or_above_threshold": call.decision_high_scores is not None,
                     "high_scores": call.decision_high_scores},
        "crm": {
            "crm": record.crm if record else None,
            # Every target's state summed up: delivered only when each is; otherwise the worst.
            "status": call.crm_status or DeliveryStatus.PENDING,
            "reason": record.reason if record else None,
            "entity_type": record.entity_type if record else None,
            "entity_id": record.entity_id if record else None,
            "attempts": record.attempts if record else 0,
            "last_error": record.last_error if record else None,
            "responsible": _responsible(record),
            "targets": {r.crm: {"status": r.status, "attempts": r.attempts, "last_error": r.last_error,
                                "entity": {"type": r.entity_type, "id": r.entity_id} if r.entity_id else None}
                        for r in crm_records if r.crm != NO_TARGET},
        },
        "follow_up": follow_up_json(call.follow_up),  # None: the call was never scored low
    }
    if marks is not None:
        data["supervisor_marks"] = marks
    if with_history:
        data["scores"] = [
            {"source": s.source, "origin": s.origin, "raw": s.raw, "value": s.value, "status": s.status,
             "reason": s.reason, "tag": s.tag, "tag_to_remove": s.tag_to_remove,
             "operator": s.operator_extension, "comment": s.comment,
             "rated_at": _iso(s.rated_at), "received_at": _iso(s.received_at)}
            for s in call.scores
        ]
    return data


def masked_phone(number: str | None) -> str:
    """A customer's number where it may travel beyond the page (a window title lands in the browser's history
    and in screen shares; an alert lands in a mailbox or a chat): its last four digits only."""
    digits = "".join(ch for ch in number or "" if ch.isdigit())
    return "…" + digits[-4:] if len(digits) > 4 else (number or "")
