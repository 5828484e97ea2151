"""The JSON API: generic score intake, calls, runtime settings, health."""
from __future__ import annotations

import hmac
import math
from datetime import datetime, timezone
from functools import wraps

from flask import Blueprint, Response, current_app, g, request, url_for
from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, validate
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connector.console import status
from connector.console.queries import CALL_QUERY_SCHEMA, REPORT_QUERY_SCHEMA
from connector.core import throttle
from connector.core.calls import CallFilter, call_id_problem, call_json, find_calls, get_visible_call
from connector.core.metrics import CALLBACKS, queue_metrics
from connector.inbound.ingest import ingest_api_score
from connector.inbound.quality import marks_json
from connector.core.runtime_settings import (audit_trail, current_policies, current_policy, current_user_map,
                                       delete_line_override, line_override, update_line_override, update_policy,
                                       update_user_map, user_map_scope)
from connector.console.reports import By, ReportFilter
from connector.console.reviews import add_review
from connector.core import time_zone
from connector.core.models import Role
from connector.core.notifications import mark_read, notification_page, unread_count
from connector.core.policy import PolicyConflict, PolicyError, REFUSED, SCORE_LIMIT
from connector.core.users import BOOTSTRAP_ADMIN, Principal, principal_for_token, read_then_write
from connector.delivery.operator_map import MAPPED_TARGETS
from connector.core.validation import (INT32_MAX, AwareUtcDateTime, StrictInteger, first_error, parse_json,
                                  line_problem, storable_lines, storable_text, text_problem)
from web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")
health_bp = Blueprint("health", __name__)

MAX_PER_PAGE = 100


def services():
    return current_app.extensions["connector"]


def _principal_from_request() -> Principal:
    """Bearer auth: the bootstrap ADMIN_TOKEN, or a user's personal token (`connector users token`)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "missing bearer token")
    # Wrong tokens are throttled per client address (connector.core.throttle): while its bucket holds, every
    # token from that address is refused unchecked, so guessing goes no faster than the delays allow.
    db = services().db
    keys = throttle.token_keys(throttle.client_address(request.remote_addr))
    wait = throttle.retry_after(db, keys)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, f"too many wrong tokens from this address: try again in {seconds} s",
                       headers={"Retry-After": str(seconds)})
    expected = services().config.ADMIN_TOKEN
    if expected and hmac.compare_digest(given.encode(), expected.encode()):
        return BOOTSTRAP_ADMIN
    if len(given) <= 128 and text_problem(given) is None:
        principal = read_then_write(db, lambda session: principal_for_token(session, given))
        if principal is not None:
            return principal
    throttle.record_failure(db, keys)
    raise ApiError(401, "unknown token")


def require_token(*roles: Role):
    """Any known token, or only these roles (403 for the others). The caller is `g.principal`."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.principal = _principal_from_request()
            if roles and g.principal.role not in roles:
                raise ApiError(403, f"{g.principal.role} may not do this")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def _require_json_type() -> None:
    if request.mimetype != "application/json":
        raise ApiError(415, f"expected application/json, got {request.mimetype or 'no content type'}")


def _json_body() -> object:
    _require_json_type()
    try:
        return parse_json(request.get_data(as_text=True), json_integers=True)
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


# --- generic score API (Standard Webhooks) ---------------------------------

class ScoreSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    call_id = fields.String(required=True, validate=[validate.Length(min=1, max=128), storable_text])
    score = StrictInteger(required=True, validate=validate.Range(0, SCORE_LIMIT - 1))  # any scale's range
    source = fields.String(load_default="customer", validate=validate.OneOf(["customer", "supervisor"]))
    rated_at = AwareUtcDateTime(load_default=None)
    comment = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=2000), storable_lines])
    operator = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=32), storable_text])
    phone = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=32), storable_text])


SCORE_SCHEMA = ScoreSchema()  # built once: schemas are reusable, building them is not free


