"""Made-up calls for trying the connector out: the one call of `connector simulate` and the spread of
`connector demo`. Never for a connector that serves a real account.

A call here is what MANGO reports of it: the survey's digits (`events/dtmf`), the recording
(`events/recording`) and the summary (`events/summary`), signed with the account's key. `simulate` posts
them to a running connector. `demo` hands them to the functions behind the webhook (verify, parse, keep in
the inbox, many per statement) and applies them as the inbox worker does, in the same transaction, so the
calls are stored exactly as the PBX's callbacks would store them. The supervisors' QA forms come in as a
page of MANGO's call statistics does (the quality scan's own `apply`), and reviews as the console adds them.
"""
from __future__ import annotations

import math
import random
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from connector.inbound.mango.settings import settings_of as pbx_settings
from connector.inbound.pbx import Mark, QualityReport, Question, ScannedCall

if TYPE_CHECKING:  # `simulate` needs only the calls: the database's modules load where they are used
    from connector.core.config import Config
    from connector.core.db import Database
    from connector.core.users import Principal

MISSED, ANSWERED = 0, 1  # MANGO's entry_result
INBOUND, OUTBOUND = 1, 2  # MANGO's call_direction
DEMO_PREFIX = "demo-"  # entry ids of `connector demo`; `simulate` makes `sim-...` ones


def recording_id(entry_id: str) -> str:
    """The recording id a made-up call carries (`connector demo-pbx` plays exactly these)."""
    return f"rec-{entry_id}"


@dataclass(frozen=True)
class SimulatedCall:
    """One made-up call, as the PBX would report it. Times are Unix seconds."""

    entry_id: str
    inbound: bool
    operator: str  # the extension that took the call, placed it, or was rung in vain
    line: str  # the account's number the call went through
    phone: str  # the customer's number
    start: int
    ring: int  # seconds until the operator answered, or until the caller gave up (at least 2)
    talk: int  # seconds of conversation; 0: nobody answered
    digits: str | None = None  # what the customer pressed in the survey after the call
    recorded: bool = True
    marks: tuple[Mark, ...] = ()  # a supervisor's QA form in the PBX's quality control
    review: tuple[int, str] | None = None  # a supervisor's review in the console: score and comment

    @property
    def end(self) -> int:
        return self.start + self.ring + self.talk

    def callbacks(self, survey_location: str) -> list[tuple[str, dict]]:
        """The PBX's callbacks for this call, in the order MANGO sends them, the summary last."""
        leg = f"{self.entry_id}-1"
        events = []
        if self.digits is not None:
            events.append(("events/dtmf", {"entry_id": self.entry_id, "call_id": leg, "seq": 4, "dtmf": self.digits,
                                           "location": survey_location, "timestamp": self.end + 10,
                                           "initiator": self.phone}))
        if self.recorded and self.talk:
            events.append(("events/recording", {"entry_id": self.entry_id, "call_id": leg,
                                                "recording_id": recording_id(self.entry_id),
                                                "recording_state": "Completed", "completion_code": 1000, "seq": 5,
                                                "extension": self.operator, "timestamp": self.end}))
        operator, customer = {"extension": self.operator, "number": self.line}, {"number": self.phone}
        caller, callee = (customer, operator) if self.inbound else (operator, customer)
        # Disconnect reasons (MANGO's codes): 1110 the caller hung up; 1120 the called party did; 1111 no answer.
        reason = 1110 if self.inbound else 1120 if self.talk else 1111
        events.append(("events/summary", {
            "entry_id": self.entry_id, "call_direction": INBOUND if self.inbound else OUTBOUND,
            "from": caller, "to": callee, "line_number": self.line, "create_time": self.start,
            "forward_time": self.start + 2, "talk_time": self.start + self.ring if self.talk else 0,
            "end_time": self.end, "entry_result": ANSWERED if self.talk else MISSED, "disconnect_reason": reason}))
        return events


# --- the spread of `connector demo` ------------------------------------------------------------------

@dataclass(frozen=True)
class Operator:
    extension: str
    workload: float  # their share of the calls, relative
    low: float  # how often their customers score 1 to 6, relative to SCORE_WEIGHTS
    name: str  # as the PBX's user list names them: the console shows operators by these
    username: str | None = None  # a demo console account, for the operators that get one


OPERATORS = (Operator("101", 1.2, 0.6, "Ирина Петрова", "demo-operator-101"),
             Operator("102", 1.0, 1.8, "Алексей Смирнов", "demo-operator-102"),
             Operator("103", 1.0, 1.0, "Мария Кузнецова"), Operator("104", 0.8, 1.3, "Дмитрий Волков"),
             Operator("105", 0.9, 0.8, "Елена Соколова"), Operator("106", 0.6, 2.4, "Сергей Новиков"))
