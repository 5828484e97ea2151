"""Per-operator and per-line figures for QA staff, each with its n, counted in the database in one
GROUP BY (never by loading calls).

Definitions (the README's "Reports" repeats them):
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
"""
from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy import Integer, and_, case, func, literal, or_, select
from sqlalchemy.orm import Session

from connector.calls import CallFilter, filtered_calls
from connector.db import Database
from connector.models import Call, SurveyState
from connector.runtime_settings import current_policies
from connector.threshold import Policies, Policy

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


PARTS = ("operators", "lines", "distribution", "daily")  # what `figures` can count


def figures(db: Database, flt: ReportFilter, initial: Policy, parts: tuple[str, ...] = PARTS) -> dict:
    """The parts asked for, and under "policy" the policies in force (`Policies`) they were counted with, all
    in one read (one snapshot: the tables and charts agree). Plain data, so a child process can count them
    (`connector.offload`)."""
    with db.reading() as s:
        policy = current_policies(s, initial)  # the global policy and each line's own
        counted = {"policy": policy}
        for part in parts:
            if part == "operators":
                counted[part] = report(s, By.OPERATOR, flt, policy)
            elif part == "lines":
                counted[part] = report(s, By.LINE, flt, policy)
            elif part == "distribution":
                counted[part] = distribution(s, flt)
            elif part == "daily":
                counted[part] = daily(s, flt, policy)
            else:
                raise ValueError(f"no such report part: {part}")
    return counted


def report(session: Session, by: str, flt: ReportFilter, policy: Policy | Policies) -> dict:
    """`{"items": [...], "totals": {...}}`, items sorted by their key (operator extension or line)."""
    policies = _policies(policy)
    key = {By.OPERATOR: Call.operator_extension, By.LINE: Call.line_number}[by]
    where = _where(flt)
    score = Call.customer_score
    rated = score.is_not(None)
    threshold = threshold_in_force(policies)
    answered = Call.talk_seconds > 0
    fate_known = Call.survey.in_(KNOWN_FATE)
    figures = [
        func.count().label("calls"),
        _count(answered).label("answered"),
        _count(Call.survey.in_(OFFERED)).label("offered"),
        _count(Call.survey == SurveyState.NO_ANSWER.value).label("no_answer"),
        _count(rated).label("rated"),
        _count(or_(Call.survey.in_(OFFERED), and_(~fate_known | Call.survey.is_(None), answered)))
        .label("asked"),
        func.avg(score).label("average"),
        _count(and_(rated, score >= threshold)).label("positive"),
        _count(and_(rated, score < threshold)).label("negative"),
        _count(score >= 9).label("promoters"),
        _count(score <= 6).label("detractors"),
        func.count(Call.supervisor_score).label("supervisor_rated"),
        func.avg(Call.supervisor_score).label("supervisor_average"),
    ]
    query = select(*figures)
    if where is not None:
        query = query.where(where)
    grouped = session.execute(query.add_columns(key.label("key")).group_by(key).order_by(key)).all()
    totals = session.execute(query.add_columns(literal(None, Integer).label("key"))).one()
    nps_applies = policies.base.scale_max == 10
    return {"items": [_row(by, r, nps_applies) for r in grouped], "totals": _row(by, totals, nps_applies)}


def _where(flt: ReportFilter):
    return filtered_calls(CallFilter(date_from=flt.date_from, date_to=flt.date_to, line=flt.line,
                                     visible_extensions=flt.visible_extensions)).whereclause


def distribution(session: Session, flt: ReportFilter) -> list[tuple[int, int]]:
    """(score, how many calls) for every customer score in force, lowest first."""
    query = select(Call.customer_score, func.count()).where(Call.customer_score.is_not(None))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    return [(score, n) for score, n in session.execute(query.group_by(Call.customer_score)
                                                        .order_by(Call.customer_score))]


def daily(session: Session, flt: ReportFilter, policy: Policy | Policies) -> list[dict]:
    """Per day (UTC) of the call's start: rated calls, their average and CSAT (by the threshold in force)."""
    day = func.date(Call.listed_at)
    threshold = threshold_in_force(_policies(policy))
    query = (select(day.label("day"), func.count().label("rated"), func.avg(Call.customer_score).label("average"),
                    _count(Call.customer_score >= threshold).label("positive"))
             .where(Call.customer_score.is_not(None)))
    if (where := _where(flt)) is not None:
        query = query.where(where)
    return [{"day": str(r.day), "rated": r.rated, "average": round(float(r.average), 2),
             "csat": _percent(int(r.positive or 0), r.rated)}
            for r in session.execute(query.group_by(day).order_by(day))]


def _row(by: str, r, nps_applies: bool) -> dict:
    rated = r.rated or 0

    def number(value) -> int:
        return int(value or 0)

    return {
        by: r.key,
        "calls": number(r.calls),
        "answered": number(r.answered),
        "offered": number(r.offered),
        "no_answer": number(r.no_answer),
        "rated": rated,
        "response_rate": _percent(rated, number(r.asked)),
        "average": round(float(r.average), 2) if r.average is not None else None,
        "positive": number(r.positive),
        "negative": number(r.negative),
        "csat": _percent(number(r.positive), rated),
        "nps": (round(100.0 * (number(r.promoters) - number(r.detractors)) / rated, 1)
                if nps_applies and rated else None),
        "supervisor_rated": number(r.supervisor_rated),
        "supervisor_average": round(float(r.supervisor_average), 2) if r.supervisor_average is not None else None,
    }
