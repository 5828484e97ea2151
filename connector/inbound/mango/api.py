"""MANGO OFFICE VPBX commands: signed requests, their `result`, and the 2-minute block.

What the vendor documents (VPBX API v1.9, "Command answers, limits"):
- a command's outcome is the JSON `result` (1000 = success), whatever the HTTP status;
- a wrong request (a 3xxx result) is tolerated once per 2 minutes; a second one within
  2 minutes blocks the account's whole API for 2 minutes (HTTP 401), recordings included;
- about 10 requests per second per product; 429 above it;
- the Contact Center API (`cc/call/`, the quality questions) answers its own rate limit
  (10 per second) with `{"result": 5008}`, not 429: a second or two's pause, not an outage;
- extended call statistics are started at most once per 2 seconds per product (429 above it).

So every process shares, through one database row (`MangoGuard`):
- the rate slot (`MANGO_RATE_LIMIT` per second, `SharedRateLimiter`);
- `blocked_until`: after a 401 nothing at all is sent until it has passed;
- `strike_at`: after a wrong request, a request that *might* fail (`probing`: e.g. asking the
  Contact Center about a call it has never answered for) waits out the 2-minute window;
- `probe_until`: at most one probing request in flight across all processes, so two cannot
  fail together.
A request expected to succeed (a recording the PBX announced, a question id the PBX itself sent,
a call it answered for before) is not held by a strike; a recording the PBX then says it does not
have is remembered by the caller, so it is never asked again within the window.
"""
from __future__ import annotations

import enum
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

import requests
from prometheus_client import Counter

from connector.core.accounts import SharedRateLimiter
from connector.core.db import Database
from connector.core.validation import text_problem
from connector.inbound.mango.callbacks import signed_form
from connector.inbound.mango.models import ACCOUNT, mango_row
from connector.inbound.pbx import (GuardState, Mark, OperatorEntry, PbxBlocked, PbxBusy, PbxCoolingDown, PbxError, PbxUnavailable,
                                   PbxWrongRequest, QualityReport, Question, RecordingFile, ScannedCall, SmsMessage)

log = logging.getLogger(__name__)

SUCCESS = 1000
BLOCK = timedelta(seconds=125)  # the vendor's 2 minutes, and a margin for clock differences
STRIKE_WINDOW = timedelta(seconds=125)
PROBE_LEASE_SECONDS = 30.0  # longer than a request can take (TIMEOUT)
TIMEOUT = (5, 20)
RECORDING_TIMEOUT = (5, 120)  # a long call's file is tens of megabytes
BUSY_BACKOFF = 1.5  # a 429, or the Contact Center's 5008: this request waits a second or two
CC_RATE_LIMITED = 5008  # the Contact Center API's "over 10 requests per second" (PDF §1.4.3)
# Commands of the Contact Center API: their rate limit answers 5008 instead of HTTP 429.
CC_PATHS = ("cc/call/", "quality/control/question/")
MANGO_RESULTS = Counter("connector_mango_results_total", "MANGO command answers, by command and result code "
                        "(or HTTP status when there is none)", ["command", "result"])
STATS_ACCOUNT = "mango:stats"  # its own rate slot: starting a statistics report, 1 per 2 s per product
STATS_START_RATE = 0.5
# A report's window may not exceed a month; 28 days is within every month, so no calendar makes it wrong.
STATS_MAX_SPAN = timedelta(days=28)
STATS_LIMITS = (1, 5, 10, 20, 50, 100, 500, 1000, 2000, 5000)  # the only `limit` values MANGO accepts
STATS_TIME_FORMAT = "%d.%m.%Y %H:%M:%S"  # as the PDF's example (s.61)


class ReportStatus(enum.StrEnum):
    """The state of a statistics report (`stats/calls/result/`'s `status`)."""

    REQUEST = "request"
    WORK = "work"
    COMPLETE = "complete"
    CANCEL = "cancel"
    ERROR = "error"
    NOT_FOUND = "not-found"

    @classmethod
    def read(cls, value: object) -> "ReportStatus":
        try:
            return cls(str(value))
        except ValueError:
            return cls.ERROR


