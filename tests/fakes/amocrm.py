"""A fake amoCRM API v4, served over real HTTP in the tests.

It behaves as the vendor's material describes: calls match contacts by phone, request_id
is echoed, tags change through tags_to_add/tags_to_delete, notes are listed with filters,
more than 7 requests in any second get 429, expired access tokens get 401, and refresh
tokens rotate (a used one is refused). Its authorization page (`/oauth`) lets a browser press «Разрешить» and
sends it back to the redirect URI with a code and the state, which the authorization_code grant trades once,
for that redirect URI only. Failures can be injected: statuses, slow answers,
an effect applied but its answer lost, and a 403 block.

Awkward answers, switchable per test:
- a call whose phone matches nothing is answered HTTP 400 with a top-level `errors` list
  ("Entity not found", no request_id: amocrm-api-php issue #52). What happens to the known
  calls of such a batch is undocumented: `unknown_caller="reject_all"` adds none of them,
  `"add_known"` adds them and still answers 400;
- `singular_entity_types` answers `entity_type: "contact"` instead of `"contacts"`;
- `unused_sections` (e.g. {"customers"}) answer 402 there, as a switched-off section does;
- `blocked` answers every request 403: True gives the front proxy's HTML page (as reported in
  amocrm-api-php issue #434), a dict gives that JSON body.
"""
from __future__ import annotations

import itertools
import re
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import urlencode

from flask import Flask, jsonify, redirect, request
from markupsafe import escape

ENTITIES = ("leads", "contacts", "companies", "customers")
SINGULAR = {"leads": "lead", "contacts": "contact", "companies": "company", "customers": "customer"}


def digits(value) -> str:
    return re.sub(r"\D", "", str(value or ""))


@dataclass
class Injected:
    """A failure for the next matching request. `action`: an HTTP status, `slow` (answers after
    `seconds`), or `lost` (applies the effect, then answers 504 as if the reply was lost)."""

    action: int | str
    path: str = ""  # prefix of the request path; "" matches any
    method: str = ""
    seconds: float = 0.0
    times: int = 1
    headers: dict = field(default_factory=dict)