@bp.post("/scores")
def post_score():
    secret = services().config.SCORES_WEBHOOK_SECRET
    _require_json_type()
    if not secret:
        raise ApiError(403, "score API disabled: SCORES_WEBHOOK_SECRET is not set")
    body = request.get_data(as_text=True)
    headers = {k: v for k, v in request.headers.items() if k.lower().startswith("webhook-")}
    if not all(headers.get(h) for h in ("Webhook-Id", "Webhook-Timestamp", "Webhook-Signature")):
        raise ApiError(401, "missing webhook-id, webhook-timestamp or webhook-signature header")
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError as exc:
        raise ApiError(403, f"signature rejected: {exc}") from None
    except ValueError:  # a malformed signature header (not `v1,<base64>`)
        raise ApiError(403, "signature rejected: malformed webhook-signature") from None
    document = _json_body()
    if not isinstance(document, dict):
        raise ApiError(400, "body must be a JSON object")
    try:
        score = SCORE_SCHEMA.load(document)
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    score["rated_at"] = score["rated_at"] or datetime.now(timezone.utc)

    with services().db.transaction() as session:
        call, result = ingest_api_score(session, services().ingest, headers["Webhook-Id"], body, score)
        if result.status == REFUSED:
            # Outside the scale or the rating window in force: a conflict with the settings, not a malformed
            # score. Raising rolls the transaction back: tell the sender, keep nothing; it can resend.
            raise ApiError(409, f"score: {result.reason}")
        answer = {"success": True, "call_id": call.entry_id, "status": result.status, "reason": result.reason}
    CALLBACKS.labels("scores", "accepted").inc()
    return answer


# --- calls -----------------------------------------------------------------



@bp.get("/calls")
@require_token()
def list_calls():
    try:
        args = CALL_QUERY_SCHEMA.load(request.args.to_dict())
        sort = args.pop("sort")
        after = args.pop("after", None)
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    page, per_page = args.pop("page"), min(args.pop("per_page"), MAX_PER_PAGE)
    with services().db.reading() as session:
        found = find_calls(session, CallFilter(**args, visible_extensions=g.principal.visible_extensions),
                           per_page=per_page, page=page, after=after, sort=sort)
        items = [call_json(c) for c in found.calls]
    query = {k: v for k, v in request.args.items() if k not in ("page", "per_page", "after")}
    links = {"self": request.full_path.rstrip("?"), "first": url_for(".list_calls", per_page=per_page, **query)}
    if found.next_cursor is not None:
        links["next"] = url_for(".list_calls", per_page=per_page, after=found.next_cursor.encode(), **query)
    if after is None and page > 1:
        links["prev"] = url_for(".list_calls", page=page - 1, per_page=per_page, **query)
    meta = {"page": None if after else page, "per_page": per_page, "total": found.total,
            "total_capped": found.total_capped}
    return {"items": items, "_meta": meta, "_links": links}


@bp.get("/calls/<path:call_id>")
@require_token()
def show_call(call_id: str):
    with services().db.reading() as session:
        call = _visible_call(session, call_id)
        return call_json(call, with_history=True, marks=marks_json(session, call))


def _visible_call(session, call_id: str):
    call = get_visible_call(session, call_id, g.principal)
    if call is None:
        problem = call_id_problem(call_id)
        raise ApiError(404, f"unknown call: call_id {problem}" if problem else f"unknown call {call_id}")
    return call


class ReviewSchema(Schema):
    class Meta:
        unknown = RAISE

    score = StrictInteger(required=True, validate=validate.Range(0, SCORE_LIMIT - 1))  # any scale's range
    comment = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=2000), storable_lines])


REVIEW_SCHEMA = ReviewSchema()


@bp.get("/calls/<path:call_id>/reviews")
@require_token()
def get_reviews(call_id: str):
    with services().db.reading() as session:
        return {"items": call_json(_visible_call(session, call_id))["reviews"]}


@bp.post("/calls/<path:call_id>/reviews")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def post_review(call_id: str):
    """A supervisor's rating and comment; the call's operator is notified."""
    try:
        review = REVIEW_SCHEMA.load(_json_body())
    except ValidationError as exc:
        raise ApiError(422, first_error(exc.messages)) from None
    with services().db.transaction() as session:
        call = _visible_call(session, call_id)
        try:
            add_review(session, services().ingest, call, g.principal, review["score"], review["comment"])
        except ValueError as exc:  # outside the scale in force for the call's line
            raise ApiError(409, f"score: {exc}") from None
        session.flush()
        return call_json(call, with_history=True, marks=marks_json(session, call)), 201


# --- reports -------------------------------------------------------------------



