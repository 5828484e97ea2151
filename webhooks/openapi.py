"""The OpenAPI 3 document of the JSON API, built by apispec from the same marshmallow schemas that
validate the requests, at `GET /api/openapi.json`. A test checks that it lists every API route."""
from __future__ import annotations

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint

bp = Blueprint("openapi", __name__)

ERROR = {"description": "`{\"error\": \"<one line>\"}` (4xx; 503 when the database is down)",
         "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
OBJECT = {"content": {"application/json": {"schema": {"type": "object"}}}}
TOKEN = [{"token": []}]


def _ok(description: str) -> dict:
    return {"200": {"description": description, **OBJECT}, "default": ERROR}


def build_spec() -> dict:
    from connector.queries import CallQuerySchema, ReportQuerySchema
    from webhooks.api import MarkReadSchema, ReviewSchema, ScoreSchema

    spec = APISpec(title="Post-call QA connector", version="1", openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()])
    spec.components.security_scheme("token", {"type": "http", "scheme": "bearer",
                                              "description": "ADMIN_TOKEN (or a personal token)"})
    spec.components.schema("Error", {"type": "object", "required": ["error"],
                                     "properties": {"error": {"type": "string"}}})
    spec.components.schema("Score", schema=ScoreSchema)
    spec.path("/api/v1/scores", operations={"post": {
        "summary": "A score from any quality system, signed by Standard Webhooks (webhook-id, "
                   "webhook-timestamp, webhook-signature); a repeated webhook-id is 200 and changes nothing",
        "parameters": [{"in": "header", "name": name, "required": True, "schema": {"type": "string"}}
                       for name in ("webhook-id", "webhook-timestamp", "webhook-signature")],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Score"}}},
        "responses": _ok("stored (or a duplicate)")}})
    spec.path("/api/v1/calls", operations={"get": {
        "summary": "Calls, newest first; `_links.next` is a keyset cursor", "security": TOKEN,
        "parameters": [{"in": "query", "schema": CallQuerySchema}],
        "responses": _ok("`items`, `_meta` (page, per_page, total, total_capped), `_links`")}})
    spec.path("/api/v1/calls/{call_id}", operations={"get": {
        "summary": "One call with supervisor_marks and its score history", "security": TOKEN,
        "parameters": [{"in": "path", "name": "call_id", "required": True, "schema": {"type": "string"}}],
        "responses": _ok("the call")}})
    spec.components.schema("Review", schema=ReviewSchema)
    spec.components.schema("MarkRead", schema=MarkReadSchema)
    spec.path("/api/v1/calls/{call_id}/reviews", operations={"get": {
        "summary": "The call's reviews, oldest first", "security": TOKEN,
        "parameters": [{"in": "path", "name": "call_id", "required": True, "schema": {"type": "string"}}],
        "responses": _ok("`items`: by, score, comment, at")}, "post": {
        "summary": "A supervisor's review (supervisor or admin); the call's operator is notified",
        "security": TOKEN,
        "parameters": [{"in": "path", "name": "call_id", "required": True, "schema": {"type": "string"}}],
        "requestBody": {"required": True, "content": {"application/json": {"schema": "Review"}}},
        "responses": {"201": {"description": "the call with its reviews", **OBJECT}, "default": ERROR}}})
    for by in ("operators", "lines"):
        spec.path(f"/api/v1/reports/{by}", operations={"get": {
            "summary": f"Figures per {by[:-1]} with a totals row (an operator sees only their own)",
            "security": TOKEN, "parameters": [{"in": "query", "schema": ReportQuerySchema}],
            "responses": _ok("`items`, `totals`")}})
    spec.path("/api/v1/notifications", operations={"get": {
        "summary": "The caller's own notifications (`review`, `low_score`)", "security": TOKEN,
        "responses": _ok("`items`, `unread`")}})
    spec.path("/api/v1/notifications/read", operations={"post": {
        "summary": "Mark the caller's notifications read (these ids, or all without a body)", "security": TOKEN,
        "requestBody": {"required": False, "content": {"application/json": {"schema": "MarkRead"}}},
        "responses": _ok("`marked`")}})
    spec.path("/api/v1/settings", operations={
        "get": {"summary": "Runtime settings", "security": TOKEN, "responses": _ok("the settings")},
        "put": {"summary": "Change some runtime settings (audited)", "security": TOKEN,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": _ok("the settings after the change")}})
    line = [{"in": "path", "name": "line_number", "required": True, "schema": {"type": "string"}}]
    spec.path("/api/v1/settings/lines", operations={"get": {
        "summary": "Every line's override of the global policy", "security": TOKEN, "responses": _ok("`items`")}})
    spec.path("/api/v1/settings/lines/{line_number}", operations={
        "get": {"summary": "A line's override", "security": TOKEN, "parameters": line,
                "responses": _ok("the override")},
        "put": {"summary": "Set a line's `enabled`, `max_threshold` and/or `high_scores` (admin; audited)", "security": TOKEN,
                "parameters": line,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
                "responses": _ok("the override")},
        "delete": {"summary": "The line follows the global settings again (admin; audited)", "security": TOKEN,
                   "parameters": line, "responses": {"204": {"description": "removed"}, "default": ERROR}}})
    spec.path("/api/v1/settings/audit", operations={"get": {
        "summary": "Who changed which setting when", "security": TOKEN, "responses": _ok("`items`")}})
    spec.path("/api/v1/status", operations={"get": {
        "summary": "Each component's state with the details", "security": TOKEN, "responses": _ok("status")}})
    spec.path("/healthz", operations={"get": {
        "summary": "Each component's state, no details", "responses": _ok("ok or degraded")}})
    spec.path("/metrics", operations={"get": {
        "summary": "Prometheus metrics", "responses": {
            "200": {"description": "text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}})
    return spec.to_dict()


@bp.get("/api/openapi.json")
def openapi():
    return build_spec()