@dataclass(frozen=True)
class StatsWindow:
    """A validated period and page of extended call statistics: built only with values MANGO accepts,
    so a statistics request can never be a wrong request (3xxx) that counts towards the block."""

    start: datetime
    end: datetime
    limit: int = 5000
    offset: int = 0

    def __post_init__(self):
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("statistics window: aware datetimes only")
        if not timedelta(0) < self.end - self.start <= STATS_MAX_SPAN:
            raise ValueError(f"statistics window: must be positive and at most {STATS_MAX_SPAN.days} days")
        if self.limit not in STATS_LIMITS:
            raise ValueError(f"statistics limit: one of {STATS_LIMITS}, got {self.limit}")
        if self.offset < 0:
            raise ValueError("statistics offset: must not be negative")

    def payload(self, utc_offset: timedelta) -> dict:
        """The request's json; MANGO reads the dates in its own time zone (`utc_offset`)."""
        zone = timezone(utc_offset)
        return {"start_date": self.start.astimezone(zone).strftime(STATS_TIME_FORMAT),
                "end_date": self.end.astimezone(zone).strftime(STATS_TIME_FORMAT),
                # Strings, as in the PDF's example (s.61); its table types them as integers.
                "limit": str(self.limit), "offset": str(self.offset), "ext_params": 1}


@dataclass(frozen=True)
class StatsPage:
    status: ReportStatus
    calls: tuple[ScannedCall, ...]
    rows: int  # calls listed, all kinds: a full page (rows == limit) means another may follow


def guard_state(session) -> GuardState:
    """The block and the last strike as every process sees them (the status page, `PbxKit.guard_state`)."""
    row = mango_row(session)
    return GuardState(row.blocked_until, row.strike_at)


class MangoGuard:
    """MANGO's block, strike window and rate, kept in the database for every process."""

    def __init__(self, db: Database, rate: float, *, clock=time.time, sleep=time.sleep):
        self.db = db
        self.limiter = SharedRateLimiter(db, ACCOUNT, rate, clock=clock, sleep=sleep)
        self.stats_limiter = SharedRateLimiter(db, STATS_ACCOUNT, STATS_START_RATE, clock=clock, sleep=sleep)
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), timezone.utc)

    def admit(self, *, probing: bool) -> None:
        """Wait for a rate slot, or raise PbxUnavailable when the request must not go now."""
        with self.db.transaction() as s:
            row = mango_row(s, lock=True)
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            if row.blocked_until and row.blocked_until > now:
                raise PbxBlocked("MANGO's API is blocked for this account", row.blocked_until)
            if probing:
                if row.strike_at and row.strike_at + STRIKE_WINDOW > now:
                    raise PbxCoolingDown("waiting out the 2 minutes after a wrong request",
                                           row.strike_at + STRIKE_WINDOW)
                if row.probe_until > now.timestamp():
                    raise PbxCoolingDown("another request that may fail is in flight",
                                           datetime.fromtimestamp(row.probe_until, timezone.utc))
                row.probe_until = now.timestamp() + PROBE_LEASE_SECONDS
        self.limiter.wait_turn()

    def settle(self, *, probing: bool, wrong: bool = False, blocked: bool = False) -> None:
        if not (probing or wrong or blocked):
            return  # nothing to record: no extra round trip on the common path
        with self.db.transaction() as s:
            row = mango_row(s, lock=True)
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            if probing:
                row.probe_until = 0.0
            if wrong:
                row.strike_at = now
            if blocked:
                row.blocked_until = now + BLOCK
                log.error("MANGO blocked the account's API (HTTP 401) until %s UTC", row.blocked_until)

    def hold(self, seconds: float) -> None:
        self.limiter.hold(seconds)

    def state(self) -> GuardState:
        with self.db.reading() as s:
            return guard_state(s)


def _result(body: object) -> int | None:
    """MANGO's result code; the recording command's error answer calls it `code`."""
    if not isinstance(body, dict):
        return None
    for key in ("result", "code"):
        try:
            return int(body[key])
        except (KeyError, TypeError, ValueError):
            continue
    return None


