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
- `telephony.externalcall.register` returns the same call for the same PHONE_NUMBER, TYPE, USER_ID,
  LINE_NUMBER and EXTERNAL_CALL_ID within 30 minutes; `finish` closes a call once (a second finish is an
  error: the call is no longer open); `attachRecord` keeps the RECORD_URL.
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
from urllib.parse import parse_qsl

from flask import Flask, jsonify, request

REGISTER_DEDUPE_SECONDS = 30 * 60
BUCKET_SIZE, DRAIN_PER_SECOND = 50, 2.0
MAX_BATCH = 50


@dataclass
class FakeBitrix24:
    client_id: str = "local.app"
    client_secret: str = "app-secret"
    bucket_size: int = BUCKET_SIZE
    drain_per_second: float = DRAIN_PER_SECOND
    users: set = field(default_factory=lambda: {1, 5551, 5552})
    contacts: dict = field(default_factory=dict)  # phone digits -> contact id
    calls: dict = field(default_factory=dict)  # CALL_ID -> the call as registered, finished and recorded
    todos: list = field(default_factory=list)  # crm.activity.todo.add: {"ID", "OWNER_TYPE_ID", "OWNER_ID", ...}
    comments: list = field(default_factory=list)  # timeline comments: {"ENTITY_TYPE", "ENTITY_ID", "COMMENT"}
    fields: dict = field(default_factory=dict)  # (entity type, id) -> {UF_...: value}
    requests: list = field(default_factory=list)  # (monotonic time, method name, status)
    operation_limited: dict = field(default_factory=dict)  # method -> reset at (unix time)
    auth_codes: set = field(default_factory=set)
    access_tokens: dict = field(default_factory=dict)  # token -> expires at (monotonic)
    refresh_tokens: dict = field(default_factory=dict)  # token -> still valid
    refreshes: int = 0
    uninstalled: bool = False
    inner_phones: dict = field(default_factory=dict)  # USER_PHONE_INNER -> user id
    failing: bool = False  # every method answers 500 INTERNAL_SERVER_ERROR (an outage)
    after_effect: object = None  # callable(method), run after a request was applied, before answering
    lose_answers: int = 0  # the next N requests are applied, then answered 504 as if the reply was lost

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

    def finished(self) -> list[dict]:
        return [c for c in self.calls.values() if c.get("finished")]

    def _issue(self) -> dict:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self.access_tokens[access] = time.monotonic() + 3600
        self.refresh_tokens[refresh] = True
        return {"access_token": access, "refresh_token": refresh, "expires_in": 3600,
                "expires": int(time.time()) + 3600, "scope": "telephony,crm", "domain": "portal.bitrix24.ru",
                "status": "L",
                "member_id": "member", "user_id": 1, "client_endpoint": "https://portal.bitrix24.ru/rest/",
                "server_endpoint": "https://oauth.bitrix24.tech/rest/"}

    def _admit(self) -> bool:
        """The leaky bucket: True when the request fits."""
        now = time.monotonic()
        self.level = max(0.0, self.level - (now - self.level_at) * self.drain_per_second)
        self.level_at = now
        if self.level + 1 > self.bucket_size:
            return False
        self.level += 1
        return True


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
                return jsonify(fake._issue())
            if grant == "refresh_token" and fake.refresh_tokens.get(args.get("refresh_token")):
                fake.refresh_tokens[args["refresh_token"]] = False  # single use
                fake.refreshes += 1
                return jsonify(fake._issue())
        return error(400, "invalid_grant", "Invalid authorization code or refresh token")

    def _timing(method: str) -> dict:
        now = time.time()
        return {"start": now, "finish": now, "duration": 0.001, "processing": 0.001,
                "date_start": "", "date_finish": "", "operating": 0.001,
                "operating_reset_at": int(fake.operation_limited.get(method, now))}

    @app.route("/rest/<method>.json", methods=["GET", "POST"])
    def rest(method: str):
        params = {**request.args.to_dict(), **request.form.to_dict()}
        method = method.lower()
        with fake.lock:
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
            return 200, {"result": _command(method, params), "time": _timing(method)}
        except CommandError as exc:
            return exc.status, {"error": exc.code, "error_description": exc.description}

    def _batch(params: dict) -> tuple[int, dict]:
        commands = {m.group(1): value for key, value in params.items() if (m := re.fullmatch(r"cmd\[(.+)\]", key))}
        if len(commands) > MAX_BATCH:
            return 400, {"error": "ERROR_BATCH_LENGTH_EXCEEDED", "error_description": "Max batch length exceeded"}
        results, errors, times = {}, {}, {}
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
                results[key] = _command(name, args)
                times[key] = _timing(name)
            except CommandError as exc:
                errors[key] = {"error": exc.code, "error_description": exc.description}
                if params.get("halt") in ("1", "true"):
                    break
        return 200, {"result": {"result": results, "result_error": errors, "result_total": [], "result_next": [],
                                "result_time": times}, "time": _timing("batch")}

    def _command(method: str, args: dict):
        reset_at = fake.operation_limited.get(method)
        if reset_at and reset_at > time.time():
            raise CommandError("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit.", 429)
        handler = COMMANDS.get(method)
        if handler is None:
            raise CommandError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
        return handler(args)

    def _user(args: dict) -> int:
        try:
            user_id = int(args.get("USER_ID") or 0) or fake.inner_phones.get(args.get("USER_PHONE_INNER"), 0)
        except ValueError:
            user_id = 0
        if user_id not in fake.users:
            raise CommandError("ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set")
        return user_id

    def register(args: dict) -> dict:
        user_id = _user(args)
        phone = re.sub(r"\D", "", args.get("PHONE_NUMBER", ""))
        if not phone or args.get("TYPE") not in ("1", "2", "3", "4", "5"):
            raise CommandError("ERROR_CORE", "PHONE_NUMBER and TYPE are required")
        key = (phone, args["TYPE"], user_id, args.get("LINE_NUMBER", ""), args.get("EXTERNAL_CALL_ID", ""))
        now = time.monotonic()
        for call_id, call in fake.calls.items():
            if call["key"] == key and now - call["registered_at"] < REGISTER_DEDUPE_SECONDS:
                return call["answer"]
        contact = fake.contacts.get(phone)
        if contact is None and args.get("CRM_CREATE") == "1":
            contact = fake.add_contact(phone)
        call_id = f"externalCall.{secrets.token_hex(8)}.{int(time.time())}"
        answer = {"CALL_ID": call_id, "CRM_CREATED_LEAD": None, "CRM_CREATED_ENTITIES": [],
                  "CRM_ENTITY_TYPE": "CONTACT" if contact else "", "CRM_ENTITY_ID": contact or 0}
        fake.calls[call_id] = {"key": key, "registered_at": now, "answer": answer, "params": dict(args),
                               "finished": None, "record_url": None}
        return answer

    def finish(args: dict) -> dict:
        call = fake.calls.get(args.get("CALL_ID", ""))
        _user(args)
        if call is None or call["finished"]:
            raise CommandError("ERROR_CORE", "Call is not found or is already finished")
        vote = int(args.get("VOTE") or 0)
        if not 0 <= vote <= 5:
            raise CommandError("ERROR_CORE", "VOTE must be from 1 to 5")
        call["finished"] = dict(args)
        answer = call["answer"]
        return {"CALL_ID": args["CALL_ID"], "CALL_VOTE": vote or None, "CRM_ACTIVITY_ID": next(fake.ids),
                "CRM_ENTITY_TYPE": answer["CRM_ENTITY_TYPE"], "CRM_ENTITY_ID": answer["CRM_ENTITY_ID"]}

    def attach_record(args: dict) -> dict:
        call = fake.calls.get(args.get("CALL_ID", ""))
        if call is None:
            raise CommandError("ERROR_CORE", "Call is not found")
        call["record_url"] = args.get("RECORD_URL")
        return {"FILE_ID": next(fake.ids)}

    def comment_add(args: dict) -> int:
        entity_type, entity_id = args.get("fields[ENTITY_TYPE]", ""), args.get("fields[ENTITY_ID]", "")
        if entity_type not in ("contact", "lead", "deal", "company") or not entity_id.isdigit():
            raise CommandError("ERROR_ARGUMENT", "Invalid ENTITY_TYPE or ENTITY_ID")
        comment_id = next(fake.ids)
        fake.comments.append({"ID": comment_id, "ENTITY_TYPE": entity_type, "ENTITY_ID": int(entity_id),
                              "COMMENT": args.get("fields[COMMENT]", "")})
        return comment_id

    def comment_list(args: dict) -> list:
        return [c for c in fake.comments if c["ENTITY_TYPE"] == args.get("filter[ENTITY_TYPE]")
                and str(c["ENTITY_ID"]) == args.get("filter[ENTITY_ID]")]

    def statistic(args: dict) -> list:
        wanted = args.get("FILTER[CALL_ID]")
        return [{"CALL_ID": call_id, "CALL_VOTE": int((c["finished"] or {}).get("VOTE") or 0) or None}
                for call_id, c in fake.calls.items() if c["finished"] and (not wanted or call_id == wanted)]

    def todo_add(args: dict) -> dict:
        if not (args.get("ownerTypeId", "").isdigit() and args.get("ownerId", "").isdigit() and args.get("deadline")):
            raise CommandError("ERROR_ARGUMENT", "ownerTypeId, ownerId and deadline are required")
        activity_id = next(fake.ids)
        fake.todos.append({"ID": activity_id, "OWNER_TYPE_ID": int(args["ownerTypeId"]),
                           "OWNER_ID": int(args["ownerId"]), "DEADLINE": args["deadline"],
                           "DESCRIPTION": args.get("description", ""), "RESPONSIBLE_ID": args.get("responsibleId")})
        return {"id": activity_id}

    def activity_list(args: dict) -> list:
        return [t for t in fake.todos if str(t["OWNER_TYPE_ID"]) == args.get("filter[OWNER_TYPE_ID]")
                and str(t["OWNER_ID"]) == args.get("filter[OWNER_ID]")]

    def entity_update(entity_type: str):
        def update(args: dict) -> bool:
            entity_id = args.get("id", "")
            if not entity_id.isdigit():
                raise CommandError("ERROR_CORE", "ID is not defined or invalid")
            values = {m.group(1): v for k, v in args.items() if (m := re.fullmatch(r"fields\[(.+)\]", k))}
            fake.fields.setdefault((entity_type, int(entity_id)), {}).update(values)
            return True
        return update

    COMMANDS = {"telephony.externalcall.register": register, "telephony.externalcall.finish": finish,
                "telephony.externalcall.attachrecord": attach_record,
                "crm.activity.todo.add": todo_add, "crm.activity.list": activity_list,
                "crm.contact.update": entity_update("contact"), "crm.lead.update": entity_update("lead"),
                "crm.company.update": entity_update("company"), "crm.deal.update": entity_update("deal"),
                "crm.timeline.comment.add": comment_add, "crm.timeline.comment.list": comment_list,
                "voximplant.statistic.get": statistic, "app.info": lambda args: {"ID": 1, "CODE": fake.client_id}}
    return app
