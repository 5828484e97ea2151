"""MANGO OFFICE VPBX commands: signed requests, their `result`, and the 2-minute block.

What the vendor documents (VPBX API v1.9, "Command answers, limits"):
- a command's outcome is the JSON `result` (1000 = success), whatever the HTTP status;
- a wrong request (a 3xxx result) is tolerated once per 2 minutes; a second one within
  2 minutes blocks the account's whole API for 2 minutes (HTTP 401), recordings included;
- about 10 requests per second per product; 429 above it.

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

import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import requests

from connector.accounts import SharedRateLimiter, account_row
from connector.db import Database
from connector.metrics import MANGO_RESULTS
from connector.pbx import Mark, QualityReport, Question
from connector.pbx.mango import signed_form

log = logging.getLogger(__name__)

ACCOUNT = "mango"
SUCCESS = 1000
BLOCK = timedelta(seconds=125)  # the vendor's 2 minutes, and a margin for clock differences
STRIKE_WINDOW = timedelta(seconds=125)
PROBE_LEASE_SECONDS = 30.0  # longer than a request can take (TIMEOUT)
TIMEOUT = (5, 20)


class MangoError(Exception):
    """A command failed. `status` is the HTTP status, `result` MANGO's code (None when absent)."""

    def __init__(self, message: str, *, status: int | None = None, result: int | None = None):
        super().__init__(message)
        self.message, self.status, self.result = message, status, result


class MangoWrongRequest(MangoError):
    """MANGO refused this request (a 3xxx result: bad parameters, or no such call or recording).
    Sending it again would fail again and count towards the block."""


class MangoUnavailable(MangoError):
    """Not now: blocked, cooling down after a wrong request, rate-limited, overloaded, unreachable.
    `retry_at` is when to try again."""

    def __init__(self, message: str, retry_at: datetime, **answer):
        super().__init__(message, **answer)
        self.retry_at = retry_at


class MangoCoolingDown(MangoUnavailable):
    """Only requests that may fail are held (a strike in the last 2 minutes, or another such
    request in flight); requests expected to succeed may still go."""


def _now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class GuardState:
    blocked_until: datetime | None
    strike_at: datetime | None

    def blocked(self, now: datetime) -> bool:
        return self.blocked_until is not None and self.blocked_until > now


class MangoGuard:
    """MANGO's block, strike window and rate, kept in the database for every process."""

    def __init__(self, db: Database, rate: float, *, clock=time.time, sleep=time.sleep):
        self.db = db
        self.limiter = SharedRateLimiter(db, ACCOUNT, rate, clock=clock, sleep=sleep)
        self.clock = clock

    def admit(self, *, probing: bool) -> None:
        """Wait for a rate slot, or raise MangoUnavailable when the request must not go now."""
        with self.db.transaction() as s:
            row = account_row(s, ACCOUNT, lock=True)
            now = datetime.fromtimestamp(self.clock(), timezone.utc)
            if row.blocked_until and row.blocked_until > now:
                raise MangoUnavailable("MANGO's API is blocked for this account", row.blocked_until)
            if probing:
                if row.strike_at and row.strike_at + STRIKE_WINDOW > now:
                    raise MangoCoolingDown("waiting out the 2 minutes after a wrong request",
                                           row.strike_at + STRIKE_WINDOW)
                if row.probe_until > now.timestamp():
                    raise MangoCoolingDown("another request that may fail is in flight",
                                           datetime.fromtimestamp(row.probe_until, timezone.utc))
                row.probe_until = now.timestamp() + PROBE_LEASE_SECONDS
        self.limiter.wait_turn()

    def settle(self, *, probing: bool, wrong: bool = False, blocked: bool = False) -> None:
        if not (probing or wrong or blocked):
            return  # nothing to record: no extra round trip on the common path
        with self.db.transaction() as s:
            row = account_row(s, ACCOUNT, lock=True)
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
        with self.db.transaction() as s:
            row = account_row(s, ACCOUNT)
            return GuardState(row.blocked_until, row.strike_at)


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


