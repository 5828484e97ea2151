"""Per-operator and per-line figures for QA staff, each with its n, counted in the database in one
GROUP BY (never by loading calls).

Definitions (docs/console.md repeats them for people):
- answered: talk time > 0;
- offered: the customer reached the survey (a score came, or MANGO's quality control says they pressed
  nothing); no_answer: they reached it and pressed nothing;
- rated: a customer score is in force;
- response_rate: rated / (offered calls where the survey's fate is known, plus answered calls where it is
  not). MANGO's quality control tells whether a survey was offered; DTMF digits alone only show what was
  pressed, so a DTMF call with no digits counts as answered-but-unrated;
- positive: score at or above the threshold in force now (the call's line's own, else the global one);
  negative: below it. So positive + negative = rated, whatever the threshold was when each score came; a
  call's tag was decided by the threshold of its time, so after a change of the threshold `negative` and
  the number of tagged calls may differ;
- csat: positive / rated; nps (a 10-point top only): % of 9-10 minus % of 0-6 among the rated.

The rating link's figures (`channels`, `funnel`; docs/rating-link.md#reports says them for people):
- rateable: answered external calls (inbound or outbound, talk time > 0), the calls a customer could rate;
- a channel's rated: the rateable calls with a valid customer score through it (accepted, kept or duplicate:
  not refused), each call once per channel, so the channels may add up to more than `any_channel`, which
  counts each call once; response_rate: rated / rateable;
- the requests' funnel, over the requests of the calls in the filter: due (not skipped), then sent,
  delivered, opened, rated, each counting the requests that reached it or a later step (a link opened was
  delivered even when the carrier's report never came; one the carrier failed was sent), so every step is
  part of the one before.

The follow-ups' figures (`follow_ups`), per operator and per line, over the follow-ups of the calls in the filter
(one per call scored low; docs/console.md says them for people):
- follow_up_rate: closed (done: the CRM task completed, or closed in the console) / follow-ups;
- median_hours: the median time from the low score to done, over the closed ones (n = closed);
- overdue: open past their due time, counted now;
- recovery_rate: closed as "called back and recovered" / closed with an outcome in the console (n = with_outcome).
"""
from __future__ import annotations

import enum
import threading
from statistics import median
import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy import Integer, and_, case, distinct, func, literal, or_, select
from sqlalchemy.orm import Session

from connector.core.calls import CallFilter, filtered_calls
from connector.core.db import Database
from connector.core.models import (Call, FollowUp, FollowUpOutcome, FollowUpStatus, RatingRequest, RequestReason,
                                   RequestStatus, Score, ScoreOrigin,
                                   ScoreSource, SurveyState)
from connector.core.policy import Policies, Policy, ScoreStatus
from connector.core.runtime_settings import current_policies, settings_versions
from connector.inbound.link.rules import EXTERNAL

KNOWN_FATE = (SurveyState.ANSWERED.value, SurveyState.NO_ANSWER.value, SurveyState.NOT_OFFERED.value)
OFFERED = (SurveyState.ANSWERED.value, SurveyState.NO_ANSWER.value)


class By(enum.StrEnum):
    """What a report groups by; the value names the key column of its rows."""

    OPERATOR = "operator"
    LINE = "line"


@dataclass(frozen=True)
class ReportFilter:
    date_from: object = None
    date_to: object = None
    line: str | None = None
    visible_extensions: tuple[str, ...] | None = None  # an operator's own; None: every call
    zone: str = "UTC"  # whose days the daily trend counts in (the console's time zone)


def _count(condition):
    return func.sum(case((condition, 1), else_=0))


