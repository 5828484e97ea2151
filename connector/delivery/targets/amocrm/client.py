"""amoCRM API v4 adapter: batched calls, contacts, notes and tag changes.

Every request waits for its turn at the shared rate limiter, carries a bearer
token from the token source, and maps the answer to the errors of connector.delivery.contract.
"""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone
from typing import Callable, Protocol

import requests

from connector.delivery.contract import (DOUBT_MARGIN, AccountBlocked, CallItem, ContactItem, CrmError, CrmUser, Dead, Done,
                           EntityNotFound, NoteItem, Outcome, PermanentError, RateLimited, SendAgain, TagItem, TaskItem,
                           TransientError, UnexpectedAnswer, Unmatched)
from connector.core.follow_ups import ReadTask
from connector.core.metrics import CRM_REQUESTS

log = logging.getLogger(__name__)

SOURCE = "post-call QA connector"
TIMEOUT = (5, 20)  # connect, read: as the vendor's own client
RATE_LIMIT_PAUSE = 1.0  # seconds after a 429 that names no wait
TASK_TYPE_CALL = 1  # amoCRM's built-in "Звонок" task type (TaskModel::TASK_TYPE_ID_CALL in the vendor's PHP SDK)
CALL_STATUS_TALKED, CALL_STATUS_NO_ANSWER = 4, 6
# The entity types a call can be attached to, and that carry notes and tags.
NOTE_ENTITIES = ("leads", "contacts", "companies", "customers")


class TokenSource(Protocol):
    def access_token(self) -> str: ...

    def refresh(self, rejected: str) -> str:
        """A fresh token after `rejected` got a 401; raises AccountBlocked when none can be had."""


class StaticToken:
    """A long-lived token of a private integration: nothing to refresh."""

    def __init__(self, token: str):
        self._token = token

    def access_token(self) -> str:
        return self._token

    def refresh(self, rejected: str) -> str:
        raise AccountBlocked("amoCRM refused the long-lived token (401): issue a new one")


def digits(phone: str) -> str:
    return re.sub(r"\D", "", phone or "")


# amoCRM names entity types in the plural in URLs, but its answers may use either form
# (the official client's EntityFactory accepts both; the events API uses the singular).
PLURAL = {"lead": "leads", "contact": "contacts", "company": "companies", "customer": "customers"}


def _id(row: object, field: str, what: str) -> int:
    """A positive id from one row of an answer, or UnexpectedAnswer naming the field."""
    value = row.get(field) if isinstance(row, dict) else None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise UnexpectedAnswer(f"amoCRM, {what}", field)
    return number


def _moment(value: object) -> datetime | None:
    """A unix time of an answer as an aware datetime; None when there is none."""
    try:
        return datetime.fromtimestamp(int(value), timezone.utc) if value else None
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def plural(entity_type: str | None) -> str:
    kind = (entity_type or "").strip().lower()
    return PLURAL.get(kind, kind)


def _body(response: requests.Response) -> object:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: requests.Response) -> str:
    body = _body(response)
    if isinstance(body, dict):
        text = body.get("detail") or body.get("title") or body.get("hint")
        if not text and isinstance(body.get("errors"), list) and body["errors"]:
            first = body["errors"][0]
            text = first.get("title") or first.get("detail") if isinstance(first, dict) else first
        return str(text or body)[:300]
    if body is not None:
        return str(body)[:300]
    # A block may come from the front proxy as an HTML page ("403 Forbidden / nginx").
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.text or "")).strip()
    return (text or response.reason or "")[:300]


def _error_code(body: object) -> object:
    """The vendor's own error code in a body (e.g. 113: IP not in the account's allow-list)."""
    if not isinstance(body, dict):
        return None
    for key in ("error_code", "code"):
        if body.get(key) not in (None, ""):
            return body[key]
    return _error_code(body.get("response"))


