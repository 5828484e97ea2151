"""Bitrix24 REST client for a local application: methods and `batch`, OAuth in the `auth` parameter,
errors split into the connector's typed errors at this boundary.

- `expired_token` (401): one serialised refresh, then the request again; a refresh token is single-use.
- `invalid_token`/`NO_AUTH_FOUND` (401) after a refresh, 403, or a refused grant: the application was
  removed or its rights revoked: AccountBlocked (the target pauses until an admin resumes it).
- `QUERY_LIMIT_EXCEEDED` (503): the portal's leaky bucket is full: RateLimited, sent again after a
  drain interval, nothing was applied.
- `OPERATION_TIME_LIMIT` (429): the method's time budget is spent until `operating_reset_at`:
  MethodHeld, carrying that moment. The error answer is not documented to name it, so the moment is the
  one the method's last successful answer named, else ten minutes on (the budget sums ten one-minute
  buckets: a spent method is free again at most that long after).
- other 5xx and no answer: TransientError (the request may have been applied).
- `batch` answers 200 with each command's error in `result_error[key]`: `BatchAnswer` keeps them
  apart, so one bad command fails alone.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlencode

import requests

from connector.core.metrics import CRM_REQUESTS
from connector.delivery.contract import AccountBlocked, CrmUser, PermanentError, RateLimited, TransientError
from connector.delivery.oauth import OAuthTokens

log = logging.getLogger(__name__)

NAME = "bitrix24"
MAX_BATCH = 50  # ERROR_BATCH_LENGTH_EXCEEDED above it
TIMEOUT = (5, 60)  # connect, read: a request may run up to 60 s on the portal
DRAIN_WAIT = 1.0  # seconds after QUERY_LIMIT_EXCEEDED: two requests drain from the bucket meanwhile
BUDGET_WINDOW = 600.0  # seconds: docs limits.md, the method budget is summed over ten 1-minute buckets
MAX_PAGES = 20  # a look-up reads at most this many pages of 50 (newest first) before it gives up


class UnreadableList(TransientError):
    """A list too long to read to its end: what it did not show is not proven absent."""

    def __init__(self, message: str):
        super().__init__(message, maybe_applied=True)


class MethodHeld(TransientError):
    """OPERATION_TIME_LIMIT: this method may not run again before `reset_at` (unix time)."""

    def __init__(self, message: str, reset_at: float, **answer):
        super().__init__(message, retry_after=max(1.0, reset_at - time.time()), maybe_applied=False, **answer)
        self.reset_at = reset_at


@dataclass(frozen=True)
class CommandFailure:
    """One batch command's own error: `code` as Bitrix24 names it (e.g. ERROR_CORE)."""

    code: str
    description: str

    @property
    def transient(self) -> bool:
        return self.code in ("QUERY_LIMIT_EXCEEDED", "OPERATION_TIME_LIMIT", "INTERNAL_SERVER_ERROR")


@dataclass
class BatchAnswer:
    results: dict  # key -> the command's result
    failures: dict  # key -> CommandFailure
    reset_at: dict  # method -> operating_reset_at, for methods near their time budget
    next: dict = None  # key -> the `start` of a list command's next page (docs batch.md: result_next)


def command(method: str, params: dict) -> str:
    """One `cmd[key]` value: `method?urlencoded-params`. A value `$result[key][FIELD]` reads an earlier
    command's answer in the same batch."""
    return f"{method}?{urlencode(params, safe='$[]')}"


