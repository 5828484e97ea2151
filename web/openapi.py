"""The OpenAPI 3.1 document of the JSON API, built by apispec from the same marshmallow schemas and rules
that validate the requests, at `GET /api/openapi.json`. It states every constraint the API enforces: a
request it allows is accepted, or answered 401/403 (credentials), 404 (an id that does not exist), 409 (a
conflict with the settings in force) or 429 (throttled). tests/test_openapi.py fuzzes the API from it."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint

bp = Blueprint("openapi", __name__)

OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
TOKEN = [{"token": []}]
CONFLICT = "conflicts with the settings in force (the error says which); the same request may fit other settings"


def _error(description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


def _responses(ok: dict, **errors: str) -> dict:
    """`ok` (status -> description), each error status with its description, and every other one (500 is
    never meant; 503 when the database is down) in the Error shape."""
    answers = {status: {"description": description, **OBJECT} if status != "204" else {"description": description}
               for status, description in ok.items()}
    answers.update({status.removeprefix("e"): _error(description) for status, description in errors.items()})
    answers["default"] = _error("`{\"error\": \"<one line>\"}`: 503 when the database is down")
    return answers


def _token(ok: dict, **errors: str) -> dict:
    """Responses of a bearer-token route: 401 without a known token, 429 while the address is throttled."""
    return _responses(ok, e401="missing or unknown bearer token",
                      e429="too many wrong tokens from this address (`Retry-After`)", **errors)


def _rules(self, field, **kwargs) -> dict:
    """apispec attribute function: the JSON Schema keywords of a field's connector.core.validation rules."""
    from connector.core.validation import Rule

    keywords: dict = {}
    for rule in field.validators:
        if isinstance(rule, Rule):
            keywords.update(rule.schema)
    return keywords


def _settings_schemas(spec: APISpec) -> None:
    from connector.core.policy import HighScores, LINE_FIELDS, RANGES, TEMPLATE_MAX, TEMPLATE_PATTERN
    from connector.core.time_zone import known_zones
    from connector.core.validation import INT32_MAX, LINE_MAX, LINE_PATTERN

    def integer(name: str) -> dict:
        low, high = RANGES[name]
        return {"type": "integer", "minimum": low, "maximum": high}

    template = {"type": "string", "maxLength": TEMPLATE_MAX, "pattern": TEMPLATE_PATTERN,
                "description": "text with a plain `{score}` (literal braces doubled), no control characters"}
    fields = {
        "enabled": {"type": "boolean"},
        "scale_min": integer("scale_min"), "scale_max": integer("scale_max"),
        "max_threshold": {**integer("max_threshold"),
                          "description": "within [scale_min, scale_max + 1] of the resulting settings (else 409)"},
        "tag_template": template, "score_text_template": template,
        "rating_window_days": {**integer("rating_window_days"), "description": "0: no limit"},
        "lock_score": {"type": "boolean"},
        "high_scores": {"type": "string", "enum": [rule.value for rule in HighScores]},
    }
    user_map = {"type": "object", "description": "extension -> the CRM's user id, replaced whole",
                "propertyNames": {"type": "string", "minLength": 1, "maxLength": LINE_MAX, "pattern": LINE_PATTERN},
                "additionalProperties": {"type": "integer", "minimum": 1, "maximum": INT32_MAX}}
    time_zone = {"type": "string", "enum": sorted(known_zones()),
                 "description": "the account's IANA time zone (Europe/Moscow, Asia/Yekaterinburg): the console's "
                                "times, date filters, reports and exports; the API keeps UTC (else 422)"}
    spec.components.schema("SettingsChange", {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "description": "Any of the settings; scale_min must stay below scale_max (else 409)",
        "properties": {**fields, "amocrm_user_map": user_map, "bitrix24_user_map": user_map,
                       "time_zone": time_zone}})
    spec.components.schema("LineOverride", {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "properties": {name: fields[name] for name in LINE_FIELDS}})