def _validation_errors(body: object) -> dict[int, str]:
    """amoCRM's 400 names the failing items by request_id (= our index in the batch)."""
    entries = body.get("validation-errors") if isinstance(body, dict) else None
    errors = {}
    for entry in entries if isinstance(entries, list) else []:
        try:
            index = int(entry.get("request_id"))
        except (TypeError, ValueError, AttributeError):
            continue
        details = [f"{e.get('path')}: {e.get('detail') or e.get('code')}" for e in entry.get("errors") or []
                   if isinstance(e, dict)]
        errors[index] = "; ".join(details) or "validation failed"
    return errors


def _top_level_errors(body: object) -> list[dict]:
    """The `errors` list amoCRM puts at the top of an answer, on a 400 and on a 200 alike."""
    errors = body.get("errors") if isinstance(body, dict) else None
    return [e for e in errors if isinstance(e, dict)] if isinstance(errors, list) else []


class AmoCrm:
    name = "amocrm"
    max_batch = 50  # the vendor's client recommends at most 50 entities per request
    read_batch = 250  # tasks read back per request: a list's page holds at most 250 (`limit`), as reported

    def __init__(self, base_url: str | Callable[[], str], tokens: TokenSource, wait_turn: Callable[[], None], *,
                 session: requests.Session | None = None):
        # A callable: the address in force at each request (an admin may connect another account meanwhile).
        self._base_url = base_url if callable(base_url) else (lambda fixed=base_url.rstrip("/"): fixed)
        self.tokens = tokens
        self.wait_turn = wait_turn
        self.http = session or requests.Session()

    @property
    def base_url(self) -> str:
        return self._base_url()

    # --- transport -------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        token = self.tokens.access_token()
        for refreshed in (False, True):
            self.wait_turn()
            started = time.monotonic()
            try:
                response = self.http.request(method, self.base_url + path, timeout=TIMEOUT,
                                             headers={"Authorization": f"Bearer {token}"}, **kwargs)
            except (requests.Timeout, requests.ConnectionError) as exc:
                CRM_REQUESTS.labels(self.name, type(exc).__name__).observe(time.monotonic() - started)
                raise TransientError(f"{method} {path}: {type(exc).__name__}") from None
            CRM_REQUESTS.labels(self.name, str(response.status_code)).observe(time.monotonic() - started)
            if response.status_code == 401 and not refreshed:
                token = self.tokens.refresh(token)  # once, serialised by the token source
                continue
            return self._checked(method, path, response)
        raise AssertionError("unreachable")

    def _checked(self, method: str, path: str, response: requests.Response) -> requests.Response:
        status = response.status_code
        where = f"{method} {path}: {status}"
        if status < 300:
            return response
        body = _body(response)
        answer = {"status": status, "body": body}
        if status == 429:
            retry_after = response.headers.get("Retry-After")
            if retry_after is None and isinstance(body, dict):
                retry_after = body.get("retry_after")  # one write-up cites a body field
            try:
                seconds = min(max(float(retry_after), 0.0), 3600.0)
            except (TypeError, ValueError):
                # amoCRM's limit is per second and its 429 names no wait: a second clears it. Repeated
                # violations get the account restricted (403), so every worker holds back meanwhile.
                seconds = RATE_LIMIT_PAUSE
            raise RateLimited(f"{where} rate limited", retry_after=seconds, **answer)
        if status >= 500:
            raise TransientError(f"{where} {_detail(response)}", **answer)
        if status == 401:
            raise AccountBlocked(f"{where} authorization refused after a token refresh", **answer)
        if status in (402, 403):
            code = _error_code(body)
            raise AccountBlocked(f"{where}{f' (code {code})' if code is not None else ''} "
                                 f"account blocked or unpaid: {_detail(response)}", **answer)
        item_errors = _validation_errors(body)
        errors = _top_level_errors(body)
        if not item_errors and errors:
            named = {int(e["request_id"]): str(e.get("title") or e.get("detail") or "refused") for e in errors
                     if str(e.get("request_id", "")).isdigit()}
            if not named:  # "Entity not found", naming no item
                raise EntityNotFound(f"{where} {_detail(response)}", **answer)
            item_errors = named
        raise PermanentError(f"{where} {_detail(response)}", item_errors, **answer)

    @staticmethod
    def _embedded(response: requests.Response, key: str) -> list[dict]:
        if response.status_code == 204 or not response.content:
            return []
        try:
            return (response.json().get("_embedded") or {}).get(key) or []
        except (ValueError, AttributeError):
            raise TransientError(f"unreadable answer: {response.text[:200]!r}") from None

    @staticmethod
    def _by_request_id(rows: list[dict]) -> dict[int, dict]:
        out = {}
        for row in rows:
            try:
                out[int(row.get("request_id"))] = row
            except (TypeError, ValueError):
                continue
        return out

    def _itemwise(self, items: list, send, settle=None) -> list[Outcome]:
        """Send a batch. When a 400 names its culprits, fail only those and retry the rest.

        When it names none, one bad item must not kill the others, and amoCRM may have applied
        some of them anyway (it can add a batch's known calls and still answer 400): `settle`
        looks the items up (index -> result of those already applied), and the rest go one per
        request, so only the guilty one fails.
        """
        try:
            return send(items)
        except PermanentError as exc:
            if exc.item_errors:
                return [Dead(exc.item_errors[n]) if n in exc.item_errors
                        else SendAgain("another item of the batch was refused")
                        for n in range(len(items))]
            if len(items) == 1:
                raise
            log.info("amoCRM refused a batch of %d without naming an item (%s): checking them one by one",
                     len(items), exc.message)
        applied = settle(items) if settle else {}
        results: list = []
        for index, item in enumerate(items):
            if index in applied:
                results.append(applied[index])
                continue
            try:
                results.extend(send([item]))
            except PermanentError as exc:
                results.append(Dead(exc.message))
            except AccountBlocked:
                raise  # the whole target pauses; the batch keeps its "maybe sent" mark for the look-up
            except CrmError as exc:  # the rest wait; a look-up precedes their next attempt
                pause = exc.retry_after if isinstance(exc, TransientError) else None
                results.extend(TransientError(exc.message, retry_after=pause, status=exc.status)
                               for _ in items[index:])
                break
        return results

    @staticmethod
    def _since() -> int:
        return int(time.time()) - DOUBT_MARGIN

    # --- batch operations ------------------------------------------------
    def log_calls(self, items: list[CallItem]) -> list[Outcome]:
        def settle(batch: list[CallItem]) -> dict[int, Done]:
            found = self.find_logged_calls([item.entry_id for item in batch], self._since())
            return {i: found[item.entry_id] for i, item in enumerate(batch) if item.entry_id in found}

        return self._itemwise(items, self._log_calls, settle)

    def _log_calls(self, items: list[CallItem]) -> list[Outcome]:
        body = []
        for i, item in enumerate(items):
            call = {"request_id": str(i), "uniq": item.entry_id, "direction": item.direction,
                    "duration": item.duration, "source": SOURCE, "phone": item.phone,
                    # 4 only for a real conversation (talk_time > 0): entry_result 1 alone is not one.
                    "call_status": CALL_STATUS_TALKED if item.answered else CALL_STATUS_NO_ANSWER}
            if item.started_at:
                call["created_at"] = item.started_at
            if item.score_text:
                call["call_result"] = item.score_text
            if item.recording_link:
                call["link"] = item.recording_link
            if item.responsible_user_id:
                call["responsible_user_id"] = item.responsible_user_id
                call["call_responsible"] = item.responsible_user_id
            body.append(call)
        try:
            response = self.request("POST", "/api/v4/calls", json=body)
        except EntityNotFound as exc:
            if len(items) > 1:
                raise  # which calls were skipped is unknown: `log_calls` settles them
            return [Unmatched(f"no contact or company has this phone ({exc.message})")]
        created = self._by_request_id(self._embedded(response, "calls"))
        errors = self._by_request_id(_top_level_errors(_body(response)))
        results = []
        for i in range(len(items)):
            row = created.get(i)
            if row and row.get("entity_id"):
                results.append(Done(plural(row.get("entity_type")), int(row["entity_id"]), {"call_id": row.get("id")}))
            else:  # amoCRM adds no call when no contact or company has the phone
                reason = (errors.get(i) or {}).get("title") or "no entity matches the phone"
                results.append(Unmatched(str(reason)))
        return results

    def create_contacts(self, items: list[ContactItem]) -> list[Outcome]:
        def settle(batch: list[ContactItem]) -> dict[int, Done]:
            return {i: hit for i, item in enumerate(batch) if (hit := self.find_entity_by_phone(item.phone))}

        return self._itemwise(items, self._create_contacts, settle)

    def _create_contacts(self, items: list[ContactItem]) -> list[Outcome]:
        body = []
        for i, item in enumerate(items):
            contact = {"request_id": str(i), "name": item.name, "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": item.phone, "enum_code": "WORK"}]}]}
            if item.responsible_user_id:
                contact["responsible_user_id"] = item.responsible_user_id
            body.append(contact)
        response = self.request("POST", "/api/v4/contacts", json=body)
        created = self._by_request_id(self._embedded(response, "contacts"))
        return [Done("contacts", _id(created[i], "id", "a created contact")) if i in created
                else Dead("contact not created") for i in range(len(items))]

    def add_notes(self, items: list[NoteItem]) -> list[Outcome]:
        def settle(batch: list[NoteItem]) -> dict[int, Done]:
            return {i: Done(item.entity_type, item.entity_id) for i, item in enumerate(batch)
                    if self.find_note(item, self._since())}

        return self._per_entity_type(items, self._add_notes_of_type, settle)

    def _add_notes_of_type(self, entity_type: str, items: list[NoteItem]) -> list[Outcome]:
        body = [{"request_id": str(i), "entity_id": item.entity_id, "note_type": "common",
                 "params": {"text": item.text}} for i, item in enumerate(items)]
        response = self.request("POST", f"/api/v4/{entity_type}/notes", json=body)
        created = self._by_request_id(self._embedded(response, "notes"))
        if not created and response.status_code < 300:
            # Older answers may omit request_id; they keep request order.
            rows = self._embedded(response, "notes")
            created = dict(enumerate(rows))
        return [Done(entity_type, item.entity_id) if i in created
                else Dead("note not created") for i, item in enumerate(items)]

    def add_tasks(self, items: list[TaskItem]) -> list[Outcome]:
        """`POST /api/v4/tasks`: one "call back" task per item on its entity."""
        body = []
        for i, item in enumerate(items):
            task = {"request_id": str(i), "task_type_id": TASK_TYPE_CALL, "text": item.text,
                    "complete_till": item.complete_till, "entity_type": item.entity_type, "entity_id": item.entity_id}
            if item.responsible_user_id:
                task["responsible_user_id"] = item.responsible_user_id
            body.append(task)
        response = self.request("POST", "/api/v4/tasks", json=body)
        created = self._by_request_id(self._embedded(response, "tasks"))
        return [Done(item.entity_type, item.entity_id, {"task_id": _id(created[i], "id", "a created task")})
                if i in created else Dead("task not created") for i, item in enumerate(items)]

    def find_task(self, item: TaskItem) -> int | None:
        """The id of this task if it is on the entity already (same text and due time), open or completed
        meanwhile; None when it is not."""
        response = self.request("GET", "/api/v4/tasks", params={
            "filter[entity_type]": item.entity_type, "filter[entity_id][]": item.entity_id, "limit": 250})
        return next((_id(t, "id", "a task") for t in self._embedded(response, "tasks")
                     if t.get("text") == item.text and t.get("complete_till") == item.complete_till), None)

    def read_tasks(self, task_ids: list[str]) -> dict[str, ReadTask]:
        """The follow-up tasks, read back: `GET /api/v4/tasks?filter[id][]=..` (TasksFilter::buildFilter of the
        vendor's PHP SDK puts ids in `filter[id]`), 250 a page (`read_batch`: the reported maximum, as `users`
        pages), 204 when none is left; each row has `is_completed`, `result.text` and `complete_till` (Kommo
        reference "tasks-list"; SDK TaskModel::fromArray reads `result.text`). amoCRM names no completion time: a
        completed task's `updated_at` stands for it. A task deleted in amoCRM is simply not in the answer."""
        found: dict[str, ReadTask] = {}
        for start in range(0, len(task_ids), self.read_batch):
            wanted = task_ids[start:start + self.read_batch]
            response = self.request("GET", "/api/v4/tasks", params={"filter[id][]": wanted,
                                                                    "limit": self.read_batch})
            for row in self._embedded(response, "tasks"):
                task_id = str(_id(row, "id", "a task read back"))
                if task_id not in wanted:
                    continue  # a filter the account ignored would list others: never mistaken for ours
                result = row.get("result") if isinstance(row.get("result"), dict) else {}
                completed = bool(row.get("is_completed"))
                found[task_id] = ReadTask(task_id, completed, str(result.get("text") or "") or None,
                                          _moment(row.get("updated_at")) if completed else None,
                                          _moment(row.get("complete_till")))
        return found

    def update_tags(self, items: list[TagItem]) -> list[Outcome]:
        return self._per_entity_type(items, self._update_tags_of_type)

    def _update_tags_of_type(self, entity_type: str, items: list[TagItem]) -> list[Outcome]:
        body = []
        for item in items:
            # tags_to_add / tags_to_delete change only these tags; `_embedded.tags` would
            # replace the entity's whole tag set, so it is never sent.
            row: dict = {"id": item.entity_id}
            if item.add:
                row["tags_to_add"] = [{"name": t} for t in item.add]
            if item.remove:
                row["tags_to_delete"] = [{"name": t} for t in item.remove]
            if item.score_field:
                field_id, value = item.score_field
                row["custom_fields_values"] = [{"field_id": field_id, "values": [{"value": value}]}]
            body.append(row)
        self.request("PATCH", f"/api/v4/{entity_type}", json=body)
        return [Done(entity_type, item.entity_id) for item in items]

    def _per_entity_type(self, items, send, settle=None) -> list[Outcome]:
        """One request per entity type; results come back in the items' order."""
        results: dict[int, Outcome] = {}
        groups: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            groups.setdefault(plural(item.entity_type), []).append(index)
        for entity_type, indexes in groups.items():
            if entity_type not in NOTE_ENTITIES:
                for index in indexes:
                    results[index] = Dead(f"unsupported entity type {entity_type!r}")
                continue
            group = [items[i] for i in indexes]
            results.update(zip(indexes, self._itemwise(group, lambda batch, t=entity_type: send(t, batch), settle)))
        return [results[i] for i in range(len(items))]

    # --- look-ups (for unknown outcomes and LOG_CALLS=false) ---------------
    def find_entity_by_phone(self, phone: str) -> Done | None:
        response = self.request("GET", "/api/v4/contacts", params={"query": digits(phone), "limit": 1})
        rows = self._embedded(response, "contacts")
        return Done("contacts", _id(rows[0], "id", "a contact")) if rows else None

    def _notes_since(self, entity_type: str, note_types: list[str], since: int, entity_id: int | None = None,
                     max_pages: int = 20) -> list[dict]:
        path = f"/api/v4/{entity_type}/{entity_id}/notes" if entity_id else f"/api/v4/{entity_type}/notes"
        notes: list[dict] = []
        for page in range(1, max_pages + 1):
            params = {"filter[note_type][]": note_types, "filter[updated_at][from]": since,
                      "limit": 250, "page": page}
            rows = self._embedded(self.request("GET", path, params=params), "notes")
            notes.extend(rows)
            if len(rows) < 250:
                break
        return notes

    def find_logged_calls(self, entry_ids: list[str], since: int) -> dict[str, Done]:
        """Which of these calls were logged already? A logged call is a call_in/call_out note
        whose params.uniq is our entry_id; one scan per entity type that can hold a call covers
        the whole batch. A section the account does not use (customers switched off) may answer
        402/403: it is skipped, and only when every section refuses is the account blocked."""
        wanted, found, refused = set(entry_ids), {}, []
        for entity_type in NOTE_ENTITIES:
            try:
                notes = self._notes_since(entity_type, ["call_in", "call_out"], since)
            except AccountBlocked as exc:
                if exc.status not in (402, 403):
                    raise
                refused.append(exc)
                continue
            for note in notes:
                uniq = (note.get("params") or {}).get("uniq")
                if uniq in wanted and uniq not in found:
                    found[uniq] = Done(entity_type, _id(note, "entity_id", "a call note"))
            if len(found) == len(wanted):
                break
        if len(refused) == len(NOTE_ENTITIES):
            raise refused[0]
        return found

    def find_note(self, item: NoteItem, since: int) -> bool:
        notes = self._notes_since(item.entity_type, ["common"], since, entity_id=item.entity_id)
        return any((n.get("params") or {}).get("text") == item.text for n in notes)

    def tags_in_place(self, items: list[TagItem]) -> list[bool]:
        """One look-up per entity type: `GET /api/v4/{type}?filter[id][]=...` answers each entity with
        its `_embedded.tags` and `custom_fields_values`."""
        entities: dict[tuple[str, int], dict] = {}
        by_type: dict[str, set[int]] = {}
        for item in items:
            by_type.setdefault(plural(item.entity_type), set()).add(item.entity_id)
        for entity_type, ids in by_type.items():
            if entity_type not in NOTE_ENTITIES:
                continue
            response = self.request("GET", f"/api/v4/{entity_type}",
                                     params={"filter[id][]": sorted(ids), "limit": 250})
            for row in self._embedded(response, entity_type):
                entities[(entity_type, int(row.get("id", 0)))] = row
        return [self._in_place(item, entities.get((plural(item.entity_type), item.entity_id))) for item in items]

    @staticmethod
    def _in_place(item: TagItem, entity: dict | None) -> bool:
        if entity is None:
            return False
        tags = {t.get("name") for t in (entity.get("_embedded") or {}).get("tags") or [] if isinstance(t, dict)}
        if not set(item.add) <= tags or set(item.remove) & tags:
            return False
        if item.score_field:
            field_id, value = item.score_field
            values = [v.get("value") for f in entity.get("custom_fields_values") or []
                      if isinstance(f, dict) and f.get("field_id") == field_id for v in f.get("values") or []]
            return value in values
        return True

    def probe(self) -> None:
        self.request("GET", "/api/v4/account")

    def users(self, max_pages: int = 20) -> list[CrmUser]:
        """The account's users, for the admin to map extensions to. `GET /api/v4/users` pages with `page` and
        `limit` (at most 250) and names the next page in `_links.next` (vendor's PHP SDK EntitiesServices/Users.php,
        BaseEntity getNextPage; developer docs, "Пользователи"); each row has `id`, `name` and `rights.is_active`."""
        users: list[CrmUser] = []
        for page in range(1, max_pages + 1):
            response = self.request("GET", "/api/v4/users", params={"page": page, "limit": 250})
            for row in self._embedded(response, "users"):
                rights = row.get("rights") if isinstance(row.get("rights"), dict) else {}
                users.append(CrmUser(_id(row, "id", "a user"), str(row.get("name") or "").strip(),
                                     rights.get("is_active") is not False))
            body = _body(response) if response.content else None
            if not (isinstance(body, dict) and ((body.get("_links") or {}).get("next"))):
                return users
        raise UnexpectedAnswer("amoCRM, users", f"more than {max_pages} pages")