@dataclass
class FakeAmo:
    rate_limit: int = 7
    client_id: str = "client-id"
    client_secret: str = "client-secret"
    redirect_uri: str = "https://connector.example/oauth"
    long_lived_token: str | None = None
    contacts: dict = field(default_factory=dict)  # id -> {"name", "phones", "tags", "fields", "responsible"}
    leads: dict = field(default_factory=dict)  # id -> {"contact_id", "tags", "fields"}
    notes: list = field(default_factory=list)
    tasks: list = field(default_factory=list)  # {"id", "task_type_id", "text", "complete_till", "entity_type", ...}
    calls: list = field(default_factory=list)
    requests: list = field(default_factory=list)  # (monotonic time, method, path, status)
    injected: list = field(default_factory=list)
    blocked: bool | dict = False
    unknown_caller: str = "reject_all"  # or "add_known"
    # Calls batches that held an unknown phone, the one place `unknown_caller` is read: a test run against one
    # answer only (its callers all known) checks it met none, so the other answer could not have differed.
    unknown_batches: int = 0
    singular_entity_types: bool = False
    unused_sections: set = field(default_factory=set)
    auth_codes: set = field(default_factory=set)
    access_tokens: dict = field(default_factory=dict)  # token -> valid
    refresh_tokens: dict = field(default_factory=dict)  # token -> valid
    refreshes: int = 0
    tag_adds: dict = field(default_factory=dict)  # (entity_type, id, tag) -> how many times it was asked for
    after_effect: object = None  # callable(method, path), run after a request was applied, before answering
    # --- the account's users (operators mapped to CRM users on the settings page) ---
    people: dict = field(default_factory=dict)  # id -> {"name", "email", "is_active"}: GET /api/v4/users lists them

    def __post_init__(self):
        self.lock = threading.RLock()
        self.ids = itertools.count(1000)
        self._window: deque = deque()

    # --- set-up helpers for tests -----------------------------------------------------
    def add_contact(self, phone: str, name: str = "Клиент", *, open_lead: bool = False) -> int:
        with self.lock:
            contact_id = next(self.ids)
            self.contacts[contact_id] = {"name": name, "phones": [digits(phone)], "tags": [], "fields": {},
                                         "responsible": None}
            if open_lead:
                self.leads[next(self.ids)] = {"contact_id": contact_id, "tags": [], "fields": {}}
            return contact_id

    def new_auth_code(self) -> str:
        code = secrets.token_hex(8)
        self.auth_codes.add(code)
        return code

    def expire_access_tokens(self) -> None:
        with self.lock:
            self.access_tokens = {t: False for t in self.access_tokens}

    def inject(self, action, path: str = "", method: str = "", seconds: float = 0.0, times: int = 1,
               headers: dict | None = None) -> None:
        with self.lock:
            self.injected.append(Injected(action, path, method, seconds, times, headers or {}))

    def complete_task(self, task_id: int, result_text: str) -> None:
        """A manager closes the task in amoCRM with a result, as its card's «Выполнить» does: is_completed true,
        `result.text` set, `updated_at` now (Kommo reference "tasks-list"; SDK TaskModel::toApi sends result.text)."""
        with self.lock:
            task = next(t for t in self.tasks if t["id"] == task_id)
            task.update(is_completed=True, result={"text": result_text}, updated_at=int(time.time()))

    def delete_task(self, task_id: int) -> None:
        """A manager deletes the task: the list no longer has it (it is simply absent from the answer)."""
        with self.lock:
            self.tasks = [t for t in self.tasks if t["id"] != task_id]

    def entity(self, entity_type: str, entity_id: int) -> dict | None:
        return {"contacts": self.contacts, "leads": self.leads}.get(entity_type, {}).get(entity_id)

    def calls_by_uniq(self, uniq: str) -> list:
        return [c for c in self.calls if c["uniq"] == uniq]

    def max_requests_in_any_second(self) -> int:
        times = sorted(t for t, m, p, s in self.requests if p.startswith("/api/") or p.startswith("/oauth"))
        best, start = 0, 0
        for end in range(len(times)):
            while times[end] - times[start] >= 1.0:
                start += 1
            best = max(best, end - start + 1)
        return best

    # --- internals -------------------------------------------------------------------
    def _over_limit(self, now: float) -> bool:
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        self._window.append(now)
        return len(self._window) > self.rate_limit

    def _take_injection(self, method: str, path: str) -> Injected | None:
        for item in self.injected:
            if path.startswith(item.path) and (not item.method or item.method == method):
                item.times -= 1
                if item.times <= 0:
                    self.injected.remove(item)
                return item
        return None

    def _token_ok(self, header: str) -> bool:
        token = header.removeprefix("Bearer ").strip()
        if self.long_lived_token and secrets.compare_digest(token, self.long_lived_token):
            return True
        return self.access_tokens.get(token, False)

    def _issue_tokens(self) -> dict:
        access, refresh = secrets.token_hex(16), secrets.token_hex(16)
        self.access_tokens[access] = True
        self.refresh_tokens[refresh] = True
        return {"token_type": "Bearer", "expires_in": 86400, "access_token": access, "refresh_token": refresh}

    def _match(self, phone: str) -> tuple[str, int] | None:
        wanted = digits(phone)
        contact_id = next((cid for cid, contact in self.contacts.items() if wanted and wanted in contact["phones"]),
                          None) if len(self.contacts) < 1000 else self._contact_by_phone(wanted)
        if contact_id is None:
            return None
        open_leads = [lid for lid, lead in self.leads.items() if lead["contact_id"] == contact_id]
        if len(open_leads) == 1:
            return "leads", open_leads[0]
        return "contacts", contact_id

    def _contact_by_phone(self, wanted: str) -> int | None:
        """The same answer through an index, for benchmarks with a hundred thousand contacts."""
        if getattr(self, "_phones_indexed", 0) != len(self.contacts):
            self._phone_index = {p: cid for cid, c in reversed(list(self.contacts.items())) for p in c["phones"]}
            self._phones_indexed = len(self.contacts)
        return self._phone_index.get(wanted)