def _rating_link_reports(spec: APISpec, query) -> None:
    """The response rate per channel and the rating requests' funnel, their answers' shapes in full."""
    from connector.console.reports import CHANNELS, FUNNEL
    from connector.core.models import RequestReason

    count = {"type": "integer", "minimum": 0}
    percent = {"type": ["number", "null"], "minimum": 0, "maximum": 100,
               "description": "in %, one decimal; null when its n is 0"}

    def strict(properties: dict) -> dict:
        return {"type": "object", "required": list(properties), "additionalProperties": False,
                "properties": properties}

    rated = strict({"rated": count, "response_rate": percent})
    spec.components.schema("ChannelsReport", strict({
        "rateable": {**count, "description": "answered external calls (inbound or outbound, talk time > 0)"},
        "items": {"type": "array", "items": strict({
            "channel": {"type": "string", "enum": [c.value for c in CHANNELS],
                        "description": "the score's origin: IVR survey, the PBX's quality control, the link, the API"},
            **rated["properties"]})},
        "any_channel": {**rated, "description": "each call once, whatever channels rated it"}}))
    reasons = strict({"requests": count, "by_reason": {"type": "array", "items": strict({
        "reason": {"type": ["string", "null"], "enum": [r.value for r in RequestReason] + [None]},
        "requests": count})}})
    spec.components.schema("RatingRequestsReport", strict({
        "requests": {**count, "description": "every request of the calls in the filter, skipped ones too"},
        "steps": {"type": "array", "items": strict({
            "step": {"type": "string", "enum": list(FUNNEL)}, "requests": count,
            "of_previous": {**percent, "description": "of the step before (null for `due`)"},
            "of_due": percent})},
        "waiting": {**count, "description": "due, not yet sent, not failed"},
        "skipped": reasons, "failed": reasons}))
    for path, schema, summary in (
            ("channels", "ChannelsReport", "Response rate per channel a customer's score came through, over the "
                                           "rateable calls (an operator sees only their own)"),
            ("rating-requests", "RatingRequestsReport", "The rating requests' funnel for the calls in the filter, "
                                                        "and the skipped and failed by reason")):
        responses = _token({"200": ""}, e400="a parameter breaks the schema")
        responses["200"] = {"description": summary, "content": {"application/json": {"schema": schema}}}
        spec.path(f"/api/v1/reports/{path}", operations={"get": {
            "summary": summary, "security": TOKEN, "parameters": [{"in": "query", "schema": query}],
            "responses": responses}})


def _follow_up_report(spec: APISpec, query) -> None:
    """The follow-ups after low scores per operator and per line (connector.console.reports.follow_up_figures)."""
    count = {"type": "integer", "minimum": 0}
    percent = {"type": ["number", "null"], "minimum": 0, "maximum": 100,
               "description": "in %, one decimal; null when its n is 0"}

    def row(key: str) -> dict:
        properties = {
            key: {"type": ["string", "null"],
                  "description": f"the {key} (null in `totals`, and for calls without one)"},
            "follow_ups": {**count, "description": "calls of the filter scored low: one follow-up each"},
            "closed": {**count, "description": "done: the CRM task completed, or closed in the console"},
            "follow_up_rate": {**percent, "description": "closed / follow_ups, in %"},
            "median_hours": {"type": ["number", "null"], "minimum": 0,
                             "description": "median hours from the low score to done, over `closed`"},
            "overdue": {**count, "description": "open past their due time, now"},
            "with_outcome": {**count, "description": "closed in the console with an outcome"},
            "recovered": {**count, "description": "closed as called back and recovered"},
            "recovery_rate": {**percent, "description": "recovered / with_outcome, in %"}}
        return {"type": "object", "required": list(properties), "additionalProperties": False,
                "properties": properties}

    def table(key: str) -> dict:
        return {"type": "object", "required": ["items", "totals"], "additionalProperties": False,
                "properties": {"items": {"type": "array", "items": row(key)}, "totals": row(key)}}

    spec.components.schema("FollowUpsReport", {
        "type": "object", "required": ["operators", "lines"], "additionalProperties": False,
        "properties": {"operators": table("operator"), "lines": table("line")}})
    summary = ("The follow-ups after low scores per operator and per line: follow-up rate, median time to "
               "follow-up, overdue, recovery rate, each with its n (an operator sees only their own)")
    responses = _token({"200": ""}, e400="a parameter breaks the schema")
    responses["200"] = {"description": summary, "content": {"application/json": {"schema": "FollowUpsReport"}}}
    spec.path("/api/v1/reports/follow-ups", operations={"get": {
        "summary": summary, "security": TOKEN, "parameters": [{"in": "query", "schema": query}],
        "responses": responses}})


