"""A fake MANGO OFFICE VPBX command API, served over real HTTP in the tests.

It behaves as the vendor's PDF (API v1.9) describes:
- every command is a signed form (`vpbx_api_key`, `sign` = sha256(key + json + salt), `json`);
- the outcome is the JSON `result` (1000 = success); an error's HTTP status is undocumented, so
  it is `error_status` (200 by default, or e.g. 400), and the client must read `result` either way;
- `cc/call/` answers `{"result": 1000, "call": {...}}` for a call in the Contact Center's
  history (`calls`), and 3300 for any other;
- `quality/control/question/` answers `{"result": 1000, "question": {...}}` (`questions`), or 3300;
- the Contact Center's commands over `cc_rate_limit` a second answer `{"result": 5008}`;
- `queries/recording/post` answers a 302 to a single-use link (`recordings`), or 3320; a recording
  announced moments ago (`store_recording`) answers 3320 until it is ready;
- `stats/calls/request` starts a report of `stats_calls` (extended statistics), at most one per
  2 seconds; `stats/calls/result/` answers it `request`/`work`, then `complete`, then forgets it;
- `config/users/request` answers `{"users": [...]}` (`users`), with no `result` on success;
- a bad key is 3105, a bad sign 3102;
- a wrong request (3xxx) is tolerated once per 2 minutes: a second one within 2 minutes gets
  HTTP 401 and blocks every command for 2 minutes; `advance()` moves the fake's clock (or `clock`
  is the caller's own);
- more than `rate_limit` requests in a second get HTTP 429;
- `commands/sms` takes `command_id`, `from_extension` (required), `to_number` (a full number), `text` (at
  most 268 Cyrillic or 612 Latin characters) and `sms_sender`, answers `{"result": 1000}` at once, and keeps
  the later `result/sms` and `events/sms` reports for the test to post (`sms_reports`).
The time zone MANGO reads a statistics period in is not documented: the fake reads it as UTC+3,
as the connector sends it by default (MANGO_STATS_UTC_OFFSET).
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from flask import Flask, abort, jsonify, redirect, request

WINDOW = BLOCK = 120.0
CC_PATHS = ("cc/call/", "quality/control/question/")
STATS_LIMITS = (1, 5, 10, 20, 50, 100, 500, 1000, 2000, 5000)
STATS_ZONE = timezone(timedelta(hours=3))  # assumed (undocumented): see the module's docstring
REPORT_KEPT = 60.0  # PDF §3.4.2.3 s.62: a prepared report is kept at least a minute


@dataclass
class FakeMango:
    api_key: str
    salt: str
    recordings: set = field(default_factory=set)
    calls: dict = field(default_factory=dict)  # entry_id -> the `call` object of cc/call/
    questions: dict = field(default_factory=dict)  # question_id -> the `question` object
    error_status: int = 200
    rate_limit: int = 10
    cc_rate_limit: int = 10  # PDF §1.4.3 s.09: the Contact Center API, 10 requests/s for all its requests
    stats_calls: dict = field(default_factory=dict)  # entry_id -> one call of extended statistics
    # `config/users/request`'s users: {"general": {"name", ...}, "telephony": {"extension", ...}, "groups": [...]}
    users: list = field(default_factory=list)
    report_seconds: float = 0.0  # how long a statistics report takes to prepare (fake clock)
    reports_fail: bool = False  # every report ends with the status `error` (PDF §3.4.2.3 s.62)
    clock: Callable[[], float] = time.monotonic
    requests: list = field(default_factory=list)  # (path, json body, HTTP status, result)
    wrong_at: list = field(default_factory=list)  # fake-clock times of wrong requests
    blocked_until: float = 0.0
    blocks: int = 0
    sms: list = field(default_factory=list)  # the SMS commands it accepted, as sent
    # to_number -> result/sms code (1000 unless set; 2xxx billing, 3100, 4300: PDF §3.1.3 and the codes s.243)
    sms_results: dict = field(default_factory=dict)
    # to_number -> events/sms reason (1000 unless set; 4300, 4301, 4391-4393: PDF §3.1.3 s.28)
    sms_delivery: dict = field(default_factory=dict)
    sms_senders: tuple = ()  # sender names the account has (PDF §3.2.4: only those); () takes any

    def __post_init__(self):
        self.lock = threading.RLock()
        self.offset = 0.0
        self._window: deque = deque()
        self._cc_window: deque = deque()
        self._stats_window: deque = deque()
        self._results_window: deque = deque()
        self.issued: dict[str, str] = {}
        self.reports: dict[str, dict] = {}
        self.ready_at: dict[str, float] = {}  # recording_id -> when the file can be fetched

    def now(self) -> float:
        return self.clock() + self.offset

    def store_recording(self, recording_id: str, ready_in: float = 20.0) -> None:
        """The PBX announced the file (record/added), but under load it is fetchable only `ready_in` later."""
        with self.lock:
            self.recordings.add(recording_id)
            self.ready_at[recording_id] = self.now() + ready_in

    def add_stats_call(self, entry_id: str, start: float, *, contact_center: bool, **fields) -> dict:
        """A call in the extended statistics (`start`: unix UTC); with `contact_center` it has a request
        (`conversion`) and is also in the Contact Center's history (`calls`) with the same marks."""
        row = {"entry_id": entry_id, "context_type": 1, "context_status": 1, "context_start_time": int(start),
               "duration": 60, "talk_duration": 50, "context_init_type": 0, "mark_client": None,
               "mark_controller": None, "context_calls": [], **fields}
        if contact_center:
            row["conversion"] = {"conversion_id": len(self.stats_calls) + 1, "channel_type": 1, "group_id": 7}
        with self.lock:
            self.stats_calls[entry_id] = row
            if contact_center:
                self.calls[entry_id] = row
        return row

    def set_marks(self, entry_id: str, **marks) -> None:
        """The customer answered the survey, or a supervisor filled the form: both sources see it."""
        with self.lock:
            for source in (self.stats_calls, self.calls):
                if entry_id in source:
                    source[entry_id].update(marks)

    @staticmethod
    def _over(window: deque, now: float, limit: float, per: float = 1.0) -> bool:
        while window and now - window[0] >= per:
            window.popleft()
        if len(window) >= limit:
            return True
        window.append(now)
        return False

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += seconds

    def sms_reports(self) -> list[tuple[str, dict]]:
        """The reports the PBX posts later for each accepted SMS: `result/sms` (sent or not) and, once sent, the
        carrier's `events/sms` (reference mango-vpbx.md "SMS": PDF §3.2.4, §3.1.3)."""
        reports = []
        for body in self.sms:
            result = self.sms_results.get(body["to_number"], 1000)
            reports.append(("result/sms", {"command_id": body["command_id"], "result": result}))
            if result == 1000:  # a carrier's report only for an SMS the PBX sent (reference mango-vpbx.md "SMS")
                reports.append(("events/sms", {"command_id": body["command_id"],
                                               "reason": self.sms_delivery.get(body["to_number"], 1000)}))
        return reports

    def commands(self, path: str) -> list:
        return [r for r in self.requests if r[0] == path]

    def _wrong(self, now: float) -> bool:
        """Record a wrong request; True when it is the second within 2 minutes (the block)."""
        recent = [t for t in self.wrong_at if now - t < WINDOW]
        self.wrong_at.append(now)
        if recent:
            self.blocked_until = now + BLOCK
            self.blocks += 1
            return True
        return False