def full_name(row: dict) -> str:
    """A portal user's name as Bitrix24 shows it: first and last name, else the e-mail."""
    name = " ".join(str(row.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return name or str(row.get("EMAIL") or "").strip()


class Bitrix24Api:
    def __init__(self, portal_url: str, tokens: OAuthTokens, wait_turn: Callable[[], None] = lambda: None, *,
                 session: requests.Session | None = None, installed_portal: Callable[[], str | None] | None = None):
        self.configured = portal_url
        # The portal that installed the application from the console wins over BITRIX24_PORTAL_URL; it is
        # read at each request, so an install reaches a running worker without a restart.
        self.installed_portal = installed_portal or (lambda: None)
        self.tokens, self.wait_turn = tokens, wait_turn
        self.http = session or requests.Session()
        self.reset_at: dict[str, float] = {}  # method -> operating_reset_at its last answer named

    def call(self, method: str, params: dict | None = None):
        """One method; its `result`."""
        return self._request(method, params or {})["result"]

    def rows(self, method: str, params: dict, *, max_pages: int = MAX_PAGES):
        """A list method's rows, page after page of 50 (`start`, `next`), as far as the caller reads. More
        than `max_pages` pages is UnreadableList: a look-up that stops there has proven nothing."""
        start = 0
        for _ in range(max_pages):
            body = self._request(method, {**params, "start": start})
            yield from body.get("result") or []
            if not body.get("next"):
                return
            start = int(body["next"])
        raise UnreadableList(f"{method}: more than {max_pages * 50} rows to read")

    def users(self) -> list[CrmUser]:
        """The portal's users, for the admin to map extensions to. `user.get` (scope `user`) pages 50 at a time
        with `start` / `next` and answers `ID`, `ACTIVE`, `NAME`, `LAST_NAME`, `EMAIL`; it leaves out bots and
        e-mail, Open Lines and extranet-replica users (docs api-reference/user/user-get.md; the REST guide's
        "user.get")."""
        users = []
        for row in self.rows("user.get", {"sort": "ID", "order": "ASC"}):
            try:
                user_id = int(row.get("ID"))
            except (TypeError, ValueError, AttributeError):
                continue  # a row without an id cannot be mapped to
            users.append(CrmUser(user_id, full_name(row), row.get("ACTIVE") not in (False, "N")))
        return users

    def held_until(self, method: str) -> float:
        """When a method whose budget is spent is free again: as its last answer said, else ten minutes on."""
        known = self.reset_at.get(method.lower(), 0.0)
        return known if known > time.time() else time.time() + BUDGET_WINDOW

    def batch(self, commands: dict[str, str], *, halt: bool = False) -> BatchAnswer:
        """Up to 50 commands (see `command`) in one request; each command's outcome apart."""
        if len(commands) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} commands, got {len(commands)}")
        body = {"halt": int(halt), **{f"cmd[{key}]": value for key, value in commands.items()}}
        answer = self._request("batch", body)["result"]
        failures = {key: CommandFailure(str(err.get("error", "")), str(err.get("error_description", "")))
                    for key, err in (answer.get("result_error") or {}).items()}
        results = answer.get("result") or {}
        if isinstance(results, list):  # PHP serialises an empty map as []
            results = {}
        times = answer.get("result_time")
        reset_at = {}
        for key, timing in (times.items() if isinstance(times, dict) else ()):
            method = commands.get(key, "").partition("?")[0].lower()
            if method and isinstance(timing, dict) and timing.get("operating_reset_at"):
                reset_at[method] = float(timing["operating_reset_at"])
        self.reset_at.update(reset_at)
        nexts = answer.get("result_next")
        return BatchAnswer(results, failures, reset_at, nexts if isinstance(nexts, dict) else {})

    @property
    def base(self) -> str:
        return (self.installed_portal() or self.configured).rstrip("/") + "/rest/"

    def _request(self, method: str, params: dict) -> dict:
        token = self.tokens.access_token()
        base = self.base
        for refreshed in (False, True):
            self.wait_turn()
            started = time.monotonic()
            try:
                response = self.http.post(base + method + ".json", data={**params, "auth": token},
                                          timeout=TIMEOUT)
            except (requests.Timeout, requests.ConnectionError) as exc:
                CRM_REQUESTS.labels(NAME, "none").observe(time.monotonic() - started)
                raise TransientError(f"{method}: no answer ({type(exc).__name__})") from None
            CRM_REQUESTS.labels(NAME, str(response.status_code)).observe(time.monotonic() - started)
            body = self._json(response)
            code = str(body.get("error", "")) if isinstance(body, dict) else ""
            if response.status_code == 401 and not refreshed and code in ("expired_token", "invalid_token",
                                                                             "NO_AUTH_FOUND"):
                token = self.tokens.refresh(token)
                continue
            return self._checked(method, response, body, code)
        raise AssertionError("unreachable")  # the second pass returns or raises

    @staticmethod
    def _json(response: requests.Response):
        try:
            return response.json()
        except ValueError:
            return {}

    def _checked(self, method: str, response: requests.Response, body, code: str) -> dict:
        status = response.status_code
        detail = f"{method}: {status} {code} {body.get('error_description', '') if isinstance(body, dict) else ''}"
        answer = {"status": status, "body": body if isinstance(body, dict) else None}
        timing = (body.get("time") if isinstance(body, dict) else None) or {}
        if status == 200 and isinstance(body, dict) and "result" in body:
            if isinstance(timing, dict) and timing.get("operating_reset_at"):
                self.reset_at[method.lower()] = float(timing["operating_reset_at"])
            return body
        if code == "QUERY_LIMIT_EXCEEDED":
            raise RateLimited(detail.strip(), DRAIN_WAIT, **answer)
        if code == "OPERATION_TIME_LIMIT":
            named = timing.get("operating_reset_at") if isinstance(timing, dict) else None
            raise MethodHeld(detail.strip(), float(named) if named else self.held_until(method), **answer)
        if status in (401, 403):
            raise AccountBlocked(f"Bitrix24 refused the application ({detail.strip()}): reinstall it (settings "
                                 "page) or authorize again with BITRIX24_AUTH_CODE", **answer)
        if status >= 500 or status == 429 or status == 200:
            raise TransientError(detail.strip(), **answer)
        raise PermanentError(detail.strip(), **answer)