def _percent(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _policies(policy: Policy | Policies) -> Policies:
    return policy if isinstance(policy, Policies) else Policies(policy)


def threshold_in_force(policies: Policies):
    """The threshold in force for each call, as SQL: its line's own, else the global one."""
    own = {line: o["max_threshold"] for line, o in policies.lines.items() if "max_threshold" in o}
    if not own:
        return literal(policies.base.max_threshold, Integer)
    return case(own, value=Call.line_number, else_=policies.base.max_threshold)


# what `figures` can count
PARTS = ("operators", "lines", "distribution", "daily", "channels", "funnel", "follow_ups")


def figures(db: Database, flt: ReportFilter, initial: Policy, parts: tuple[str, ...] = PARTS) -> dict:
    """The parts asked for, and under "policy" the policies in force (`Policies`) they were counted with, all
    in one read (one snapshot: the tables and charts agree). The tables and the distribution come from one
    scan of the calls (`counts`), the daily trend from a second, the channels and the funnel from one
    statement each. Plain data, so a child process can count them (`connector.console.offload`)."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ValueError(f"no such report part: {', '.join(sorted(unknown))}")
    with db.reading() as s:
        policy = current_policies(s, initial)  # the global policy and each line's own
        counted = {"policy": policy, "counted_at": datetime.now(timezone.utc)}
        groups = counts(s, flt) if set(parts) & {"operators", "lines", "distribution"} else []
        for part in parts:
            if part == "operators":
                counted[part] = tally(groups, By.OPERATOR, policy)
            elif part == "lines":
                counted[part] = tally(groups, By.LINE, policy)
            elif part == "distribution":
                counted[part] = distribution(groups)
            elif part == "channels":
                counted[part] = channels(s, flt)
            elif part == "funnel":
                counted[part] = funnel(s, flt)
            elif part == "follow_ups":
                counted[part] = follow_up_figures(s, flt, counted["counted_at"])
            else:
                counted[part] = daily(s, flt, policy)
    return counted


class RecentFigures:
    """`figures` for the web faces, counted one question at a time per process and, over many calls, served
    again for a while: figures over 200,000 calls that took 0.4 s to count answer the same question (filter,
    parts, settings in force) for the next 4 s (ten times their cost, at least 2 s, at most a minute). A room
    of supervisors reloading reports then keeps the database at most about a tenth busy with them, and the
    PBX's callbacks keep the rest. Figures over fewer than `REUSE_FROM_CALLS` calls are always counted
    afresh: they are quick. A change of the settings (the threshold) is a new question at once. Each answer
    says when it was counted (`counted_at`)."""

    REUSE_FROM_CALLS = 10_000
    REUSE_FACTOR = 10
    REUSE_AT_LEAST, REUSE_AT_MOST = 2.0, 60.0  # seconds

    def __init__(self, db: Database, count: Callable[..., dict], clock: Callable[[], float] = time.monotonic):
        self._db, self._count, self._clock = db, count, clock
        self._turn = threading.Lock()  # one count at a time: the others wait their turn, then maybe reuse it
        self._kept: dict[tuple, tuple[float, dict]] = {}  # question -> (good until, figures)

    def __call__(self, flt: ReportFilter, initial: Policy, parts: tuple[str, ...] = PARTS) -> dict:
        with self._db.reading() as s:
            versions = tuple(sorted(settings_versions(s).items()))
        question = (flt, initial, tuple(parts), versions)
        with self._turn:
            moment = self._clock()
            kept = self._kept.get(question)
            if kept is not None and kept[0] > moment:
                return kept[1]
            counted = self._count(flt, initial, parts)
            done = self._clock()
            self._kept = {q: k for q, k in self._kept.items() if k[0] > done}  # the stale ones go
            if _calls_counted(counted) >= self.REUSE_FROM_CALLS:
                keep = min(max(self.REUSE_FACTOR * (done - moment), self.REUSE_AT_LEAST), self.REUSE_AT_MOST)
                self._kept[question] = (done + keep, counted)
            return counted


def _calls_counted(counted: dict) -> int:
    table = counted.get("operators") or counted.get("lines")
    return table["totals"]["calls"] if table else 0


@dataclass(frozen=True)
class Group:
    """The calls of one operator on one line with one customer score (None: unrated), counted in SQL."""

    operator: str | None
    line: str | None
    score: int | None
    calls: int
    answered: int
    offered: int
    no_answer: int
    asked: int
    supervisor_rated: int
    supervisor_sum: int


def counts(session: Session, flt: ReportFilter) -> list[Group]:
    """One scan of the filtered calls, grouped by operator, line and customer score: few rows (operators x
    lines x scale), from which every table, total and the distribution are summed without another scan."""
    answered = Call.talk_seconds > 0
    fate_known = Call.survey.in_(KNOWN_FATE)
    query = select(
        Call.operator_extension, Call.line_number, Call.customer_score,
        func.count(),
        _count(answered),
        _count(Call.survey.in_(OFFERED)),
        _count(Call.survey == SurveyState.NO_ANSWER.value),
        _count(or_(Call.survey.in_(OFFERED), and_(~fate_known | Call.survey.is_(None), answered))),
        func.count(Call.supervisor_score),
        func.sum(Call.supervisor_score),
    )
    if (where := _where(flt)) is not None:
        query = query.where(where)
    query = query.group_by(Call.operator_extension, Call.line_number, Call.customer_score)
    return [Group(operator, line, score, int(calls), *(int(n or 0) for n in rest))
            for operator, line, score, calls, *rest in session.execute(query)]


class _Sums:
    """What one row of a table adds up from its groups."""

    def __init__(self, key):
        self.key = key
        self.calls = self.answered = self.offered = self.no_answer = self.asked = 0
        self.rated = self.score_sum = self.positive = self.negative = self.promoters = self.detractors = 0
        self.supervisor_rated = self.supervisor_sum = 0

    def add(self, g: Group, threshold: int) -> None:
        self.calls += g.calls
        self.answered += g.answered
        self.offered += g.offered
        self.no_answer += g.no_answer
        self.asked += g.asked
        self.supervisor_rated += g.supervisor_rated
        self.supervisor_sum += g.supervisor_sum
        if g.score is None:
            return
        self.rated += g.calls
        self.score_sum += g.score * g.calls
        if g.score >= threshold:
            self.positive += g.calls
        else:
            self.negative += g.calls
        if g.score >= 9:
            self.promoters += g.calls
        if g.score <= 6:
            self.detractors += g.calls

    @property
    def average(self) -> float | None:
        return self.score_sum / self.rated if self.rated else None

    @property
    def supervisor_average(self) -> float | None:
        return self.supervisor_sum / self.supervisor_rated if self.supervisor_rated else None


def tally(groups: list[Group], by: str, policy: Policy | Policies) -> dict:
    """`{"items": [...], "totals": {...}}`, items sorted by their key (operator extension or line; calls
    without one last). positive/negative by the threshold in force now on each call's line."""
    policies = _policies(policy)
    own = {line: o["max_threshold"] for line, o in policies.lines.items() if "max_threshold" in o}
    rows: dict = {}
    totals = _Sums(None)
    for g in groups:
        key = g.operator if by == By.OPERATOR else g.line
        threshold = own.get(g.line, policies.base.max_threshold)
        rows.setdefault(key, _Sums(key)).add(g, threshold)
        totals.add(g, threshold)
    nps_applies = policies.base.scale_max == 10
    ordered = sorted(rows.values(), key=lambda r: (r.key is None, r.key or ""))
    return {"items": [_row(by, r, nps_applies) for r in ordered], "totals": _row(by, totals, nps_applies)}


def _where(flt: ReportFilter):
    return filtered_calls(CallFilter(date_from=flt.date_from, date_to=flt.date_to, line=flt.line,
                                     visible_extensions=flt.visible_extensions)).whereclause


def distribution(groups: list[Group]) -> list[tuple[int, int]]:
    """(score, how many calls) for every customer score in force, lowest first."""
    per_score: dict[int, int] = {}
    for g in groups:
        if g.score is not None:
            per_score[g.score] = per_score.get(g.score, 0) + g.calls
    return sorted(per_score.items())


def daily(session: Session, flt: ReportFilter, policy: Policy | Policies) -> list[dict]:
    """Per day of the call's start in `flt.zone`: rated calls, their average and CSAT (by the threshold in
    force). The database counts per hour of UTC (it knows no time zones on SQLite), and the hours are folded
    into the zone's days here: exact for every zone whose offset is whole hours, as all of Russia's are."""
    score = Call.customer_score
    hour = _utc_hour(session).label("hour")
    threshold = threshold_in_force(_policies(policy))
    query = select(hour, func.count(), func.sum(score), _count(score >= threshold)).where(score.is_not(None))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    zone = ZoneInfo(flt.zone)
    days: dict[date, list[int]] = {}
    for text, rated, total, positive in session.execute(query.group_by(hour)):
        moment = datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
        day = days.setdefault(moment.astimezone(zone).date(), [0, 0, 0])
        day[0], day[1], day[2] = day[0] + rated, day[1] + int(total), day[2] + int(positive or 0)
    return [{"day": str(day), "rated": rated, "average": round(total / rated, 2), "csat": _percent(positive, rated)}
            for day, (rated, total, positive) in sorted(days.items())]


def _utc_hour(session: Session):
    """The call's start to the hour, in UTC (as stored), as text: '2026-11-26 14'."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(Call.listed_at, "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", Call.listed_at)


def _row(by: str, r: _Sums, nps_applies: bool) -> dict:
    return {
        by: r.key,
        "calls": r.calls,
        "answered": r.answered,
        "offered": r.offered,
        "no_answer": r.no_answer,
        "rated": r.rated,
        "response_rate": _percent(r.rated, r.asked),
        "average": round(r.average, 2) if r.average is not None else None,
        "positive": r.positive,
        "negative": r.negative,
        "csat": _percent(r.positive, r.rated),
        "nps": round(100.0 * (r.promoters - r.detractors) / r.rated, 1) if nps_applies and r.rated else None,
        "supervisor_rated": r.supervisor_rated,
        "supervisor_average": round(r.supervisor_average, 2) if r.supervisor_average is not None else None,
    }


# The channels a customer's score comes through, in the order the reports list them.
CHANNELS = (ScoreOrigin.PBX_SURVEY, ScoreOrigin.PBX_QUALITY, ScoreOrigin.LINK, ScoreOrigin.API)
VALID_SCORE = (ScoreStatus.ACCEPTED.value, ScoreStatus.KEPT.value, ScoreStatus.DUPLICATE.value)


def channels(session: Session, flt: ReportFilter) -> dict:
    """The response rate per channel over the rateable calls of the filter (the module's docstring), in one
    statement: the calls joined to their valid customer scores, each call counted once per channel."""
    valid = and_(Score.call_id == Call.id, Score.source == ScoreSource.CUSTOMER.value,
                 Score.status.in_(VALID_SCORE), Score.origin.in_([c.value for c in CHANNELS]))
    query = (select(func.count(distinct(Call.id)),
                    *(func.count(distinct(case((Score.origin == c.value, Call.id)))) for c in CHANNELS),
                    func.count(distinct(Score.call_id)))
             .select_from(Call).outerjoin(Score, valid)
             .where(Call.direction.in_(EXTERNAL), Call.talk_seconds > 0))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    rateable, *per_channel, rated_any = session.execute(query).one()
    return {"rateable": rateable,
            "items": [{"channel": c.value, "rated": n, "response_rate": _percent(n, rateable)}
                      for c, n in zip(CHANNELS, per_channel)],
            "any_channel": {"rated": rated_any, "response_rate": _percent(rated_any, rateable)}}


FUNNEL = ("due", "sent", "delivered", "opened", "rated")  # the requests' steps, in order
_NOT_YET_SENT = (RequestStatus.SCHEDULED.value, RequestStatus.QUEUED.value, RequestStatus.ACCEPTED.value)
# The carrier's failures: the PBX sent the SMS, even when its own report of sending never came.
_FAILED_AFTER_SENDING = (RequestReason.NOT_DELIVERED.value, RequestReason.CARRIER_REFUSED.value)


def funnel(session: Session, flt: ReportFilter) -> dict:
    """The rating requests of the filter's calls: the steps of FUNNEL, each with its n and its share of the step
    before and of "due"; the requests still waiting to be sent; the skipped and the failed ones by reason
    (most first). One statement, grouped by status and reason: a few rows whatever the number of requests."""
    rated = RatingRequest.rated_at.is_not(None)
    opened = RatingRequest.opened_at.is_not(None) | rated
    delivered = (RatingRequest.status == RequestStatus.DELIVERED.value) | RatingRequest.delivered_at.is_not(None) \
        | opened
    sent = (RatingRequest.status == RequestStatus.SENT.value) | RatingRequest.sent_at.is_not(None) | delivered \
        | RatingRequest.reason.in_(_FAILED_AFTER_SENDING)
    query = (select(RatingRequest.status, RatingRequest.reason, func.count(),
                    _count(sent), _count(delivered), _count(opened), _count(rated))
             .join(Call, Call.id == RatingRequest.call_row)
             .group_by(RatingRequest.status, RatingRequest.reason))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    reached = dict.fromkeys(FUNNEL, 0)
    waiting, skipped, failed = 0, {}, {}
    for status, reason, requests, *later in session.execute(query):
        if status == RequestStatus.SKIPPED.value:
            skipped[reason] = skipped.get(reason, 0) + requests
            continue
        reached["due"] += requests
        for step, n in zip(FUNNEL[1:], later):
            reached[step] += int(n or 0)
        if status == RequestStatus.FAILED.value:
            failed[reason] = failed.get(reason, 0) + requests
        elif status in _NOT_YET_SENT:
            waiting += requests - int(later[0] or 0)
    due = reached["due"]
    steps = [{"step": step, "requests": n, "of_previous": _percent(n, reached[FUNNEL[i - 1]]) if i else None,
              "of_due": _percent(n, due)} for i, (step, n) in enumerate(reached.items())]
    return {"requests": due + sum(skipped.values()), "steps": steps, "waiting": waiting,
            "skipped": _by_reason(skipped), "failed": _by_reason(failed)}


def _by_reason(counted: dict) -> dict:
    return {"requests": sum(counted.values()),
            "by_reason": [{"reason": reason, "requests": n}
                          for reason, n in sorted(counted.items(), key=lambda item: (-item[1], item[0] or ""))]}


class _FollowUpSums:
    """What one row of a follow-ups table adds up from its follow-ups."""

    def __init__(self, key):
        self.key = key
        self.follow_ups = self.closed = self.overdue = self.with_outcome = self.recovered = 0
        self.hours: list[float] = []

    def add(self, status: str, opened_at: datetime, done_at: datetime | None, due_at: datetime,
            outcome: str | None, now: datetime) -> None:
        self.follow_ups += 1
        if status == FollowUpStatus.DONE:
            self.closed += 1
            if done_at is not None:
                self.hours.append(max(0.0, (done_at - opened_at).total_seconds() / 3600))
        elif due_at < now:
            self.overdue += 1
        if outcome is not None:
            self.with_outcome += 1
            self.recovered += outcome == FollowUpOutcome.RECOVERED

    def row(self, by: str) -> dict:
        return {by: self.key, "follow_ups": self.follow_ups, "closed": self.closed,
                "follow_up_rate": _percent(self.closed, self.follow_ups),
                "median_hours": round(median(self.hours), 1) if self.hours else None, "overdue": self.overdue,
                "with_outcome": self.with_outcome, "recovered": self.recovered,
                "recovery_rate": _percent(self.recovered, self.with_outcome)}


def follow_up_figures(session: Session, flt: ReportFilter, now: datetime) -> dict:
    """`{"operators": {"items", "totals"}, "lines": {...}}` over the follow-ups of the filtered calls (the module's
    docstring). One statement; a row per follow-up comes back, since a median is not a sum: follow-ups are the
    calls scored low only, a small share of the calls."""
    query = (select(Call.operator_extension, Call.line_number, FollowUp.status, FollowUp.opened_at, FollowUp.done_at,
                    FollowUp.due_at, FollowUp.outcome).join(Call, Call.id == FollowUp.call_row))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    tables: dict[str, dict] = {By.OPERATOR: {}, By.LINE: {}}
    totals = _FollowUpSums(None)
    for operator, line, *facts in session.execute(query):
        totals.add(*facts, now)
        for by, key in ((By.OPERATOR, operator), (By.LINE, line)):
            tables[by].setdefault(key, _FollowUpSums(key)).add(*facts, now)
    out = {}
    for by, name in ((By.OPERATOR, "operators"), (By.LINE, "lines")):
        ordered = sorted(tables[by].values(), key=lambda r: (r.key is None, r.key or ""))
        out[name] = {"items": [r.row(by) for r in ordered], "totals": totals.row(by)}
    return out