def create_fake_mango(fake: FakeMango) -> Flask:
    app = Flask("fake_mango")

    def answer(path: str, body: dict, result: int, payload: dict | None = None):
        now = fake.now()
        with fake.lock:
            # PDF §1.4.1 s.07: one wrong request (3xxx) per 2 minutes; a second gets 401 and the block
            if 3000 <= result < 4000 and fake._wrong(now):
                fake.requests.append((path, body, 401, result))
                response = jsonify({"result": result})
                response.status_code = 401
                return response
        status = 200 if result == 1000 else fake.error_status
        fake.requests.append((path, body, status, result))
        response = jsonify({"result": result, **(payload or {})})
        response.status_code = status
        return response

    @app.before_request
    def gate():
        if request.path.startswith("/files/"):
            return None
        now = fake.now()
        with fake.lock:
            while fake._window and now - fake._window[0] >= 1.0:
                fake._window.popleft()
            fake._window.append(now)
            if len(fake._window) > fake.rate_limit:  # PDF §1.4.2 s.08: about 10/s per product, then HTTP 429
                fake.requests.append((request.path, None, 429, None))
                response = jsonify({"name": "Service Unavailable", "message": "Rate limit exceeded.",
                                    "status": 429})
                response.status_code = 429
                return response
            if fake.blocked_until > now:  # PDF §1.4.1 s.07: blocked, every command answers 401
                fake.requests.append((request.path, None, 401, None))
                response = jsonify({"result": 3100})
                response.status_code = 401
                return response
        return None

    def signed() -> tuple[dict | None, int]:
        form = request.form
        if form.get("vpbx_api_key") != fake.api_key:
            return None, 3105
        expected = hashlib.sha256((fake.api_key + form.get("json", "") + fake.salt).encode()).hexdigest()
        if form.get("sign") != expected:
            return None, 3102
        return json.loads(form["json"]), 1000

    def cc_over_rate(path: str):
        """PDF §1.4.3 s.09: over the Contact Center API's limit, {"result": 5008}, not HTTP 429."""
        with fake.lock:
            if fake._over(fake._cc_window, fake.now(), fake.cc_rate_limit):
                fake.requests.append((path, None, 200, 5008))
                return jsonify({"result": 5008})
        return None

    @app.post("/vpbx/cc/call/")
    def cc_call():
        if (busy := cc_over_rate("cc/call/")) is not None:
            return busy
        body, result = signed()
        if body is None:
            return answer("cc/call/", {}, result)
        call = fake.calls.get(body.get("entry_id"))
        if call is None:
            # reference mango-vpbx.md 1b (PDF §4.7.1 s.208, §1.4.1 s.07): a call the Contact Center never
            # handled is 3300, a wrong request that counts toward the 2-minute block
            return answer("cc/call/", body, 3300)
        return answer("cc/call/", body, 1000, {"call": {"entry_id": body["entry_id"], **call}})

    @app.post("/vpbx/stats/calls/request")
    @app.post("/vpbx/stats/calls/request/")
    def stats_request():
        path = "stats/calls/request"
        body, result = signed()
        if body is None:
            return answer(path, {}, result)
        now = fake.now()
        with fake.lock:
            if fake._over(fake._stats_window, now, 1, per=2.0):  # PDF §1.4.2 s.08: 1 per 2 s per product, 429
                return rate_limited(path)
        try:  # PDF §3.4.2.2 s.61: the 4 parameters are required, the period at most a month, fixed limits
            start = datetime.strptime(body["start_date"], "%d.%m.%Y %H:%M:%S").replace(tzinfo=STATS_ZONE)
            end = datetime.strptime(body["end_date"], "%d.%m.%Y %H:%M:%S").replace(tzinfo=STATS_ZONE)
            limit, offset = int(body["limit"]), int(body["offset"])
        except (KeyError, TypeError, ValueError):
            return answer(path, body, 3100)
        if end - start > timedelta(days=31) or end < start or limit not in STATS_LIMITS or offset < 0:
            return answer(path, body, 3100)
        with fake.lock:
            rows = sorted((dict(r) for r in fake.stats_calls.values()
                           if start.timestamp() <= r["context_start_time"] <= end.timestamp()),
                          key=lambda r: (r["context_start_time"], r["entry_id"]))[offset:offset + limit]
            if not int(body.get("ext_params") or 0):  # ext_params 1: the Contact Center's data (marks)
                for r in rows:
                    for name in ("mark_client", "mark_controller", "conversion"):
                        r.pop(name, None)
            key = secrets.token_urlsafe(12)
            fake.reports[key] = {"rows": rows, "ready_at": now + fake.report_seconds, "fetches": 0,
                                 "completed_at": None}
            fake.requests.append((path, body, 200, None))
        return jsonify({"key": key})  # PDF §3.4.2.2 s.61: the answer is the report's key

    @app.post("/vpbx/stats/calls/result/")
    @app.post("/vpbx/stats/calls/result")
    def stats_result():
        path = "stats/calls/result/"
        body, result = signed()
        if body is None:
            return answer(path, {}, result)
        now = fake.now()
        with fake.lock:
            if fake._over(fake._results_window, now, 50):  # PDF §1.4.2 s.08: 50/s in all, 429
                return rate_limited(path)
            report = fake.reports.get(str(body.get("key")))
            if report and report["completed_at"] is not None and now - report["completed_at"] > REPORT_KEPT:
                del fake.reports[str(body.get("key"))]
                report = None
            if report is None:  # PDF §3.4.2.3 s.62: 'not-found', no report under this key
                fake.requests.append((path, body, 200, 1000))
                return jsonify({"result": 1000, "status": "not-found"})
            report["fetches"] += 1
            if fake.reports_fail and report["fetches"] > 1:  # PDF s.62: a report may end as 'error'
                fake.requests.append((path, body, 200, 1000))
                return jsonify({"result": 1000, "status": "error"})
            if report["fetches"] == 1 or now < report["ready_at"]:  # PDF s.62: poll until 'complete'
                fake.requests.append((path, body, 200, 1000))
                return jsonify({"result": 1000, "status": "request" if report["fetches"] == 1 else "work"})
            report["completed_at"] = report["completed_at"] or now
            days: dict[str, list] = {}
            for row in report["rows"]:  # PDF s.62: one data element per day, each with its `list`
                day = datetime.fromtimestamp(row["context_start_time"], STATS_ZONE).date().isoformat()
                days.setdefault(day, []).append(row)
            fake.requests.append((path, body, 200, 1000))
        return jsonify({"result": 1000, "status": "complete",
                        "data": [{"list": rows, "period": day, "total_calls_count": len(rows)}
                                 for day, rows in days.items()]})

    def rate_limited(path: str):
        fake.requests.append((path, None, 429, None))
        response = jsonify({"name": "Service Unavailable", "message": "Rate limit exceeded.", "code": 0,
                            "status": 429})
        response.status_code = 429
        return response

    @app.post("/vpbx/config/users/request")
    def users():
        path = "config/users/request"
        body, result = signed()
        if body is None:  # reference mango-vpbx.md "Command answers" (PDF s.243): 3105 bad key, 3102 bad sign
            return answer(path, {}, result)
        extension = body.get("extension")  # mango-vpbx examples/users.js: {"extension": N} asks for one user
        listed = [u for u in fake.users
                  if extension is None or str(u.get("telephony", {}).get("extension")) == str(extension)]
        with fake.lock:
            fake.requests.append((path, body, 200, None))
        # C# Mango.Vpbx.Client MangoVpbxEmployeesService: the one command whose success answer carries no
        # `result`, only `users` (general / telephony / groups: Mango.Core.Dto.Vpbx.Responses.VpbxUser)
        return jsonify({"users": listed})

    @app.post("/vpbx/quality/control/question/")
    def question():
        if (busy := cc_over_rate("quality/control/question/")) is not None:
            return busy
        body, result = signed()
        if body is None:
            return answer("quality/control/question/", {}, result)
        found = fake.questions.get(str(body.get("question_id")))
        if found is None:
            return answer("quality/control/question/", body, 3300)
        return answer("quality/control/question/", body, 1000, {"question": {"id": body["question_id"], **found}})

    @app.post("/vpbx/commands/sms")
    def send_sms():
        path = "commands/sms"
        body, result = signed()
        if body is None:
            return answer(path, {}, result)
        text = body.get("text")
        known = {str(u.get("telephony", {}).get("extension")) for u in fake.users}
        # reference mango-vpbx.md "SMS" (PDF §3.2.4): from_extension is required and must be an employee's (the
        # SMS is billed to them); to_number a full number; the text at most 268 Cyrillic / 612 Latin characters;
        # sms_sender one the account has. Anything else is a wrong request (3100), counted toward the block.
        wrong = (not body.get("command_id") or not str(body.get("from_extension") or "").strip()
                 or (known and str(body["from_extension"]) not in known)
                 or not str(body.get("to_number") or "").isdigit() or len(str(body["to_number"])) < 11
                 or not isinstance(text, str) or not text
                 or len(text) > (612 if text.isascii() else 268)
                 or (body.get("sms_sender") and fake.sms_senders and body["sms_sender"] not in fake.sms_senders))
        if wrong:
            return answer(path, body, 3100)
        with fake.lock:
            fake.sms.append(body)
        return answer(path, body, 1000)  # mango-vpbx src/transform.js: accepted; the outcome comes later

    @app.post("/vpbx/queries/recording/post")
    def recording_post():
        body, result = signed()
        if body is None:
            return answer("queries/recording/post", {}, result)
        if body.get("recording_id") not in fake.recordings:
            return answer("queries/recording/post", body, 3320)
        if fake.now() < fake.ready_at.get(body["recording_id"], 0.0):
            # PDF s.34 (reference mango-vpbx.md "Recordings"): right after record/added a fetch may still
            # answer 3320, and it counts toward the 2-minute block
            return answer("queries/recording/post", body, 3320)
        token = secrets.token_hex(8)
        fake.issued[token] = body["recording_id"]
        fake.requests.append(("queries/recording/post", body, 302, 1000))
        return redirect(f"{request.host_url}files/{token}.mp3", code=302)

    @app.get("/files/<token>.mp3")
    def file(token):
        if fake.issued.pop(token, None) is None:  # single use
            abort(404)
        return b"ID3fake-mp3", 200, {"Content-Type": "audio/mpeg"}

    return app
