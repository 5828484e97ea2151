"""A fake Bitrix24 portal and its OAuth server, served over real HTTP in the tests.

It behaves as the vendor's REST documentation describes (b24restdocs: telephony-external-call-*,
how-to-call-rest-api/batch and limits, oauth):
- OAuth: `GET /oauth/token/?grant_type=authorization_code|refresh_token&client_id&client_secret&...`
  answers a new access token (1 h) and a new refresh token; a used refresh token or code is refused
  (`invalid_grant`), so tokens are single-use.
- Methods: `POST /rest/<method>.json` with the access token in the `auth` parameter. An expired token is
  401 `expired_token`, a wrong one 401 `invalid_token`, none 401 `NO_AUTH_FOUND`.
- The leaky bucket: 50 requests queued, draining at 2 per second (per portal); over it, 503
  `QUERY_LIMIT_EXCEEDED`. `operation_limited` holds a method with 429 `OPERATION_TIME_LIMIT` until its
  `operating_reset_at`.
- `batch`: `halt` and `cmd[key]=method?urlencoded-params`, at most 50 (`ERROR_BATCH_LENGTH_EXCEEDED`);
  `$result[key][FIELD]` in a later command reads an earlier command's answer; each command's error goes to
  `result_error[key]`, the others still run (halt=0).
- Telephony, as the vendor's module code behaves (`core` = avshatalov48/bitrix24-core-corp,
  modules/voximplant): `register` dedupes only onto a call still open (the active-call table) whose
  CALL_START_DATE lies within 30 minutes; `finish` writes the statistics row (with EXTERNAL_CALL_ID) and
  deletes the open call; `attachRecord` downloads RECORD_URL in the request, only for a finished call,
  and checks the file name's extension; `voximplant.statistic.get` filters, sorts and pages its rows and
  needs the "Call statistics - View" right. Each behaviour names its source beside it.
- `install_application` posts ONAPPINSTALL with a fresh token pair and application_token to the
  application's handler, as the portal does when an admin installs it (docs common/events/on-app-install.md),
  naming the fake's own OAuth server in `server_endpoint` (`oauth_endpoint` names another, e.g. the vendor's);
  `send_event` posts a later event with that token.
- `event.bind` records the handlers the application registers (`bound`); `uninstall_application` removes the
  application and posts ONAPPUNINSTALL only to the handlers bound for it (docs api-reference/events/index.md,
  settings/app-uninstallation.md).
- `uninstalled` answers every method 401 `invalid_token` and refuses every grant: the application was
  removed from the portal.
"""
from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import requests
from flask import Flask, jsonify, request

REGISTER_DEDUPE = timedelta(minutes=30)  # core lib/rest/helper.php registerExternalCall: '>DATE_CREATE' now - 30 min
BUCKET_SIZE, DRAIN_PER_SECOND = 50, 2.0
MAX_BATCH = 50
MEMBER_ID = "a223c6b3710f85df22e9377d6c4f7553"  # docs common/events/on-app-install.md: the example's member_id
PAGE = 50  # docs limits.md, voximplant-statistic-get.md: list methods answer 50 rows a page
RECORD_EXTENSIONS = ("mp3", "flac", "wav")  # core lib/security/recordfile.php: CFile::CheckFile(.., 'audio/', 'mp3,flac,wav')
AUDIO_MAGIC = (b"ID3", b"\xff\xfb", b"\xff\xf3", b"RIFF", b"fLaC")  # CheckFile sniffs the MIME type: audio/ only