def _report(by: str):
    try:
        args = REPORT_QUERY_SCHEMA.load(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    flt = ReportFilter(**args, visible_extensions=g.principal.visible_extensions)
    part = {By.OPERATOR: "operators", By.LINE: "lines"}[by]
    return services().figures(flt, services().ingest.initial_policy, (part,))[part]  # connector.console.offload


@bp.get("/reports/operators")
@require_token()
def get_operators_report():
    """Per operator extension: answered, offered, rated, response rate, CSAT, NPS... with a totals row."""
    return _report(By.OPERATOR)


@bp.get("/reports/lines")
@require_token()
def get_lines_report():
    """The same per PBX line."""
    return _report(By.LINE)


# --- notifications -------------------------------------------------------------

class NotificationQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    before = fields.Integer(validate=validate.Range(1, INT32_MAX), metadata={
        "description": "only notifications older than this id, as `_links.next` hands it out"})
    unread = fields.Boolean(load_default=False, metadata={"description": "only the unread ones"})
    per_page = fields.Integer(load_default=50, validate=validate.Range(1, 500))


NOTIFICATION_QUERY_SCHEMA = NotificationQuerySchema()


@bp.get("/notifications")
@require_token()
def get_notifications():
    """The caller's own notifications, newest first, a page at a time (a keyset: `_links.next`): reviews of
    their calls, new low scores. `unread` counts all of the caller's unread ones, `total` those the filter
    selects."""
    try:
        args = NOTIFICATION_QUERY_SCHEMA.load(request.args.to_dict())
    except ValidationError as exc:
        raise ApiError(400, first_error(exc.messages)) from None
    with services().db.reading() as session:
        page = notification_page(session, g.principal, before=args.get("before"), per_page=args["per_page"],
                                 unread_only=args["unread"])
        unread = unread_count(session, g.principal)
        items = [{"id": n.id, "call_id": n.call.entry_id, "kind": n.kind, "read": n.read,
                  "at": n.created_at.isoformat()} for n in page.items]
    links = {}
    if page.older is not None:
        links["next"] = url_for(".get_notifications", before=page.older, per_page=args["per_page"],
                                **({"unread": "true"} if args["unread"] else {}))
    return {"items": items, "unread": unread, "total": page.total, "_links": links}


class MarkReadSchema(Schema):
    class Meta:
        unknown = RAISE

    ids = fields.List(StrictInteger(validate=validate.Range(1, INT32_MAX)), load_default=None,
                      validate=validate.Length(max=1000))


MARK_READ_SCHEMA = MarkReadSchema()


@bp.post("/notifications/read")
@require_token()
def post_notifications_read():
    """Mark the caller's notifications read: `{"ids": [...]}`, or all of them with no body."""
    body = _json_body() if request.get_data() else {}
    try:
        ids = MARK_READ_SCHEMA.load(body)["ids"]
    except ValidationError as exc:
        raise ApiError(422, first_error(exc.messages)) from None
    with services().db.transaction() as session:
        return {"marked": mark_read(session, g.principal, ids)}


# --- runtime settings ------------------------------------------------------

USER_MAP_TARGETS = MAPPED_TARGETS  # targets whose users the connector names: each has its own map


def _user_maps(session, changes: dict | None = None) -> dict:
    """Every target's extension -> user map, each changed first when `changes` names it."""
    maps = {}
    for target in USER_MAP_TARGETS:
        scope, initial = user_map_scope(target), services().config.user_map(target)
        if changes is not None and scope in changes:
            maps[scope] = update_user_map(session, initial, changes.pop(scope), actor=g.principal.username,
                                          scope=scope)
        else:
            maps[scope] = current_user_map(session, initial, scope)
    return maps


@bp.get("/settings")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_settings():
    initial = services().ingest.initial_policy
    with services().db.reading() as session:
        return {**current_policy(session, initial).as_dict(), **_user_maps(session), **_time_zone(session)}


def _time_zone(session, changes: dict | None = None) -> dict:
    """The account's time zone in force (the console's choice, else CONSOLE_TIMEZONE), changed first when
    `changes` names it (raises TimeZoneError, a PolicyError)."""
    if changes is not None and time_zone.FIELD in changes:
        time_zone.update_time_zone(session, changes.pop(time_zone.FIELD), actor=g.principal.username)
    return {time_zone.FIELD: time_zone.zone_in_force(session, services().config.CONSOLE_TIMEZONE).name}


@bp.put("/settings")
@require_token(Role.ADMIN)
def put_settings():
    """Change some settings: any policy field, `amocrm_user_map` / `bitrix24_user_map` (replaced whole), and
    `time_zone` (an IANA name: the console's times, date filters, reports and exports; the API keeps UTC)."""
    changes = _json_body()
    if not isinstance(changes, dict) or not changes:
        raise ApiError(400, "expected a JSON object of settings to change")
    with services().db.transaction() as session:
        try:
            maps = _user_maps(session, changes)
            zone = _time_zone(session, changes)
            policy = update_policy(session, services().ingest.initial_policy, changes, actor=g.principal.username)
        except PolicyConflict as exc:
            raise ApiError(409, str(exc)) from None
        except PolicyError as exc:
            raise ApiError(422, str(exc)) from None
        return {**policy.as_dict(), **maps, **zone}


def _line_number(line_number: str) -> str:
    problem = line_problem(line_number)
    if problem:
        raise ApiError(404, f"unknown line: {problem}")
    return line_number


@bp.get("/settings/lines")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_line_overrides():
    """Every line's override of the global policy."""
    with services().db.reading() as session:
        lines = current_policies(session, services().ingest.initial_policy).lines
    return {"items": [{"line_number": line, **override} for line, override in sorted(lines.items())]}


@bp.get("/settings/lines/<line_number>")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_line_override(line_number: str):
    with services().db.reading() as session:
        override = line_override(session, _line_number(line_number))
    if override is None:
        raise ApiError(404, f"line {line_number} has no override: it follows the global settings")
    return {"line_number": line_number, **override}


@bp.put("/settings/lines/<line_number>")
@require_token(Role.ADMIN)
def put_line_override(line_number: str):
    """`{"enabled": bool, "max_threshold": int, "high_scores": str}` (any of them) for calls on this line;
    audited."""
    line_number = _line_number(line_number)
    body = _json_body()
    with services().db.transaction() as session:
        try:
            override = update_line_override(session, services().ingest.initial_policy, line_number, body,
                                            actor=g.principal.username)
        except PolicyConflict as exc:
            raise ApiError(409, str(exc)) from None
        except PolicyError as exc:
            raise ApiError(422, str(exc)) from None
    return {"line_number": line_number, **override}


@bp.delete("/settings/lines/<line_number>")
@require_token(Role.ADMIN)
def delete_line(line_number: str):
    with services().db.transaction() as session:
        if not delete_line_override(session, _line_number(line_number), actor=g.principal.username):
            raise ApiError(404, f"line {line_number} has no override")
    return Response(status=204)


@bp.get("/settings/audit")
@require_token(Role.ADMIN)
def get_settings_audit():
    with services().db.reading() as session:
        rows = audit_trail(session)
        return {"items": [{"scope": r.scope, "actor": r.actor, "changed_at": r.changed_at.isoformat(),
                           "before": r.before, "after": r.after} for r in rows]}


def _component_details() -> dict:
    try:
        with services().db.reading() as session:
            return status.details(session, services().config.targets)
    except Exception:  # any database failure means unhealthy, never a 500
        raise ApiError(503, "database unavailable") from None


@health_bp.get("/healthz")
def healthz():
    """200 `ok`, or 200 `degraded` with each component's state (a paused or failing CRM, a blocked PBX
    API, a lagging inbox); 503 when the database does not answer. No error text: that is for tokens."""
    return status.summary(_component_details())


@health_bp.get("/metrics")
def metrics():
    """Prometheus text format: every process's counters (multiprocess mode when PROMETHEUS_MULTIPROC_DIR
    is set), then this moment's queue depths read from the database."""
    import os

    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    body = generate_latest(registry)
    try:
        with services().db.reading() as session:
            body += generate_latest(queue_metrics(status.details(session, services().config.targets)))
    except Exception:  # the database is down: the process metrics still tell something
        pass
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


@bp.get("/status")
@require_token(Role.ADMIN, Role.SUPERVISOR)
def get_status():
    """Each component's state with its reason: pause reason, MANGO block, inbox lag, outbox depth."""
    components = _component_details()
    return {**status.summary(components), "details": components}