def _text(value: object, limit: int) -> str | None:
    """A string from the PBX, made storable: no NUL, no lone surrogates, cut to its column."""
    if value is None:
        return None
    text = str(value).replace("\x00", "").encode("utf-8", "replace").decode("utf-8")
    return text[:limit] if text.strip() else None


def _mark(value: object) -> int | None:
    try:
        mark = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return mark if -1000 <= mark <= 1000 else None


def _controller_marks(controller: object) -> tuple[Mark, ...]:
    """`mark_controller`, in any of its documented shapes: `cc/call/` keys answers by question id
    (`{"3092": {"mark", "comment"}}`, the PDF's example wraps that in a one-element list); extended
    statistics list them with a `question_id` each (`[{"question_id", "mark", "comment"}]`)."""
    items = controller if isinstance(controller, list) else [controller]
    answers: dict[str, object] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        if "question_id" in item:
            answers[item["question_id"]] = item
        else:
            answers.update(item)
    marks = []
    for question_id, answer in answers.items():
        answer = answer if isinstance(answer, dict) else {"mark": answer}
        qid = _text(question_id, 64)
        if qid:
            marks.append(Mark(qid, _mark(answer.get("mark")), _text(answer.get("comment"), 2000)))
    return tuple(sorted(marks, key=lambda m: m.question_id))


def parse_quality(call: object) -> QualityReport:
    """`call` of a `cc/call/` answer (or one call of extended statistics) -> QualityReport. Every field
    is read defensively: marks may be strings, `mark_controller` comes in several shapes."""
    call = call if isinstance(call, dict) else {}
    raw = call.get("mark_client")
    raw_text = None if raw is None or isinstance(raw, (dict, list)) else (_text(raw, 64) or "").strip()
    unanswered = raw_text == "-1"
    customer = None if unanswered or not raw_text else raw_text
    return QualityReport(customer, unanswered, _controller_marks(call.get("mark_controller")))


def parse_scanned(call: object) -> ScannedCall | None:
    """One call of extended statistics (`data[].list[]`); None without a usable entry_id.
    The Contact Center handled it when it opened a request for it (`conversion`) or placed it
    (`context_init_type` 3) [PDF §3.4.2.3, s.62]."""
    if not isinstance(call, dict):
        return None
    entry_id = _text(call.get("entry_id"), 128)
    if not entry_id:
        return None
    conversion = call.get("conversion")
    handled = bool(conversion) or str(call.get("context_init_type")).strip() == "3"
    return ScannedCall(entry_id.strip(), parse_quality(call), handled)


def parse_users(body: object) -> tuple[OperatorEntry, ...]:
    """`config/users/request`'s answer -> the users that have an extension. Each user is
    `{"general": {"name", ...}, "telephony": {"extension", ...}, "groups": [ids]}` (public clients' models:
    the C# `Mango.Core.Dto.Vpbx.Responses.VpbxUser`, the npm `mango-vpbx`'s `users`). An answer without the
    `users` list is not an empty directory: it raises, so a directory is never wiped by an odd answer."""
    users = body.get("users") if isinstance(body, dict) else None
    if not isinstance(users, list):
        raise PbxError("config/users/request: no users list in the answer")
    entries: dict[str, OperatorEntry] = {}
    for user in users:
        user = user if isinstance(user, dict) else {}
        general = user.get("general") if isinstance(user.get("general"), dict) else {}
        telephony = user.get("telephony") if isinstance(user.get("telephony"), dict) else {}
        extension = (_text(telephony.get("extension"), 32) or "").strip()
        if not extension or text_problem(extension):
            continue  # a user without an extension takes no calls
        name = _text(general.get("name"), 255)
        name = name.strip() if name and not text_problem(name) else None
        groups = user.get("groups") if isinstance(user.get("groups"), list) else []
        entries[extension] = OperatorEntry(extension, name or None,
                                           tuple(g for g in (_text(x, 64) for x in groups) if g))
    return tuple(entries[e] for e in sorted(entries))