@dataclass
class FakeBitrix24:
    client_id: str = "local.app"
    client_secret: str = "app-secret"
    bucket_size: int = BUCKET_SIZE
    drain_per_second: float = DRAIN_PER_SECOND
    users: set = field(default_factory=lambda: {1, 5551, 5552})
    contacts: dict = field(default_factory=dict)  # phone digits -> contact id
    calls: dict = field(default_factory=dict)  # CALL_ID -> the call as registered, finished and recorded
    open_calls: dict = field(default_factory=dict)  # CALL_ID -> dedupe key: the active-call table (CallTable)
    statistics: list = field(default_factory=list)  # rows written by finish (StatisticTable), oldest first
    statistics_right: str = "all"  # "all", "own" (only the app user's calls: getAllowedUserIds) or "none"
    app_user: int = 1  # the user who installed the application: its rights narrow statistics
    downloads: list = field(default_factory=list)  # (url, status or error) of every attachRecord download
    todos: list = field(default_factory=list)  # crm.activity.todo.add: {"ID", "OWNER_TYPE_ID", "OWNER_ID", ...}
    comments: list = field(default_factory=list)  # timeline comments: {"ENTITY_TYPE", "ENTITY_ID", "COMMENT"}
    fields: dict = field(default_factory=dict)  # (entity type, id) -> {UF_...: value}
    requests: list = field(default_factory=list)  # (monotonic time, method name, status)
    operation_limited: dict = field(default_factory=dict)  # method -> reset at (unix time): refused until then
    budget_resets: dict = field(default_factory=dict)  # method -> the operating_reset_at its answers name
    auth_codes: set = field(default_factory=set)
    access_tokens: dict = field(default_factory=dict)  # token -> expires at (monotonic)
    refresh_tokens: dict = field(default_factory=dict)  # token -> still valid
    refreshes: int = 0
    uninstalled: bool = False
    inner_phones: dict = field(default_factory=dict)  # USER_PHONE_INNER -> user id
    failing: bool = False  # every method answers 500 INTERNAL_SERVER_ERROR (an outage)
    after_effect: object = None  # callable(method), run after a request was applied, before answering
    lose_answers: int = 0  # the next N requests are applied, then answered 504 as if the reply was lost
    drop_requests: int = 0  # the next N requests are answered 504 without being applied (a proxy gave up)
    application_token: str = ""  # set by install_application, carried by every later event
    # docs settings/oauth/auto-renewal.md: a token answer names its server's `server_endpoint`; None: this fake's
    # own (<its address>/rest/); a test sets the vendor's to have the connector renew "there" (see tests)
    oauth_endpoint: str | None = None
    bound: list = field(default_factory=list)  # event.bind calls: {"event": upper-case name, "handler": url}
    uninstall_posts: list = field(default_factory=list)  # (handler, status) of every ONAPPUNINSTALL posted
    member_id: str = MEMBER_ID  # of the last install
    portal_url: str = ""  # where the last install said the portal is
    # --- the portal's users (operators mapped to CRM users on the settings page) ---
    profiles: dict = field(default_factory=dict)  # user id (of `users`) -> {"NAME", "LAST_NAME", "EMAIL", "ACTIVE"}

    def __post_init__(self):
        self.lock = threading.RLock()
        self.ids = itertools.count(100)
        self.level, self.level_at = 0.0, time.monotonic()

    def connector_settings(self, url: str) -> dict:
        """The connector's Bitrix24 settings for this portal served at `url` (a fresh code each time)."""
        return {"BITRIX24_PORTAL_URL": url, "BITRIX24_OAUTH_URL": f"{url}/oauth/token/",
                "BITRIX24_CLIENT_ID": self.client_id, "BITRIX24_CLIENT_SECRET": self.client_secret,
                "BITRIX24_AUTH_CODE": self.new_auth_code(), "BITRIX24_USER_MAP": "101:5551",
                "BITRIX24_RATE_LIMIT": 5}

    def new_auth_code(self) -> str:
        code = secrets.token_hex(8)
        self.auth_codes.add(code)
        return code

    def add_contact(self, phone: str) -> int:
        contact_id = next(self.ids)
        self.contacts[re.sub(r"\D", "", phone)] = contact_id
        return contact_id

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens = {t: 0.0 for t in self.access_tokens}

    def complete_todo(self, activity_id: int) -> None:
        """A manager marks the to-do done in the portal: COMPLETED "Y" and LAST_UPDATED now (docs
        crm-activity-fields.md); a to-do keeps no result text."""
        with self.lock:
            todo = next(t for t in self.todos if t["ID"] == activity_id)
            todo.update(COMPLETED="Y", LAST_UPDATED=datetime.now(timezone.utc).replace(microsecond=0).isoformat())

    def delete_todo(self, activity_id: int) -> None:
        """A manager deletes the to-do (crm.activity.delete): lists no longer show it."""
        with self.lock:
            self.todos = [t for t in self.todos if t["ID"] != activity_id]

    def finished(self) -> list[dict]:
        return [c for c in self.calls.values() if c.get("finished")]

    def add_past_call(self, user_id: int) -> None:
        """A call the user took before the connector was installed (another application's)."""
        self.statistics.append({"ID": next(self.ids), "CALL_ID": f"past.{secrets.token_hex(4)}", "EXTERNAL_CALL_ID": None,
                                "PORTAL_USER_ID": user_id, "CALL_VOTE": None, "RECORD_FILE_ID": None,
                                "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": 0, "REST_APP_ID": 2})

    def statistics_of(self, external_call_id: str) -> list[dict]:
        """The calls this entry_id became in telephony statistics: two rows are two calls to a person."""
        return [row for row in self.statistics if row["EXTERNAL_CALL_ID"] == external_call_id]

    def install_application(self, handler_url: str, portal_url: str, *, member_id: str = MEMBER_ID,
                            application_token: str | None = None) -> requests.Response:
        """An admin installs the local application: the portal posts ONAPPINSTALL to its handler."""
        with self.lock:
            self.application_token = application_token or secrets.token_hex(16)  # docs on-app-install.md: per install
            self.bound = []  # docs event-bind.md: a new install has no handlers ("set from scratch")
            issued = self._issue(portal_url)
            self.member_id, self.portal_url = member_id, portal_url
        host = urlsplit(portal_url).netloc
        auth = {**issued, "domain": host, "member_id": member_id, "application_token": self.application_token,
                # docs on-app-install.md: client_endpoint is "the general path for API method calls of the account"
                "client_endpoint": portal_url.rstrip("/") + "/rest/"}
        # issued["server_endpoint"]: docs on-app-install.md, "authorization server address for token renewal":
        # this fake's own OAuth server (served at the same address as the portal), or `oauth_endpoint`
        # docs on-app-install.md: "Data is sent as a POST request": event, data[...], ts, auth[...] as a PHP form;
        # the application's own install handler also gets the OAuth pair (bitrix-tools/crest CRest::installApp).
        form = {"event": "ONAPPINSTALL", "data[VERSION]": "1", "data[ACTIVE]": "Y", "data[INSTALLED]": "Y",
                "data[LANGUAGE_ID]": "ru", "ts": str(int(time.time())),
                **{f"auth[{k}]": str(v) for k, v in auth.items()}}
        return requests.post(handler_url, data=form, timeout=10)

    def send_event(self, handler_url: str, event: str, *, application_token: str | None = None) -> requests.Response:
        """A later event to the application's handler, carrying the install's application_token (docs
        api-reference/events/safe-event-handlers.md) unless the test forges another."""
        token = application_token if application_token is not None else self.application_token
        form = {"event": event, "ts": str(int(time.time())), "auth[domain]": "portal.bitrix24.ru",
                "auth[member_id]": MEMBER_ID, "auth[application_token]": token}
        return requests.post(handler_url, data=form, timeout=10)

    def uninstall_application(self, *, clean: int = 1) -> list:
        """An admin deletes the application: its tokens stop working, its event handlers are deleted, and
        ONAPPUNINSTALL goes to the handlers bound for it, and only to them."""
        with self.lock:
            self.uninstalled = True  # docs on-app-uninstall.md: "all access permissions ... are revoked"
            # docs api-reference/events/index.md: events go to handlers registered with event.bind; docs
            # settings/app-uninstallation.md: a local app's OnAppUninstall handler "if such a handler exists"
            handlers = [b["handler"] for b in self.bound if b["event"] == "ONAPPUNINSTALL"]
            self.bound = []  # docs settings/app-uninstallation.md: the app's event handlers are deleted with it
        portal = (self.portal_url or "https://portal.bitrix24.ru").rstrip("/")
        # docs on-app-uninstall.md: data[LANGUAGE_ID], data[CLEAN], ts, and auth without any token
        form = {"event": "ONAPPUNINSTALL", "data[LANGUAGE_ID]": "ru", "data[CLEAN]": str(clean),
                "ts": str(int(time.time())), "auth[domain]": urlsplit(portal).netloc,
                "auth[server_endpoint]": self.oauth_endpoint or portal + "/rest/",
                "auth[client_endpoint]": portal + "/rest/",
                "auth[member_id]": self.member_id,
                "auth[application_token]": self.application_token}
        answers = []
        for handler in handlers:
            answer = requests.post(handler, data=form, timeout=10)
            self.uninstall_posts.append((handler, answer.status_code))
            answers.append(answer)
        return answers

    def _issue(self, own_url: str = "https://portal.bitrix24.ru") -> dict:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self.access_tokens[access] = time.monotonic() + 3600
        self.refresh_tokens[refresh] = True
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                "expires": int(time.time()) + 3600, "scope": "telephony,crm", "domain": "portal.bitrix24.ru",
                "status": "L",
                "member_id": "member", "user_id": 1, "client_endpoint": "https://portal.bitrix24.ru/rest/",
                # docs settings/oauth/auto-renewal.md: "the address of the REST interface of the authorization
                # server" (https://oauth.bitrix.info/rest/): here this fake's own, or the one a test names
                "server_endpoint": self.oauth_endpoint or own_url.rstrip("/") + "/rest/"}

    def _admit(self) -> bool:
        """The leaky bucket: True when the request fits."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.level_at) * self.drain_per_second)
        self.level_at = now
        if self.level + 1 > self.bucket_size:
            return False
        self.level += 1
        return True


@dataclass
class Paged:
    """A list method's rows: one page of 50 from `start` goes out, with `total` and `next` beside it
    (docs api-reference: list methods, `start` paging)."""

    rows: list
    start: int = 0

    def page(self) -> list:
        return self.rows[self.start:self.start + PAGE]

    @property
    def next(self) -> int | None:
        return self.start + PAGE if self.start + PAGE < len(self.rows) else None


class CommandError(Exception):
    def __init__(self, code: str, description: str, status: int = 400):
        super().__init__(description)
        self.code, self.description, self.status = code, description, status


def create_fake_bitrix24(fake: FakeBitrix24) -> Flask:
    app = Flask("fake_bitrix24")

    def error(status: int, code: str, description: str):
        response = jsonify({"error": code, "error_description": description})
        response.status_code = status
        return response

    @app.get("/oauth/token/")
    def token():
        args = request.args
        with fake.lock:
            if args.get("client_id") != fake.client_id or args.get("client_secret") != fake.client_secret:
                return error(401, "invalid_client", "Invalid client credentials")
            grant = args.get("grant_type")
            if fake.uninstalled:
                return error(400, "invalid_grant", "Application is not installed")
            if grant == "authorization_code" and args.get("code") in fake.auth_codes:
                fake.auth_codes.discard(args["code"])
                return jsonify(fake._issue(request.host_url))
            if grant == "refresh_token" and fake.refresh_tokens.get(args.get("refresh_token")):
                fake.refresh_tokens[args["refresh_token"]] = False  # single use
                fake.refreshes += 1
                return jsonify(fake._issue(request.host_url))
        # docs settings/oauth/error-codes.md: invalid_grant for authorization data it does not accept, such as a
        # refresh token this server did not issue (another region's) or one already used
        return error(400, "invalid_grant", "Invalid authorization code or refresh token")

    def _timing(method: str) -> dict:
        now = time.time()
        return {"start": now, "finish": now, "duration": 0.001, "processing": 0.001,
                "date_start": "", "date_finish": "", "operating": 0.001,
                # docs limits.md: a successful answer names when the method's spent time is reset
                "operating_reset_at": int(fake.operation_limited.get(method) or fake.budget_resets.get(method, now))}

    @app.route("/rest/<method>.json", methods=["GET", "POST"])
    def rest(method: str):
        params = {**request.args.to_dict(), **request.form.to_dict()}
        method = method.lower()
        with fake.lock:
            if fake.drop_requests:
                fake.drop_requests -= 1
                fake.requests.append((time.monotonic(), method, 504))
                return "Gateway Timeout", 504
            status, answer = _rest(method, params)
            fake.requests.append((time.monotonic(), method, status))
            if fake.after_effect is not None:
                fake.after_effect(method)
            if fake.lose_answers and status == 200:
                fake.lose_answers -= 1
                return "Gateway Timeout", 504
        response = jsonify(answer)
        response.status_code = status
        return response

    def _rest(method: str, params: dict) -> tuple[int, dict]:
        token = params.get("auth")
        if not token:
            return 401, {"error": "NO_AUTH_FOUND", "error_description": "Wrong authorization data"}
        if fake.uninstalled or token not in fake.access_tokens:
            return 401, {"error": "invalid_token", "error_description": "The access token provided is invalid."}
        if fake.access_tokens[token] < time.monotonic():
            return 401, {"error": "expired_token", "error_description": "The access token provided has expired."}
        if fake.failing:
            return 500, {"error": "INTERNAL_SERVER_ERROR", "error_description": "Internal server error"}
        if not fake._admit():
            return 503, {"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"}
        if method == "batch":
            return _batch(params)
        try:
            result = _command(method, params)
        except CommandError as exc:  # docs system-errors: an error names no reset time (none is documented)
            return exc.status, {"error": exc.code, "error_description": exc.description}
        if isinstance(result, Paged):
            body = {"result": result.page(), "total": len(result.rows), "time": _timing(method)}
            if result.next is not None:
                body["next"] = result.next
            return 200, body
        return 200, {"result": result, "time": _timing(method)}

    def _batch(params: dict) -> tuple[int, dict]:
        commands = {m.group(1): value for key, value in params.items() if (m := re.fullmatch(r"cmd\[(.+)\]", key))}
        if len(commands) > MAX_BATCH:
            return 400, {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
        results, errors, times, totals, nexts = {}, {}, {}, {}, {}
        for key, command in commands.items():
            name, _, query = command.partition("?")
            name = name.lower()
            if name == "batch":
                errors[key] = {"error": "ERROR_BATCH_METHOD_NOT_ALLOWED",
                               "error_description": "Method is not allowed for batch usage"}
                continue
            args = {}
            for k, v in parse_qsl(query, keep_blank_values=True):
                ref = re.fullmatch(r"\$result\[(.+?)\]\[(.+?)\]", v)
                if ref:
                    v = (results.get(ref.group(1)) or {}).get(ref.group(2), "")
                args[k] = v
            try:
                result = _command(name, args)
                if isinstance(result, Paged):  # docs batch.md: result_total and result_next per command
                    totals[key] = len(result.rows)
                    if result.next is not None:
                        nexts[key] = result.next
                    result = result.page()
                results[key] = result
                times[key] = {k: v for k, v in _timing(name).items() if not k.startswith("operating")}
            except CommandError as exc:
                errors[key] = {"error": exc.code, "error_description": exc.description}
                if params.get("halt") in ("1", "true"):
                    break
        # docs batch.md: empty maps are PHP's empty arrays; result_time shows no operating figures (none documented)
        return 200, {"result": {"result": results, "result_error": errors or [], "result_total": totals or [],
                                "result_next": nexts or [], "result_time": times}, "time": _timing("batch")}

    def _command(method: str, args: dict):
        reset_at = fake.operation_limited.get(method)
        if reset_at and reset_at > time.time():
            raise CommandError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        handler = COMMANDS.get(method)
        if handler is None:
            raise CommandError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        return handler(args)

    # core classes/general/vi_rest.php statisticGet: StatisticTable's fields (RECORD_FILE_ID = CALL_WEBDAV_ID)
    STATISTIC_FIELDS = {"ID", "CALL_ID", "EXTERNAL_CALL_ID", "PORTAL_USER_ID", "PHONE_NUMBER", "CALL_TYPE",
                        "CALL_START_DATE", "CALL_DURATION", "CALL_VOTE", "CRM_ACTIVITY_ID", "CRM_ENTITY_TYPE",
                        "CRM_ENTITY_ID", "RECORD_FILE_ID", "REST_APP_ID"}

    def _user(args: dict) -> int:
        try:
            user_id = int(args.get("USER_ID") or 0) or fake.inner_phones.get(args.get("USER_PHONE_INNER"), 0)
        except ValueError:
            user_id = 0
        if user_id not in fake.users:
            raise CommandError("ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
        return user_id

    def register(args: dict) -> dict:
        user_id = _user(args)  # core classes/general/vi_rest.php registerExternalCall: a real user first
        phone = re.sub(r"\D", "", args.get("PHONE_NUMBER", ""))
        if not phone or args.get("TYPE") not in ("1", "2", "3", "4", "5"):
            raise CommandError("ERROR_CORE", "PHONE_NUMBER and TYPE are required")
        try:  # docs tel/telephony-external-call-register.md: CALL_START_DATE in ISO-8601, else an error
            started = datetime.fromisoformat(args["CALL_START_DATE"]) if args.get("CALL_START_DATE") \
                else datetime.now(timezone.utc)
        except ValueError:
            raise CommandError("ERROR_CORE", "CALL_START_DATE is not a valid date") from None
        if started.tzinfo is None:
            started = started.replace(tzinfo=timezone.utc)
        key = (phone, args["TYPE"], user_id, args.get("LINE_NUMBER", ""), args.get("EXTERNAL_CALL_ID", ""))
        # core lib/rest/helper.php registerExternalCall: the duplicate is looked up in the active-call table
        # only, DATE_CREATE being the CALL_START_DATE sent: an open call of the last 30 minutes
        for call_id, open_key in fake.open_calls.items():
            if open_key == key and fake.calls[call_id]["started"] > datetime.now(timezone.utc) - REGISTER_DEDUPE:
                return fake.calls[call_id]["answer"]
        contact = fake.contacts.get(phone)
        if contact is None and args.get("CRM_CREATE") == "1":
            contact = fake.add_contact(phone)
        call_id = f"externalCall.{secrets.token_hex(8)}.{int(time.time())}"
        answer = {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_CREATED_ENTITIES": [],
                  "CRM_ENTITY_TYPE": "CONTACT" if contact else "", "CRM_ENTITY_ID": contact or 0}
        fake.calls[call_id] = {"key": key, "started": started, "answer": answer, "params": dict(args),
                               "user": user_id, "finished": None, "record_url": None}
        fake.open_calls[call_id] = key
        return answer

    def finish(args: dict) -> dict:
        user_id = _user(args)  # core classes/general/vi_rest.php finishExternalCall: the user is checked first
        call_id = args.get("CALL_ID", "")
        if call_id not in fake.open_calls:  # core lib/rest/helper.php finishExternalCall (the text as in the code)
            raise CommandError("ERROR_CORE", "Call is not found (call should be registered prior to finishing")
        vote = int(args.get("VOTE") or 0)
        if not 0 <= vote <= 5:
            raise CommandError("ERROR_CORE", "VOTE must be from 1 to 5")
        call = fake.calls[call_id]
        call["finished"] = dict(args)
        answer = call["answer"]
        # core lib/rest/helper.php finishExternalCall: StatisticTable::add, then Call::delete (no longer open)
        row = {"ID": next(fake.ids), "CALL_ID": call_id, "EXTERNAL_CALL_ID": call["params"].get("EXTERNAL_CALL_ID"),
               "PORTAL_USER_ID": user_id, "PHONE_NUMBER": call["key"][0], "CALL_TYPE": call["key"][1],
               "CALL_START_DATE": call["started"].isoformat(), "CALL_DURATION": int(args.get("DURATION") or 0),
               "CALL_VOTE": vote or None, "CRM_ACTIVITY_ID": next(fake.ids),
               "CRM_ENTITY_TYPE": answer["CRM_ENTITY_TYPE"], "CRM_ENTITY_ID": answer["CRM_ENTITY_ID"],
               "RECORD_FILE_ID": None, "REST_APP_ID": 1}
        fake.statistics.append(row)
        del fake.open_calls[call_id]
        return {"CALL_ID": call_id, "CALL_VOTE": row["CALL_VOTE"], "CRM_ACTIVITY_ID": row["CRM_ACTIVITY_ID"],
                "CRM_ENTITY_TYPE": answer["CRM_ENTITY_TYPE"], "CRM_ENTITY_ID": answer["CRM_ENTITY_ID"]}

    def attach_record(args: dict) -> dict:
        call_id = args.get("CALL_ID", "")
        # core lib/rest/helper.php attachRecordWithUrl: only a call in statistics, i.e. finished
        row = next((r for r in fake.statistics if r["CALL_ID"] == call_id), None)
        if row is None:
            raise CommandError("ERROR_CORE", "Call is not found in the statistic table. Looks like it is not "
                                             "finished yet.")
        url = args.get("RECORD_URL", "")
        # the file name is FILENAME, else the last part of the URL's path, the query string cut off
        name = args.get("FILENAME") or urlsplit(url).path.rsplit("/", 1)[-1]
        extension = name.rsplit(".", 1)[-1].lower() if "." in name else ""
        try:  # the download runs inside this request (HttpClient: redirects followed, 60 s stream timeout)
            response = requests.get(url, timeout=(30, 60), allow_redirects=True)
        except requests.RequestException as exc:
            fake.downloads.append((url, type(exc).__name__))
            raise CommandError("ERROR_CORE", f"NETWORK: {type(exc).__name__}") from None
        fake.downloads.append((url, response.status_code))
        if response.status_code != 200:
            raise CommandError("ERROR_CORE", f"Server returns HTTP error code {response.status_code}")
        # core lib/security/recordfile.php: CFile::CheckFile with 'audio/' and mp3, flac, wav
        if extension not in RECORD_EXTENSIONS or not response.content.startswith(AUDIO_MAGIC):
            raise CommandError("ERROR_CORE", f"The file type is not valid ({extension or name})")
        file_id = next(fake.ids)
        # core attachFile: CALL_WEBDAV_ID, shown by statistic.get as RECORD_FILE_ID; a new file replaces the old
        row["RECORD_FILE_ID"] = file_id
        call = fake.calls[call_id]
        call["record_url"], call["record_name"], call["record_bytes"] = url, name, len(response.content)
        call["record_attaches"] = call.get("record_attaches", 0) + 1
        return {"FILE_ID": file_id}

    def comment_add(args: dict) -> int:
        entity_type, entity_id = args.get("fields[ENTITY_TYPE]", ""), args.get("fields[ENTITY_ID]", "")
        if entity_type not in ("contact", "lead", "deal", "company") or not entity_id.isdigit():
            raise CommandError("ERROR_ARGUMENT", "Invalid ENTITY_TYPE or ENTITY_ID")
        comment_id = next(fake.ids)
        fake.comments.append({"ID": comment_id, "ENTITY_TYPE": entity_type, "ENTITY_ID": int(entity_id),
                              "COMMENT": args.get("fields[COMMENT]", ""),
                              "CREATED": datetime.now(timezone.utc).isoformat()})
        return comment_id

    def comment_list(args: dict) -> Paged:
        # core crm restservice.php CCrmTimelineCommentRestProxy::innerGetList: only ENTITY_ID and ENTITY_TYPE
        # filter; order by ID, CREATED or AUTHOR_ID, 'DESC' exactly, else ascending; 50 a page
        rows = [c for c in fake.comments if c["ENTITY_TYPE"] == args.get("filter[ENTITY_TYPE]")
                and str(c["ENTITY_ID"]) == args.get("filter[ENTITY_ID]")]
        if args.get("order[ID]") == "DESC" or args.get("order[CREATED]") == "DESC":
            rows.reverse()
        return Paged(rows, int(args.get("start") or 0))

    def statistic(args: dict) -> dict:
        # core classes/general/vi_rest.php statisticGet: no view right is an AccessException (403 ACCESS_DENIED)
        if fake.statistics_right == "none":
            raise CommandError("ACCESS_DENIED", "Access denied!", 403)
        params = {k.upper(): v for k, v in args.items()}  # array_change_key_case(CASE_UPPER)
        rows = list(fake.statistics)
        if fake.statistics_right == "own":  # security/helper.php getAllowedUserIds: rows narrowed silently
            rows = [r for r in rows if r["PORTAL_USER_ID"] == fake.app_user]
        for key, value in params.items():
            m = re.fullmatch(r"FILTER\[=?([A-Z_]+)\]", key)
            if m and m.group(1) in STATISTIC_FIELDS:  # unknown fields are dropped silently (checkStatisticFilter)
                rows = [r for r in rows if str(r.get(m.group(1))) == value]
        sort, order = params.get("SORT"), params.get("ORDER")
        if sort in STATISTIC_FIELDS and order in ("ASC", "DESC"):  # ORDER is case-sensitive in the code
            rows.sort(key=lambda r: (r.get(sort) is None, r.get(sort)), reverse=order == "DESC")
        return Paged(rows, int(params.get("START") or 0))

    def todo_add(args: dict) -> dict:
        if not (args.get("ownerTypeId", "").isdigit() and args.get("ownerId", "").isdigit() and args.get("deadline")):
            raise CommandError("ERROR_ARGUMENT", "ownerTypeId, ownerId and deadline are required")
        activity_id = next(fake.ids)
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        # docs crm-activity-list.md: a row answers ID as a string, COMPLETED "Y"/"N", DEADLINE, CREATED, LAST_UPDATED
        fake.todos.append({"ID": activity_id, "PROVIDER_ID": "CRM_TODO", "OWNER_TYPE_ID": int(args["ownerTypeId"]),
                           "OWNER_ID": int(args["ownerId"]), "DEADLINE": args["deadline"],
                           "DESCRIPTION": args.get("description", ""), "RESPONSIBLE_ID": args.get("responsibleId"),
                           "COMPLETED": "N", "CREATED": now, "LAST_UPDATED": now})
        return {"id": activity_id}

    def activity_list(args: dict) -> Paged:
        # core crm restservice.php CCrmActivityRestProxy::innerGetList: oldest first (START_TIME ASC) unless
        # `order` says otherwise; filters on the activity's fields; 50 a page with `next`
        wanted = {m.group(1): v for k, v in args.items() if (m := re.fullmatch(r"filter\[=?([A-Z_]+)\]", k))}
        among: dict = {}  # docs crm-activity-list.md: the `@` prefix is IN, its value an array
        for k, v in args.items():
            if m := re.fullmatch(r"filter\[@([A-Z_]+)\]\[\d*\]", k):
                among.setdefault(m.group(1), set()).add(v)
        rows = [dict(t, ID=str(t["ID"])) for t in fake.todos if all(str(t.get(f)) == v for f, v in wanted.items())
                and all(str(t.get(f)) in values for f, values in among.items())]
        if args.get("order[ID]", "").upper() == "DESC":
            rows.reverse()
        return Paged(rows, int(args.get("start") or 0))

    def entity_update(entity_type: str):
        def update(args: dict) -> bool:
            entity_id = args.get("id", "")
            if not entity_id.isdigit():
                raise CommandError("ERROR_CORE", "ID is not defined or invalid")
            values = {m.group(1): v for k, v in args.items() if (m := re.fullmatch(r"fields\[(.+)\]", k))}
            fake.fields.setdefault((entity_type, int(entity_id)), {}).update(values)
            return True
        return update

    # docs api-reference/common/events/index.md, events.md: the events an application may bind (those used here)
    BINDABLE = {"ONAPPUNINSTALL", "ONAPPINSTALL", "ONAPPUPDATE", "ONCRMLEADADD", "ONCRMDEALADD"}

    def event_bind(args: dict) -> bool:
        event, handler = str(args.get("event", "")).upper(), str(args.get("handler", ""))
        if event not in BINDABLE:  # docs event-bind.md: 400 ERROR_EVENT_NOT_FOUND "Event not found"
            raise CommandError("ERROR_EVENT_NOT_FOUND", "Event not found")
        if not handler:  # docs event-bind.md: `handler` is required; the refusal's code and text are not given there
            raise CommandError("ERROR_CORE", "Handler is required")
        if {"event": event, "handler": handler} in fake.bound:
            # not in the docs: the refusal public integrations match on (ERROR_CORE "Handler already binded")
            raise CommandError("ERROR_CORE", "Handler already binded")
        fake.bound.append({"event": event, "handler": handler})  # docs event-bind.md: answers result true
        return True

    COMMANDS = {"event.bind": event_bind,
                "telephony.externalcall.register": register, "telephony.externalcall.finish": finish,
                "telephony.externalcall.attachrecord": attach_record,
                "crm.activity.todo.add": todo_add, "crm.activity.list": activity_list,
                "crm.contact.update": entity_update("contact"), "crm.lead.update": entity_update("lead"),
                "crm.company.update": entity_update("company"), "crm.deal.update": entity_update("deal"),
                "crm.timeline.comment.add": comment_add, "crm.timeline.comment.list": comment_list,
                "voximplant.statistic.get": statistic, "app.info": lambda args: {"ID": 1, "CODE": fake.client_id}}

    # --- the portal's users (operators mapped to CRM users on the settings page) ------------------------
    def user_get(args: dict) -> Paged:
        # docs api-reference/user/user-get.md: every user but bots and e-mail / Open Lines / replica users, with
        # ID (a string), ACTIVE (a boolean), NAME, LAST_NAME, EMAIL; `sort`/`order` (by ID here); 50 a page
        # from `start`, with `total` and `next`
        rows = [{"ID": str(uid), "ACTIVE": fake.profiles.get(uid, {}).get("ACTIVE", True),
                 "NAME": fake.profiles.get(uid, {}).get("NAME", ""),
                 "LAST_NAME": fake.profiles.get(uid, {}).get("LAST_NAME", ""),
                 "EMAIL": fake.profiles.get(uid, {}).get("EMAIL", f"user{uid}@example.ru"), "UF_PHONE_INNER": None}
                for uid in sorted(fake.users)]
        if str(args.get("order", "")).upper() == "DESC":
            rows.reverse()
        return Paged(rows, int(args.get("start") or 0))

    COMMANDS["user.get"] = user_get
    # --- end of the users block ----------------------------------------------------------------------
    return app
