"""A fake MANGO OFFICE VPBX command API, served over real HTTP in the tests.

It behaves as the vendor's PDF (API v1.9) describes:
- every command is a signed form (`vpbx_api_key`, `sign` = sha256(key + json + salt), `json`);
- the outcome is the JSON `result` (1000 = success); an error's HTTP status is undocumented, so
  it is `error_status` (200 by default, or e.g. 400), and the client must read `result` either way;
- `cc/call/` answers `{"result": 1000, "call": {...}}` for a call in the Contact Center's
  history (`calls`), and 3300 for any other;
- `quality/control/question/` answers `{"result": 1000, "question": {...}}` (`questions`), or 3300;
- `queries/recording/post` answers a 302 to a single-use link (`recordings`), or 3320;
- a bad key is 3105, a bad sign 3102;
- a wrong request (3xxx) is tolerated once per 2 minutes: a second one within 2 minutes gets
  HTTP 401 and blocks every command for 2 minutes; `advance()` moves the fake's clock;
- more than `rate_limit` requests in a second get HTTP 429.
"""
from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from flask import Flask, abort, jsonify, redirect, request

WINDOW = BLOCK = 120.0


@dataclass
class FakeMango:
    api_key: str
    salt: str
    recordings: set = field(default_factory=set)
    calls: dict = field(default_factory=dict)  # entry_id -> the `call` object of cc/call/
    questions: dict = field(default_factory=dict)  # question_id -> the `question` object
    error_status: int = 200
    rate_limit: int = 10
    requests: list = field(default_factory=list)  # (path, json body, HTTP status, result)
    wrong_at: list = field(default_factory=list)  # fake-clock times of wrong requests
    blocked_until: float = 0.0
    blocks: int = 0

    def __post_init__(self):
        self.lock = threading.RLock()
        self.offset = 0.0
        self._window: deque = deque()
        self.issued: dict[str, str] = {}

    def now(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.offset += seconds

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
            if len(fake._window) > fake.rate_limit:
                fake.requests.append((request.path, None, 429, None))
                response = jsonify({"name": "Service Unavailable", "message": "Rate limit exceeded.",
                                    "status": 429})
                response.status_code = 429
                return response
            if fake.blocked_until > now:
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

    @app.post("/vpbx/cc/call/")
    def cc_call():
        body, result = signed()
        if body is None:
            return answer("cc/call/", {}, result)
        call = fake.calls.get(body.get("entry_id"))
        if call is None:
            return answer("cc/call/", body, 3300)
        return answer("cc/call/", body, 1000, {"call": {"entry_id": body["entry_id"], **call}})

    @app.post("/vpbx/quality/control/question/")
    def question():
        body, result = signed()
        if body is None:
            return answer("quality/control/question/", {}, result)
        found = fake.questions.get(str(body.get("question_id")))
        if found is None:
            return answer("quality/control/question/", body, 3300)
        return answer("quality/control/question/", body, 1000, {"question": {"id": body["question_id"], **found}})

    @app.post("/vpbx/queries/recording/post")
    def recording_post():
        body, result = signed()
        if body is None:
            return answer("queries/recording/post", {}, result)
        if body.get("recording_id") not in fake.recordings:
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