def parse_quality(call: object) -> QualityReport:
    """`call` of a `cc/call/` answer -> QualityReport. Every field is read defensively: the
    PDF's own example wraps `mark_controller` in a one-element list, marks may be strings."""
    call = call if isinstance(call, dict) else {}
    raw = call.get("mark_client")
    raw_text = None if raw is None or isinstance(raw, (dict, list)) else (_text(raw, 64) or "").strip()
    unanswered = raw_text == "-1"
    customer = None if unanswered or not raw_text else raw_text
    controller = call.get("mark_controller")
    if isinstance(controller, list):
        controller = next((item for item in controller if isinstance(item, dict)), {})
    marks = []
    for question_id, answer in (controller or {}).items() if isinstance(controller, dict) else ():
        answer = answer if isinstance(answer, dict) else {"mark": answer}
        qid = _text(question_id, 64)
        if qid:
            marks.append(Mark(qid, _mark(answer.get("mark")), _text(answer.get("comment"), 2000)))
    return QualityReport(customer, unanswered, tuple(sorted(marks, key=lambda m: m.question_id)))


class MangoApi:
    """Commands to the VPBX API, each admitted by the guard and read by its `result`."""

    def __init__(self, base_url: str, api_key: str, salt: str, guard: MangoGuard, *,
                 session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/") + "/"
        self.api_key, self.salt = api_key, salt
        self.guard = guard
        self.http = session or requests.Session()

    def _post(self, path: str, payload: dict, *, probing: bool) -> tuple[requests.Response, object]:
        self.guard.admit(probing=probing)
        wrong = blocked = False
        try:
            try:
                response = self.http.post(self.base_url + path, data=signed_form(self.api_key, self.salt, payload),
                                          timeout=TIMEOUT, allow_redirects=False)
            except (requests.Timeout, requests.ConnectionError) as exc:
                raise MangoUnavailable(f"{path}: {type(exc).__name__}", _now() + timedelta(seconds=30)) from None
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
                raise MangoUnavailable(f"{where}: MANGO blocked the account's API", _now() + BLOCK,
                                       status=status, result=result)
            if status == 429:
                self.guard.hold(1.0)
                raise MangoUnavailable(f"{where}: rate limited", _now() + timedelta(seconds=2),
                                       status=status, result=result)
            if result is not None and 3000 <= result < 4000:
                wrong = True
                raise MangoWrongRequest(where, status=status, result=result)
            if result == SUCCESS or (result is None and status < 300):
                return response, body
            # 2xxx (billing), 5xxx and 5xx (overloaded), or an answer we cannot read: later.
            delay = 600 if result is not None and 2000 <= result < 3000 else 60
            raise MangoUnavailable(where, _now() + timedelta(seconds=delay), status=status, result=result)
        finally:
            self.guard.settle(probing=probing, wrong=wrong, blocked=blocked)

    def command(self, path: str, payload: dict, *, probing: bool = False) -> dict:
        _, body = self._post(path, payload, probing=probing)
        return body if isinstance(body, dict) else {}

    # --- what the connector asks -------------------------------------------------------
    def call_quality(self, entry_id: str, *, probing: bool) -> QualityReport:
        """The Contact Center's data for a call: the customer's mark and the supervisor's form."""
        return parse_quality(self.command("cc/call/", {"entry_id": entry_id}, probing=probing).get("call"))

    def quality_question(self, question_id: str) -> Question:
        body = self.command("quality/control/question/", {"question_id": question_id})
        q = body.get("question") if isinstance(body.get("question"), dict) else {}
        return Question(question_id, _text(q.get("name"), 255), _text(q.get("block_name"), 255),
                        _text(q.get("qual_ctrl_form_name"), 255))

    def recording_link(self, recording_id: str, action: str = "play") -> str:
        """A temporary, single-use link to a recording (never store it). MangoWrongRequest: no file."""
        response, body = self._post("queries/recording/post", {"recording_id": recording_id, "action": action},
                                    probing=False)
        location = response.headers.get("Location")
        if not location:
            raise MangoUnavailable(f"queries/recording/post: no link in the answer ({json.dumps(body)[:100]})",
                                   _now() + timedelta(seconds=60), status=response.status_code)
        return location