class MangoApi:
    """Commands to the VPBX API, each admitted by the guard and read by its `result`. The key and salt are
    read at each request from `credentials` (the pair in force: the console's or the environment's), so a
    pair an admin saves is used from then on without a restart."""

    probe_hold = STRIKE_WINDOW  # a probing request refused: how long no one asks for that resource again

    def __init__(self, base_url: str, api_key: str, salt: str, guard: MangoGuard, *,
                 session: requests.Session | None = None, credentials: Callable[[], tuple[str, str]] | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.credentials = credentials or (lambda: (api_key, salt))
        self.guard = guard
        self.http = session or requests.Session()

    def with_credentials(self, api_key: str, salt: str) -> "MangoApi":
        """The same API (guard, session) signing with another pair: to check a pair before it is saved."""
        return MangoApi(self.base_url, api_key, salt, self.guard, session=self.http)

    @property
    def configured(self) -> bool:
        return all(self.credentials())

    def _post(self, path: str, payload: dict, *, probing: bool) -> tuple[requests.Response, object]:
        api_key, salt = self.credentials()
        if not (api_key and salt):  # an unsigned request would only be refused, and count towards the block
            raise PbxUnavailable(f"{path}: the PBX's key and salt are not set",
                                   self.guard.now() + timedelta(minutes=1))
        self.guard.admit(probing=probing)
        wrong = blocked = False
        now = self.guard.now
        try:
            try:
                response = self.http.post(self.base_url + path, data=signed_form(api_key, salt, payload),
                                          timeout=TIMEOUT, allow_redirects=False)
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise PbxUnavailable(f"{path}: {type(exc).__name__}", now() + timedelta(seconds=30)) from None
            if response.is_redirect:
                return response, None
            try:
                body = response.json()
            except ValueError:
                body = None
            status, result = response.status_code, _result(body)
            MANGO_RESULTS.labels(path, str(result if result is not None else f"http_{status}")).inc()
            where = f"{path}: HTTP {status}" + (f", result {result}" if result is not None else "")
            if status == 401:
                blocked = True
                raise PbxBlocked(f"{where}: MANGO blocked the account's API", now() + BLOCK,
                                       status=status, result=result)
            if status == 429 or (result == CC_RATE_LIMITED and path in CC_PATHS):
                # A rate limit, not an outage: hold the shared slot, and retry this request shortly.
                self.guard.hold(BUSY_BACKOFF)
                raise PbxBusy(f"{where}: rate limited", now() + timedelta(seconds=BUSY_BACKOFF),
                                status=status, result=result)
            if result is not None and 3000 <= result < 4000:
                wrong = True
                raise PbxWrongRequest(where, status=status, result=result)
            if result == SUCCESS or (result is None and status < 300):
                return response, body
            # 2xxx (billing), 5xxx and 5xx (overloaded), or an answer we cannot read: later.
            delay = 600 if result is not None and 2000 <= result < 3000 else 60
            raise PbxUnavailable(where, now() + timedelta(seconds=delay), status=status, result=result)
        finally:
            self.guard.settle(probing=probing, wrong=wrong, blocked=blocked)

    def command(self, path: str, payload: dict, *, probing: bool = False) -> dict:
        _, body = self._post(path, payload, probing=probing)
        return body if isinstance(body, dict) else {}

    # --- what the connector asks -------------------------------------------------------
    def users(self, *, probing: bool = False) -> tuple[OperatorEntry, ...]:
        """The PBX's users: harmless (it changes nothing), so it also checks a key and salt. Its success answer
        is `{"users": [...]}` with no `result` [mango-vpbx src/urls.js `config/users/request`; C# Mango.Vpbx.Client
        MangoVpbxEmployeesService]. `probing`: a pair not yet known to work, which may be refused (3102, 3105)."""
        return parse_users(self.command("config/users/request", {}, probing=probing))

    def call_quality(self, entry_id: str, *, probing: bool) -> QualityReport:
        """The Contact Center's data for a call: the customer's mark and the supervisor's form."""
        return parse_quality(self.command("cc/call/", {"entry_id": entry_id}, probing=probing).get("call"))

    def quality_question(self, question_id: str) -> Question:
        body = self.command("quality/control/question/", {"question_id": question_id})
        q = body.get("question") if isinstance(body.get("question"), dict) else {}
        return Question(question_id, _text(q.get("name"), 255), _text(q.get("block_name"), 255),
                        _text(q.get("qual_ctrl_form_name"), 255))

    def recording_link(self, recording_id: str, action: str = "play", *, probing: bool = False) -> str:
        """A temporary, single-use link to a recording (never store it). PbxWrongRequest: no file.
        `probing`: the file may not be ready yet (just announced), so the answer may be 3320."""
        response, body = self._post("queries/recording/post", {"recording_id": recording_id, "action": action},
                                    probing=probing)
        location = response.headers.get("Location")
        if not location:
            raise PbxUnavailable(f"queries/recording/post: no link in the answer ({json.dumps(body)[:100]})",
                                   self.guard.now() + timedelta(seconds=60), status=response.status_code)
        return location

    def recording_file(self, recording_id: str) -> RecordingFile:
        """The recording's file, downloaded through a fresh single-use link (PDF §3.5.1: it answers
        `audio/mp3`). PbxWrongRequest: the PBX has no file; PbxUnavailable: not now."""
        link = self.recording_link(recording_id, "download")
        try:
            response = self.http.get(link, timeout=RECORDING_TIMEOUT)
        except (requests.Timeout, requests.ConnectionError) as exc:
            raise PbxUnavailable(f"recording download: {type(exc).__name__}",
                                   self.guard.now() + timedelta(seconds=30)) from None
        if response.status_code != 200 or not response.content:
            raise PbxError(f"recording download answered HTTP {response.status_code}", status=response.status_code)
        return RecordingFile(response.content, response.headers.get("Content-Type") or "audio/mpeg")

    def send_sms(self, message: SmsMessage) -> None:
        """`commands/sms` (PDF v1.9 §3.2.4): `command_id`, `from_extension` (required; the SMS is billed to that
        employee), `to_number`, `text`, and `sms_sender` when one is set. It answers at once with `result` 1000
        (accepted); what became of it comes later at `result/sms` and `events/sms`, carrying our command_id.
        Sent as a request that may fail: a 3xxx counts toward the 2-minute block, so only one such request is
        in flight across every process, and none goes in the 2 minutes after a wrong one."""
        payload = {"command_id": message.command_id, "from_extension": message.from_extension,
                   "to_number": message.to_number, "text": message.text}
        if message.sender:
            payload["sms_sender"] = message.sender
        self.command("commands/sms", payload, probing=True)

    # --- extended call statistics: the marks of every call of a period, in bulk ---------------
    def start_call_statistics(self, window: StatsWindow, utc_offset: timedelta) -> str:
        """Start a report of one page of calls (with the Contact Center's data); returns its key."""
        self.guard.stats_limiter.wait_turn()  # 1 report per 2 s per product, for every process
        body = self.command("stats/calls/request", window.payload(utc_offset))
        key = body.get("key")
        if not isinstance(key, str) or not key.strip():
            raise PbxUnavailable("stats/calls/request: no key in the answer", self.guard.now() + timedelta(seconds=60))
        return key

    def call_statistics(self, key: str) -> StatsPage:
        """The report of `key`: its status and, once complete, its calls."""
        body = self.command("stats/calls/result/", {"key": key})
        status = ReportStatus.read(body.get("status"))
        calls, rows = [], 0
        if status == ReportStatus.COMPLETE:
            for day in body.get("data") or []:  # one element per day of the period
                listed = day.get("list") if isinstance(day, dict) else None
                for item in listed if isinstance(listed, list) else []:
                    rows += 1
                    scanned = parse_scanned(item)
                    if scanned is not None:
                        calls.append(scanned)
        return StatsPage(status, tuple(calls), rows)