DEMO_GROUP = "Демо: отдел продаж"
LINES = {"74950000001": 5, "78120000002": 3, "78000000003": 2}  # the account's numbers, and their share of calls
# Customers' scores 1..10 in %: mostly 9 and 10, a tail of low ones (each operator's `low` scales 1 to 6).
SCORE_WEIGHTS = (3, 1, 2, 1, 3, 3, 5, 9, 20, 53)
SURVEY_SHARE = 0.6  # answered inbound calls whose customer presses a score
# When calls come, in the account's zone: the working hours (hour: weight) and the days of the week.
HOURS = {9: 0.6, 10: 1.0, 11: 1.3, 12: 1.2, 13: 0.9, 14: 1.0, 15: 1.2, 16: 1.1, 17: 0.9, 18: 0.5}
WEEKDAYS = (1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.1)  # Monday first
# A QA form of MANGO's quality control, as its question command names the questions. Ids that MANGO's own
# (numeric) ones can never be.
FORM = "Демо-анкета"
QUESTIONS = (Question("demo-1", "Приветствие", "Установление контакта", FORM),
             Question("demo-2", "Выявление потребности", "Работа с обращением", FORM),
             Question("demo-3", "Решение вопроса", "Работа с обращением", FORM),
             Question("demo-4", "Вежливость", "Общение", FORM),
             Question("demo-5", "Завершение разговора", "Общение", FORM))
MARK_COMMENTS = ("не представился", "перебивал клиента", "не уточнил номер заказа", "долгое ожидание на линии",
                 "не предложил решение", "не попрощался")
REVIEW_COMMENTS = {"low": ("клиент ждал ответа больше минуты", "не предложил перезвонить", "грубый тон",
                           "не решил вопрос, перевёл без объяснения", "перезвонить клиенту и извиниться"),
                   "good": ("хорошо выявил потребность", "вежливо и по делу", "вопрос решён с первого звонка")}
QA_FORM_SHARE = 0.12  # answered calls a supervisor evaluates in the PBX's QA form
REVIEW_SHARE = {"low": 0.4, "other": 0.02}  # answered calls a supervisor reviews in the console


class NoWorkingHours(ValueError):
    """The period holds no working hour to place calls in."""