def _rating_link_schemas(spec: APISpec) -> None:
    from connector.core.validation import TEXT_PATTERN
    from connector.inbound.link.contacts import NUMBER_PATTERN
    from connector.inbound.link.settings import RANGES, TEMPLATE_PATTERN, TEXTS, RatingScale

    def integer(name: str, description: str) -> dict:
        low, high = RANGES[name]
        return {"type": "integer", "minimum": low, "maximum": high, "description": description}

    spec.components.schema("RatingLinkChange", {
        "type": "object", "minProperties": 1, "additionalProperties": False,
        "description": "Any of the rating link's settings; the sending hours must end after they begin, and the "
                       "template must fit one SMS with the link, the longest operator name and the date (else 409)",
        "properties": {
            "enabled": {"type": "boolean"},
            "delay_minutes": integer("delay_minutes", "minutes after the call"),
            "send_from_hour": integer("send_from_hour", "local hour (the account's time zone) sending may begin"),
            "send_until_hour": integer("send_until_hour", "local hour sending ends (exclusive)"),
            "also_scored": {"type": "boolean", "description": "also calls that have a customer score"},
            "daily_cap": integer("daily_cap", "requests a day to one number"),
            "valid_days": integer("valid_days", "days the link works after it is sent (never past the rating window)"),
            "scale": {"type": "string", "enum": [scale.value for scale in RatingScale]},
            "template": {"type": "string", "maxLength": TEXTS["template"], "pattern": TEMPLATE_PATTERN,
                         "description": "the SMS: `{link}` once at least, `{operator}` and `{date}` if wanted, "
                                        "literal braces doubled, no control characters"},
            "from_extension": {"type": "string", "pattern": "^([0-9]{1,16})?$",
                               "description": "the extension billed when the call's operator has none"},
            "sms_sender": {"type": "string", "pattern": "^([A-Za-z0-9 ._-]{1,11})?$",
                           "description": "a sender name the PBX account has; empty: its default"},
            "company": {"type": "string", "maxLength": TEXTS["company"], "pattern": TEXT_PATTERN},
            "lines": {"type": "object", "description": "line -> {\"enabled\": bool}, replaced whole",
                      "propertyNames": {"type": "string", "pattern": "^[0-9]{1,32}$"},
                      "additionalProperties": {"type": "object", "required": ["enabled"],
                                               "additionalProperties": False,
                                               "properties": {"enabled": {"type": "boolean"}}}},
        }})
    spec.components.schema("DoNotContactAdd", {
        "type": "object", "required": ["number"], "additionalProperties": False,
        "properties": {"number": {"type": "string", "pattern": NUMBER_PATTERN,
                                  "description": "a Russian number: +7, 7 or 8 and ten digits"}}})