def create_fake_app(fake: FakeAmo) -> Flask:
    app = Flask("fake_amocrm")

    def error(status: int, title: str, **extra):
        response = jsonify({"title": title, "status": status, "detail": title, **extra})
        response.status_code = status
        return response

    @app.before_request
    def gatekeeper():
        now = time.monotonic()
        # amoCRM counts requests as they arrive: so do the limit and the request log (`record`), not when
        # the handler is done, which would bunch a quick request behind a slow one.
        request.environ["fake.arrived"] = now
        with fake.lock:
            if fake._over_limit(now):
                return error(429, "Too Many Requests")
            if fake.blocked is True:
                return ("<html><head><title>403 Forbidden</title></head><body><center><h1>403 Forbidden</h1>"
                        "</center><hr><center>nginx</center></body></html>", 403, {"Content-Type": "text/html"})
            if fake.blocked:
                response = jsonify(fake.blocked)
                response.status_code = 403
                return response
            section = request.path.removeprefix("/api/v4/").split("/", 1)[0]
            if section in fake.unused_sections:
                return error(402, "Payment Required")
            injected = fake._take_injection(request.method, request.path)
        request.environ["fake.injected"] = injected
        if injected and injected.action == "slow":
            time.sleep(injected.seconds)
        elif injected and isinstance(injected.action, int):
            response = error(injected.action, "Injected failure")
            response.headers.update(injected.headers)
            return response
        if request.path.startswith("/api/") and not fake._token_ok(request.headers.get("Authorization", "")):
            return error(401, "Unauthorized")
        return None

    @app.after_request
    def record(response):
        if fake.after_effect is not None:
            fake.after_effect(request.method, request.path)
        injected = request.environ.get("fake.injected")
        if injected and injected.action == "lost":
            response = error(504, "Gateway Timeout")  # the effect happened; the answer did not arrive
        with fake.lock:
            fake.requests.append((request.environ.get("fake.arrived", time.monotonic()), request.method, request.path,
                                  response.status_code))
        return response

    @app.get("/oauth")
    def authorization_page():
        # amoCRM's authorization page, opened with client_id, state and mode (popup | post_message): the user
        # picks the account and presses «Разрешить» (https://www.amocrm.ru/developers/content/oauth/step-by-step).
        # What it shows for an unknown client_id is not documented: here a 404 page (assumed).
        if request.args.get("client_id") != fake.client_id:
            return "<html><body><h1>Интеграция не найдена</h1></body></html>", 404
        state = escape(request.args.get("state", ""))
        return (f"<html><head><title>Предоставить доступ</title></head><body><h1>Предоставить доступ</h1>"
                f"<form method='post' action='/oauth/allow'><input type='hidden' name='state' value='{state}'>"
                f"<button type='submit' id='allow'>Разрешить</button></form></body></html>")

    @app.post("/oauth/allow")
    def allow():
        # After «Разрешить» amoCRM redirects to the integration's redirect URI with code, state (as sent),
        # referer (the account's host) and client_id (https://www.amocrm.ru/developers/content/oauth/step-by-step).
        code = fake.new_auth_code()
        query = urlencode({"code": code, "state": request.form.get("state", ""), "referer": request.host,
                           "client_id": fake.client_id})
        return redirect(f"{fake.redirect_uri}?{query}", code=302)

    @app.post("/oauth2/access_token")
    def oauth():
        # The token endpoint takes a JSON body with client_id, client_secret, grant_type, redirect_uri and code
        # or refresh_token, and answers token_type, expires_in, access_token, refresh_token
        # (https://developers.kommo.com/reference/get-token); wrong keys are refused (401 assumed: undocumented).
        body = request.get_json(silent=True) or {}
        if (body.get("client_id"), body.get("client_secret")) != (fake.client_id, fake.client_secret):
            return error(401, "invalid client")
        with fake.lock:
            # authorization_code: a code works once, and only with the redirect URI the integration was
            # registered with (https://developers.kommo.com/reference/get-token, redirect_uri).
            if body.get("grant_type") == "authorization_code" and body.get("code") in fake.auth_codes \
                    and body.get("redirect_uri") == fake.redirect_uri:
                fake.auth_codes.discard(body["code"])
                return jsonify(fake._issue_tokens())
            if body.get("grant_type") == "refresh_token" and fake.refresh_tokens.get(body.get("refresh_token")):
                fake.refresh_tokens[body["refresh_token"]] = False  # rotation: the old one is spent
                fake.refreshes += 1
                return jsonify(fake._issue_tokens())
        return error(400, "invalid_grant")

    @app.get("/api/v4/account")
    def account():
        return jsonify({"id": 1, "name": "fake", "subdomain": "fake"})

    # --- the account's users (operators mapped to CRM users on the settings page) ---------------------
    @app.get("/api/v4/users")
    def list_users():
        """The account's users, `page` by `page` (SDK EntitiesServices/Users.php; developer docs "Пользователи")."""
        try:
            page, limit = int(request.args.get("page", 1)), int(request.args.get("limit", 50))
        except ValueError:
            return error(400, "Bad Request")
        limit = max(1, min(limit, 250))  # docs: `limit` at most 250 a page (50 when not given)
        with fake.lock:
            rows = [{"id": uid, "name": p.get("name", ""), "email": p.get("email", ""), "lang": "ru",
                     # docs: `rights` carries is_active / is_admin / is_free for each user
                     "rights": {"is_active": p.get("is_active", True), "is_admin": False, "is_free": False},
                     "_links": {"self": {"href": f"{request.host_url}api/v4/users/{uid}"}}}
                    for uid, p in sorted(fake.people.items())]
        chunk = rows[(page - 1) * limit:page * limit]
        if not chunk:
            return "", 204  # amoCRM answers an empty list (a page past the end) 204 No Content, no body
        links = {"self": {"href": f"{request.base_url}?page={page}&limit={limit}"}}
        if page * limit < len(rows):  # SDK BaseEntity: the next page is read while `_links.next` is present
            links["next"] = {"href": f"{request.base_url}?page={page + 1}&limit={limit}"}
        return jsonify({"_total_items": len(rows), "_page": page, "_page_count": -(-len(rows) // limit),
                        "_links": links, "_embedded": {"users": chunk}})
    # --- end of the users block ---------------------------------------------------------------------

    @app.post("/api/v4/calls")
    def add_calls():
        body = request.get_json(silent=True)
        if not isinstance(body, list):
            return error(400, "Bad Request")
        created, unknown = [], False
        with fake.lock:
            for index, call in enumerate(body):
                request_id = call.get("request_id", str(index))
                missing = [f for f in ("direction", "duration", "source", "phone") if f not in call]
                if missing:
                    return error(400, "Bad Request", **{"validation-errors": [
                        {"request_id": request_id, "errors": [{"code": "NotBlank", "path": m,
                                                                "detail": "This value should not be blank."}
                                                               for m in missing]}]})
            targets = [fake._match(call["phone"]) for call in body]
            unknown = None in targets
            fake.unknown_batches += unknown
            for index, (call, target) in enumerate(zip(body, targets)):
                request_id = call.get("request_id", str(index))
                if target is None or (unknown and fake.unknown_caller == "reject_all"):
                    continue
                entity_type, entity_id = target
                note_id = next(fake.ids)
                note_type = "call_in" if call["direction"] == "inbound" else "call_out"
                params = {k: call.get(k) for k in ("uniq", "duration", "source", "link", "phone", "call_result",
                                                   "call_status")}
                fake.notes.append({"id": note_id, "entity_type": entity_type, "entity_id": entity_id,
                                   "note_type": note_type, "params": params, "updated_at": int(time.time()),
                                   "responsible_user_id": call.get("responsible_user_id")})
                fake.calls.append({**call, "entity_type": entity_type, "entity_id": entity_id})
                shown_type = SINGULAR[entity_type] if fake.singular_entity_types else entity_type
                created.append({"id": note_id, "entity_id": entity_id, "entity_type": shown_type,
                                "request_id": request_id})
        if unknown:
            response = jsonify({"_total_items": 0, "errors": [{"title": "Entity not found"}]})
            response.status_code = 400
            return response
        return jsonify({"_total_items": len(created), "_embedded": {"calls": created}})

    @app.get("/api/v4/contacts")
    def find_contacts():
        if request.args.getlist("filter[id][]"):
            return list_entities("contacts")
        query = digits(request.args.get("query"))
        with fake.lock:
            found = [{"id": cid, "name": c["name"]} for cid, c in fake.contacts.items()
                     if query and any(query in p for p in c["phones"])]
        if not found:
            return "", 204
        return jsonify({"_embedded": {"contacts": found[: int(request.args.get("limit", 50))]}})

    @app.post("/api/v4/contacts")
    def add_contacts():
        body = request.get_json(silent=True)
        if not isinstance(body, list):
            return error(400, "Bad Request")
        created = []
        with fake.lock:
            for index, contact in enumerate(body):
                phones = [digits(v["value"]) for f in contact.get("custom_fields_values") or []
                          if f.get("field_code") == "PHONE" for v in f.get("values") or []]
                contact_id = next(fake.ids)
                fake.contacts[contact_id] = {"name": contact.get("name", ""), "phones": phones, "tags": [],
                                             "fields": {}, "responsible": contact.get("responsible_user_id")}
                created.append({"id": contact_id, "request_id": contact.get("request_id", str(index))})
        return jsonify({"_embedded": {"contacts": created}})

    @app.get("/api/v4/<entity_type>")
    def list_entities(entity_type):
        """Leads or contacts by id (`filter[id][]`), each with `_embedded.tags` and its custom fields."""
        if entity_type not in ("leads", "contacts"):
            return error(400, "Bad Request")
        wanted = {int(i) for i in request.args.getlist("filter[id][]") if i.isdigit()}
        with fake.lock:
            rows = [{"id": eid, "_embedded": {"tags": [{"name": t} for t in entity["tags"]]},
                     "custom_fields_values": [{"field_id": f, "values": [{"value": v}]}
                                              for f, v in entity["fields"].items()] or None}
                    for eid, entity in {"leads": fake.leads, "contacts": fake.contacts}[entity_type].items()
                    if eid in wanted]
        if not rows:
            return "", 204
        return jsonify({"_embedded": {entity_type: rows}})

    @app.patch("/api/v4/<entity_type>")
    def patch_entities(entity_type):
        body = request.get_json(silent=True)
        if entity_type not in ENTITIES or not isinstance(body, list):
            return error(400, "Bad Request")
        with fake.lock:
            for index, row in enumerate(body):
                if "_embedded" in row:
                    return error(400, "the connector must not replace the whole tag set")
                entity = fake.entity(entity_type, row.get("id"))
                if entity is None:
                    return error(400, "Bad Request", **{"validation-errors": [
                        {"request_id": str(index), "errors": [{"code": "NotFound", "path": "id",
                                                               "detail": "Entity not found"}]}]})
            updated = []
            for row in body:
                entity = fake.entity(entity_type, row["id"])
                for tag in row.get("tags_to_add") or []:
                    counter_key = (entity_type, row["id"], tag["name"])
                    fake.tag_adds[counter_key] = fake.tag_adds.get(counter_key, 0) + 1
                    if tag["name"] not in entity["tags"]:
                        entity["tags"].append(tag["name"])
                for tag in row.get("tags_to_delete") or []:
                    if tag["name"] in entity["tags"]:
                        entity["tags"].remove(tag["name"])
                for cf in row.get("custom_fields_values") or []:
                    entity["fields"][cf["field_id"]] = cf["values"][0]["value"]
                updated.append({"id": row["id"]})
        return jsonify({"_embedded": {entity_type: updated}})

    @app.post("/api/v4/tasks")
    def add_tasks():
        """As amoCRM: an array of tasks; text and complete_till are required, the entity must exist; the
        answer names each created task by its request_id."""
        body = request.get_json(silent=True)
        if not isinstance(body, list) or not body:
            return error(400, "Bad Request")
        problems = []
        for index, task in enumerate(body):
            missing = [f for f in ("text", "complete_till") if not task.get(f)]
            if missing or (task.get("entity_id") and fake.entity(task.get("entity_type"), task["entity_id"]) is None):
                problems.append({"request_id": task.get("request_id", str(index)), "errors": [
                    {"code": "NotSupportedChoice" if not missing else "FieldMissing",
                     "path": missing[0] if missing else "entity_id", "detail": "This value is not valid"}]})
        if problems:
            return error(400, "Bad Request", **{"validation-errors": problems})
        created = []
        with fake.lock:
            for index, task in enumerate(body):
                task_id = next(fake.ids)
                # Kommo reference "tasks-list": a task answers is_completed, result {"text"} and its times as unix
                fake.tasks.append({"id": task_id, "task_type_id": task.get("task_type_id", 1), "text": task["text"],
                                   "complete_till": task["complete_till"], "entity_type": task.get("entity_type"),
                                   "entity_id": task.get("entity_id"), "is_completed": False, "result": None,
                                   "responsible_user_id": task.get("responsible_user_id"),
                                   "created_at": int(time.time()), "updated_at": int(time.time())})
                created.append({"id": task_id, "request_id": task.get("request_id", str(index))})
        return jsonify({"_embedded": {"tasks": created}})

    @app.get("/api/v4/tasks")
    def list_tasks():
        entity_type = request.args.get("filter[entity_type]")
        ids = {int(i) for i in request.args.getlist("filter[entity_id][]") + request.args.getlist("filter[entity_id]")}
        # SDK TasksFilter::buildFilter: the tasks' own ids go in filter[id] (an array)
        task_ids = {int(i) for i in request.args.getlist("filter[id][]") + request.args.getlist("filter[id]")}
        limit = int(request.args.get("limit", 50))
        if limit > 250:  # a page of 250 is the reported maximum (unverified: the SDK's PagesFilterTrait defaults to 50)
            return error(400, "Bad Request")
        with fake.lock:
            rows = [dict(t) for t in fake.tasks if (not entity_type or t["entity_type"] == entity_type)
                    and (not ids or t["entity_id"] in ids) and (not task_ids or t["id"] in task_ids)]
        if not rows:
            return "", 204  # amoCRM answers an empty list with 204 No Content
        return jsonify({"_embedded": {"tasks": rows[:limit]}})

    @app.post("/api/v4/<entity_type>/notes")
    def add_notes(entity_type):
        body = request.get_json(silent=True)
        if entity_type not in ENTITIES or not isinstance(body, list):
            return error(400, "Bad Request")
        created = []
        with fake.lock:
            for index, note in enumerate(body):
                if fake.entity(entity_type, note.get("entity_id")) is None:
                    return error(400, "Bad Request", **{"validation-errors": [
                        {"request_id": note.get("request_id", str(index)),
                         "errors": [{"code": "NotFound", "path": "entity_id", "detail": "Entity not found"}]}]})
            for index, note in enumerate(body):
                note_id = next(fake.ids)
                fake.notes.append({"id": note_id, "entity_type": entity_type, "entity_id": note["entity_id"],
                                   "note_type": note.get("note_type"), "params": note.get("params") or {},
                                   "updated_at": int(time.time())})
                created.append({"id": note_id, "entity_id": note["entity_id"],
                                "request_id": note.get("request_id", str(index))})
        return jsonify({"_embedded": {"notes": created}})

    def _list_notes(entity_type, entity_id=None):
        types = request.args.getlist("filter[note_type][]") or request.args.getlist("filter[note_type]")
        since = int(request.args.get("filter[updated_at][from]", 0))
        limit, page = int(request.args.get("limit", 50)), int(request.args.get("page", 1))
        with fake.lock:
            rows = [n for n in fake.notes if n["entity_type"] == entity_type
                    and (entity_id is None or n["entity_id"] == entity_id)
                    and (not types or n["note_type"] in types) and n["updated_at"] >= since]
        rows = rows[(page - 1) * limit: page * limit]
        if not rows:
            return "", 204
        return jsonify({"_embedded": {"notes": rows}})

    @app.get("/api/v4/<entity_type>/notes")
    def list_notes(entity_type):
        return _list_notes(entity_type)

    @app.get("/api/v4/<entity_type>/<int:entity_id>/notes")
    def list_entity_notes(entity_type, entity_id):
        return _list_notes(entity_type, entity_id)

    return app