def demo_calls(count: int, *, seed: int, until: datetime, days: int, zone: ZoneInfo,
               scale: tuple[int, int] = (1, 10)) -> list[SimulatedCall]:
    """`count` calls in the working hours (in `zone`) of the `days` days up to `until`, oldest first, numbered
    `demo-<seed>-00001`...: the same arguments give the same calls. Scores and marks fit `scale`."""
    rng = random.Random(seed)
    hours = _working_hours(until.astimezone(zone), days)
    if not hours:
        raise NoWorkingHours(f"no working hour ({min(HOURS)}:00 to {max(HOURS) + 1}:00, {zone.key}) in the "
                             f"{days} day(s) up to {until.astimezone(zone):%Y-%m-%d %H:%M}")
    picked = rng.choices([start for start, _ in hours], [weight for _, weight in hours], k=count)
    starts = sorted(int(start.timestamp()) + rng.randrange(3600) for start in picked)
    phones = [f"79{rng.randrange(10**9):09d}" for _ in range(max(10, count * 2 // 3))]  # some call again
    last = int(until.timestamp())
    return [_demo_call(rng, f"{DEMO_PREFIX}{seed}-{number:05d}", start, last, phones, scale)
            for number, start in enumerate(starts, 1)]


def _working_hours(until: datetime, days: int) -> list[tuple[datetime, float]]:
    """Each working hour of the period that is over by `until`, with its weight."""
    hours = []
    for back in range(days - 1, -1, -1):
        day = until.date() - timedelta(days=back)
        for hour, weight in HOURS.items():
            start = datetime(day.year, day.month, day.day, hour, tzinfo=until.tzinfo)
            if start + timedelta(hours=1) <= until:
                hours.append((start, weight * WEEKDAYS[day.weekday()]))
    return hours


def _on_scale(value: int, scale: tuple[int, int]) -> int:
    """A 1..10 value on the policy's scale."""
    low, high = scale
    return low + round((value - 1) * (high - low) / 9)


def _demo_call(rng: random.Random, entry_id: str, start: int, last: int, phones: list[str],
               scale: tuple[int, int]) -> SimulatedCall:
    operator = rng.choices(OPERATORS, [o.workload for o in OPERATORS])[0]
    line = rng.choices(list(LINES), list(LINES.values()))[0]
    phone = rng.choice(phones)
    kind = rng.random()  # 62 % inbound answered, 13 % missed, 20 % outbound answered, 5 % not answered
    inbound, answered = kind < 0.75, kind < 0.62 or 0.75 <= kind < 0.95
    ring = rng.randint(3, 25) if answered else rng.randint(15, 60)
    talk = 0
    if answered:  # a few minutes, some long ones; over by `last`
        talk = min(max(12, int(rng.lognormvariate(math.log(150), 0.7))), 1500, max(12, last - start - ring))
    score = None
    if inbound and answered and rng.random() < SURVEY_SHARE:
        weights = [w * (operator.low if value <= 6 else 1) for value, w in enumerate(SCORE_WEIGHTS, 1)]
        score = rng.choices(range(1, 11), weights)[0]
    recorded = answered and rng.random() < 0.97
    skill = 10 - 1.6 * operator.low  # where a supervisor's marks of this operator centre, on 1..10
    marks: tuple[Mark, ...] = ()
    if recorded and rng.random() < QA_FORM_SHARE:
        values = [min(10, max(1, round(rng.gauss(skill, 1.4)))) for _ in QUESTIONS]
        marks = tuple(Mark(q.question_id, _on_scale(v, scale), rng.choice(MARK_COMMENTS) if v <= 5 else None)
                      for q, v in zip(QUESTIONS, values))
    review = None
    low = score is not None and score <= 6
    if answered and rng.random() < REVIEW_SHARE["low" if low else "other"]:
        value = min(10, max(1, round(rng.gauss(skill - (2 if low else 0), 1.5))))
        review = (_on_scale(value, scale), rng.choice(REVIEW_COMMENTS["low" if value <= 6 else "good"]))
    return SimulatedCall(entry_id, inbound, operator.extension, line, phone, start, ring, talk,
                         None if score is None else str(_on_scale(score, scale)), recorded, marks, review)


# --- into the connector -----------------------------------------------------------------------------

DEMO_USERS = (("demo-admin", "admin", ()), ("demo-supervisor", "supervisor", ()),  # username, role, extensions
              *((o.username, "operator", (o.extension,)) for o in OPERATORS if o.username))


@dataclass
class Outcome:
    """What `fill` did."""

    events: int = 0  # PBX events (signed callbacks) made
    new: int = 0  # of them stored (the rest were stored before: the same seed again)
    qa_forms: int = 0
    reviews: int = 0
    reviewer: str | None = None  # who wrote the reviews
    accounts: list[tuple[str, str, tuple[str, ...], str]] = field(default_factory=list)  # name, role, ext, password
    seconds: float = 0.0


def refusal(config: Config, db: Database) -> str | None:
    """Why made-up calls must not go into this connector, or None."""
    from sqlalchemy import func, not_, or_, select

    from connector.core.models import Call

    if config.targets:
        return (f"CRM={config.CRM}: the made-up calls would be delivered to {', '.join(config.targets)}. "
                "Try the demo on a connector with CRM=none")
    if pbx_settings(config).quality_api:
        return ("MANGO_QUALITY_API=true: the connector would ask MANGO about calls it never had (each a wrong "
                "request towards MANGO's block). Try the demo on a connector without it")
    with db.reading() as s:
        real = s.scalar(select(func.count()).select_from(Call).where(
            not_(or_(Call.entry_id.startswith(DEMO_PREFIX), Call.entry_id.startswith("sim-")))))
    if real:
        return (f"this database holds {real} call(s) that are not made up: the demo's calls would mix into their "
                "lists and reports. Try the demo on a fresh install")
    return None


def fill(config: Config, db: Database, calls: list[SimulatedCall], *, chunk: int = 500) -> Outcome:
    """Demo accounts when there is no user yet, then the calls through the PBX's intake, their QA forms
    and their reviews. Calls stored before (the same seed again) change nothing and get no second review."""
    began = time.monotonic()
    outcome = Outcome(accounts=_demo_accounts(db))  # first, so that supervisors hear of low scores
    _operator_directory(db)
    new_calls = _store(config, db, calls, chunk, outcome)
    outcome.qa_forms = _qa_forms(config, db, calls)
    reviewer = _reviewer(db)
    if reviewer is not None:
        outcome.reviewer = reviewer.username
        outcome.reviews = _reviews(config, db, [c for c in calls if c.review and c.entry_id in new_calls], reviewer)
    outcome.seconds = time.monotonic() - began
    return outcome


def _demo_accounts(db: Database) -> list[tuple[str, str, tuple[str, ...], str]]:
    """The demo's console accounts, each with a new random password, when the connector has no user yet."""
    from sqlalchemy import func, select

    from connector.core.models import User
    from connector.core.users import add_user, password_problem

    with db.transaction() as s:
        if s.scalar(select(func.count()).select_from(User)):
            return []
        made = []
        for username, role, extensions in DEMO_USERS:
            while password_problem(password := secrets.token_urlsafe(12)):
                pass
            add_user(s, username, role, password, list(extensions))
            made.append((username, role, extensions, password))
        return made


def _operator_directory(db: Database) -> None:
    """The operators' names, as the PBX's user list would give them, when no PBX has filled the directory: a
    real one is never overwritten."""
    from sqlalchemy import func, select

    from connector.core.models import Operator as DirectoryEntry
    from connector.inbound.directory import store
    from connector.inbound.pbx import OperatorEntry

    with db.transaction() as s:
        if not s.scalar(select(func.count()).select_from(DirectoryEntry)):
            store(s, [OperatorEntry(o.extension, o.name, (DEMO_GROUP,)) for o in OPERATORS])


def _store(config: Config, db: Database, calls: list[SimulatedCall], chunk: int, outcome: Outcome) -> set[str]:
    """Each call's callbacks, signed with the account's key, then verified and parsed as the webhook does; kept
    in the inbox and applied to their calls as the inbox worker does, `chunk` callbacks per transaction (a
    callback stored before changes nothing). Returns the calls whose summary is new."""
    from connector.inbound.ingest import apply_messages, receive_many
    from connector.inbound.mango import callbacks as mango
    from connector.wiring import ingest_context

    pbx, ctx = pbx_settings(config), ingest_context(config)
    key, salt = pbx.api_key, pbx.api_salt
    new_calls: set[str] = set()
    pending = []

    def keep() -> None:
        with db.transaction() as s:
            stored = receive_many(s, pending, applied=True)
            apply_messages(s, ctx, [m for (_, m), new in zip(pending, stored) if new])
        outcome.new += sum(stored)
        new_calls.update(m.entry_id for (_, m), new in zip(pending, stored) if new and m.kind == "events/summary")
        pending.clear()

    for call in calls:
        for kind, payload in call.callbacks(pbx.survey_location):
            form = mango.signed_form(key, salt, payload)
            pending.append(("mango", mango.parse(kind, mango.verify(form, key, salt))))
            outcome.events += 1
            if len(pending) == chunk:  # always the same size: one statement, written once (a call's
                keep()                 # events may span two transactions, applied in order all the same)
    if pending:
        keep()
    return new_calls


def _qa_forms(config: Config, db: Database, calls: list[SimulatedCall]) -> int:
    """The supervisors' QA forms, as a page of MANGO's call statistics brings them, with the form's question
    names as MANGO's question command gives them."""
    from connector.inbound import quality
    from connector.inbound.mango.scanner import QualityScanner
    from connector.wiring import build_pbx_api, ingest_context

    scanned = tuple(ScannedCall(c.entry_id, QualityReport(None, False, c.marks), False) for c in calls if c.marks)
    if not scanned:
        return 0
    with db.transaction() as s:
        quality.cache_questions(s, list(QUESTIONS), [])
    scanner = QualityScanner(db, build_pbx_api(config, db), ingest_context(config),
                             survey_wait_seconds=config.SURVEY_WAIT_SECONDS,
                             utc_offset=timedelta(hours=pbx_settings(config).stats_utc_offset), per_call=False)
    scanner.apply(scanned)  # sends nothing: it applies what a report listed
    return len(scanned)


def _reviewer(db: Database) -> Principal | None:
    """Who reviews the demo's calls: the first supervisor, else the first admin, else nobody."""
    from sqlalchemy import select

    from connector.core.models import Role, User
    from connector.core.users import Principal

    with db.reading() as s:
        users = list(s.scalars(select(User).where(User.disabled.is_(False),
                                                  User.role.in_([Role.SUPERVISOR.value, Role.ADMIN.value]))
                               .order_by(User.id)))
    users.sort(key=lambda u: u.role != Role.SUPERVISOR.value)
    if not users:
        return None
    return Principal(users[0].username, Role(users[0].role), tuple(users[0].extensions or ()), users[0].id)


def _reviews(config: Config, db: Database, calls: list[SimulatedCall], reviewer: Principal) -> int:
    """Reviews, as the console adds them (the call's operator is notified)."""
    from connector.console.reviews import add_review
    from connector.inbound.ingest import calls_for_update
    from connector.wiring import ingest_context

    if not calls:
        return 0
    ctx = ingest_context(config)
    with db.transaction() as s:
        rows = calls_for_update(s, [c.entry_id for c in calls])
        for call in calls:
            score, comment = call.review
            add_review(s, ctx, rows[call.entry_id], reviewer, score, comment)
    return len(calls)