def _alerts(spec: APISpec, admin: dict) -> None:
    """The alerts' settings and routes (admins only)."""
    from connector.delivery.alerts.settings import RANGES
    from web.api.alerts import RouteSchema

    descriptions = {"supervisor_below": "a supervisor score below this alerts; 0: never",
                    "divergence": "customer and supervisor scores at least this far apart alert; 0: never",
                    "quiet_from_hour": "local hour (the account's time zone) alerts begin to wait; equal to "
                                       "quiet_until_hour: no quiet hours",
                    "quiet_until_hour": "local hour the quiet hours end (exclusive); what waited goes as a digest",
                    "cap_per_hour": "alerts a person gets one by one in an hour, the rest join a digest; 0: no cap"}
    properties = {name: {"type": "integer", "minimum": low, "maximum": high, "description": descriptions[name]}
                  for name, (low, high) in RANGES.items()}
    spec.components.schema("AlertSettings", {"type": "object", "required": list(properties),
                                             "additionalProperties": False, "properties": properties})
    spec.components.schema("AlertSettingsChange", {"type": "object", "minProperties": 1,
                                                   "additionalProperties": False, "properties": properties})
    spec.components.schema("AlertRouteAdd", schema=RouteSchema)
    def settings_answer(description: str, **errors: str) -> dict:
        responses = _token({"200": description}, **admin, **errors)
        responses["200"] = {"description": description,
                            "content": {"application/json": {"schema": "AlertSettings"}}}
        return responses

    spec.path("/api/v1/settings/alerts", operations={
        "get": {"summary": "The alerts' settings in force", "security": TOKEN,
                "responses": settings_answer("the settings")},
        "patch": {"summary": "Change some of the alerts' settings (admin; audited)", "security": TOKEN,
                  "requestBody": {"required": True,
                                  "content": {"application/json": {"schema": "AlertSettingsChange"}}},
                  "responses": settings_answer("the settings after the change", e400="no JSON object",
                                               e409=CONFLICT, e415="not application/json",
                                               e422="a value breaks the schema (the error names the field)")}})
    route_id = [{"in": "path", "name": "route_id", "required": True,
                 "schema": {"type": "integer", "minimum": 0}}]
    spec.path("/api/v1/alert-routes", operations={
        "get": {"summary": "Who gets which alerts: `items` of id, username, line and group (null: all)",
                "security": TOKEN, "responses": _token({"200": "`items`"}, **admin)},
        "post": {"summary": "Route a line's and/or an operator group's alerts to a supervisor or an admin "
                            "(admin; audited)", "security": TOKEN,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": "AlertRouteAdd"}}},
                 "responses": _token({"201": "added", "200": "the same route was there: nothing changed"}, **admin,
                                     e400="not valid JSON", e404="no such user (or a disabled one)",
                                     e409="the user is an operator: alerts go to supervisors and admins only",
                                     e415="not application/json", e422="the body breaks the schema")}})
    spec.path("/api/v1/alert-routes/{route_id}", operations={"delete": {
        "summary": "Remove a route (admin; audited)", "security": TOKEN, "parameters": route_id,
        "responses": _token({"204": "removed"}, **admin, e404="no such route")}})


def build_spec() -> dict:
    from connector.console.queries import CallQuerySchema, ReportQuerySchema
    from connector.inbound.link.contacts import NUMBER_PATTERN
    from connector.core.validation import LINE_MAX, LINE_PATH_PATTERN, TEXT_DESCRIPTION, TEXT_PATTERN
    from web.api.calls import ReviewSchema
    from web.api.notifications import MarkReadSchema, NotificationQuerySchema
    from web.api.scores import ScoreSchema

    plugin = MarshmallowPlugin()
    spec = APISpec(title="Post-call QA connector", version="1", openapi_version="3.1.0", plugins=[plugin])
    plugin.converter.add_attribute_function(_rules)
    spec.components.security_scheme("token", {"type": "http", "scheme": "bearer",
                                              "description": "ADMIN_TOKEN (or a personal token)"})
    spec.components.security_scheme("webhookSignature", {
        "type": "apiKey", "in": "header", "name": "webhook-signature",
        "description": "Standard Webhooks: `v1,<base64 HMAC-SHA256 of webhook-id.webhook-timestamp.body>` with "
                       "SCORES_WEBHOOK_SECRET"})
    spec.components.schema("Error", {"type": "object", "required": ["error"],
                                     "properties": {"error": {"type": "string"}}})
    spec.components.schema("Score", schema=ScoreSchema)
    spec.path("/api/v1/scores", operations={"post": {
        "summary": "A score from any quality system, signed by Standard Webhooks (webhook-id, "
                   "webhook-timestamp, webhook-signature); a repeated webhook-id is 200 and changes nothing",
        "security": [{"webhookSignature": []}],
        "parameters": [
            {"in": "header", "name": "webhook-id", "required": True, "schema": {"type": "string", "minLength": 1}},
            {"in": "header", "name": "webhook-timestamp", "required": True,
             "schema": {"type": "string", "pattern": "^[0-9]{1,12}$"},
             "description": "Unix seconds, within 5 minutes of now (else 403)"}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Score"}}},
        "responses": _responses(
            {"200": "stored (or a duplicate)"}, e400="the body breaks the schema",
            e401="a webhook header is missing",
            e403="the signature or timestamp does not verify, or the score API is off (no SCORES_WEBHOOK_SECRET)",
            e409=f"refused, nothing kept: the score is outside the scale or the rating window in force ({CONFLICT})",
            e415="not application/json")}})

    call_id = [{"in": "path", "name": "call_id", "required": True, "description": TEXT_DESCRIPTION,
                "schema": {"type": "string", "minLength": 1, "maxLength": 128, "pattern": TEXT_PATTERN}}]
    no_call = {"e404": "no such call (or another operator's)"}
    spec.path("/api/v1/calls", operations={"get": {
        "summary": "Calls, newest first; `_links.next` is a keyset cursor", "security": TOKEN,
        "parameters": [{"in": "query", "schema": CallQuerySchema}],
        "responses": _token({"200": "`items`, `_meta` (page, per_page, total, total_capped), `_links`"},
                            e400="a parameter breaks the schema (the error names it)")}})
    spec.path("/api/v1/calls/{call_id}", operations={"get": {
        "summary": "One call with supervisor_marks, its score history, its rating request by link and its follow-up "
                   "after a low score (each null when none)",
        "security": TOKEN,
        "parameters": call_id, "responses": _token({"200": "the call"}, **no_call)}})
    spec.components.schema("Review", schema=ReviewSchema)
    spec.components.schema("MarkRead", schema=MarkReadSchema)
    spec.path("/api/v1/calls/{call_id}/reviews", operations={"get": {
        "summary": "The call's reviews, oldest first", "security": TOKEN, "parameters": call_id,
        "responses": _token({"200": "`items`: by, score, comment, at"}, **no_call)}, "post": {
        "summary": "A supervisor's review (supervisor or admin); the call's operator is notified",
        "security": TOKEN, "parameters": call_id,
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Review"}}},
        "responses": _token({"201": "the call with its reviews"}, e403="an operator may not review", **no_call,
                            e409=f"the score is outside the scale in force for the call's line ({CONFLICT})",
                            e415="not application/json", e422="the body breaks the schema")}})
    for by in ("operators", "lines"):
        spec.path(f"/api/v1/reports/{by}", operations={"get": {
            "summary": f"Figures per {by[:-1]} with a totals row (an operator sees only their own)",
            "security": TOKEN, "parameters": [{"in": "query", "schema": ReportQuerySchema}],
            "responses": _token({"200": "`items`, `totals`"}, e400="a parameter breaks the schema")}})
    _rating_link_reports(spec, ReportQuerySchema)
    _follow_up_report(spec, ReportQuerySchema)
    spec.path("/api/v1/notifications", operations={"get": {
        "summary": "The caller's own notifications (`review`, `low_score`), newest first; `_links.next` pages on",
        "security": TOKEN, "parameters": [{"in": "query", "schema": NotificationQuerySchema}],
        "responses": _token({"200": "`items`, `unread` (all unread), `total` (selected), `_links`"},
                            e400="a parameter breaks the schema")}})
    spec.path("/api/v1/notifications/read", operations={"post": {
        "summary": "Mark the caller's notifications read (these ids, or all without a body)", "security": TOKEN,
        "requestBody": {"required": False, "content": {"application/json": {"schema": "MarkRead"}}},
        "responses": _token({"200": "`marked`"}, e415="a body that is not application/json",
                            e422="the body breaks the schema")}})

    _settings_schemas(spec)
    admin, staff = {"e403": "only an admin may"}, {"e403": "only a supervisor or an admin may"}
    spec.path("/api/v1/settings", operations={
        "get": {"summary": "Runtime settings", "security": TOKEN, "responses": _token({"200": "the settings"}, **staff)},
        "put": {"summary": "Change some runtime settings (audited)", "security": TOKEN,
                "requestBody": {"required": True, "content": {"application/json": {"schema": "SettingsChange"}}},
                "responses": _token({"200": "the settings after the change"}, **admin, e409=CONFLICT,
                                    e400="no JSON object", e415="not application/json",
                                    e422="a value breaks the schema (the error names it)")}})
    line = [{"in": "path", "name": "line_number", "required": True,
             "description": f"a line's name: 1 to {LINE_MAX} characters, not only white space, no `/`; "
                            + TEXT_DESCRIPTION,
             "schema": {"type": "string", "minLength": 1, "maxLength": LINE_MAX, "pattern": LINE_PATH_PATTERN}}]
    no_override = {"e404": "the line has no override (it follows the global settings)"}
    spec.path("/api/v1/settings/lines", operations={"get": {
        "summary": "Every line's override of the global policy", "security": TOKEN,
        "responses": _token({"200": "`items`"}, **staff)}})
    spec.path("/api/v1/settings/lines/{line_number}", operations={
        "get": {"summary": "A line's override", "security": TOKEN, "parameters": line,
                "responses": _token({"200": "the override"}, **staff, **no_override)},
        "put": {"summary": "Set a line's `enabled`, `max_threshold` and/or `high_scores` (admin; audited)",
                "security": TOKEN, "parameters": line,
                "requestBody": {"required": True, "content": {"application/json": {"schema": "LineOverride"}}},
                "responses": _token({"200": "the override"}, **admin, e409=CONFLICT, e415="not application/json",
                                    e422="the body breaks the schema (the error names the field)")},
        "delete": {"summary": "The line follows the global settings again (admin; audited)", "security": TOKEN,
                   "parameters": line, "responses": _token({"204": "removed"}, **admin, **no_override)}})
    spec.path("/api/v1/settings/audit", operations={"get": {
        "summary": "Who changed which setting when", "security": TOKEN,
        "responses": _token({"200": "`items`"}, **admin)}})
    _rating_link_schemas(spec)
    spec.path("/api/v1/settings/rating-link", operations={
        "get": {"summary": "The rating link's settings and when they were saved (`saved_at`)", "security": TOKEN,
                "responses": _token({"200": "the settings"}, **admin)},
        "patch": {"summary": "Change some of the rating link's settings (admin; audited)", "security": TOKEN,
                  "requestBody": {"required": True, "content": {"application/json": {"schema": "RatingLinkChange"}}},
                  "responses": _token({"200": "the settings after the change"}, **admin, e400="no JSON object",
                                      e409="the sending hours end before they begin, or the template does not fit "
                                           "one SMS with the link (the error names the field)",
                                      e415="not application/json",
                                      e422="a value breaks the schema (the error names the field)")}})
    spec.path("/api/v1/do-not-contact", operations={
        "get": {"summary": "The numbers no rating request goes to, the newest first", "security": TOKEN,
                "responses": _token({"200": "`items`: number, source (admin, customer), actor, added_at"}, **admin)},
        "post": {"summary": "Put a number on the do-not-contact list (admin; audited)", "security": TOKEN,
                 "requestBody": {"required": True, "content": {"application/json": {"schema": "DoNotContactAdd"}}},
                 "responses": _token({"201": "added", "200": "already listed: nothing changed"}, **admin,
                                     e400="not valid JSON", e415="not application/json",
                                     e422="not a Russian number")}})
    spec.path("/api/v1/do-not-contact/{number}", operations={"delete": {
        "summary": "Take a number off the do-not-contact list (admin; audited)", "security": TOKEN,
        "parameters": [{"in": "path", "name": "number", "required": True,
                        "schema": {"type": "string", "pattern": NUMBER_PATTERN}}],
        "responses": _token({"204": "removed"}, **admin, e404="the number is not on the list")}})
    _alerts(spec, admin)
    spec.path("/api/v1/status", operations={"get": {
        "summary": "Each component's state with the details", "security": TOKEN,
        "responses": _token({"200": "status"}, **staff)}})
    spec.path("/healthz", operations={"get": {
        "summary": "Each component's state, no details", "responses": _responses({"200": "ok or degraded"})}})
    spec.path("/metrics", operations={"get": {
        "summary": "Prometheus metrics", "responses": {
            "200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    return spec.to_dict()


@bp.get("/api/openapi.json")
def openapi():
    return build_spec()
