"""The generic score intake: POST /api/v1/scores from any quality system, signed by Standard Webhooks with
SCORES_WEBHOOK_SECRET (machine-facing: no bearer token)."""
from __future__ import annotations

from datetime import datetime, timezone

from flask import request
from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from connector.core.metrics import CALLBACKS
from connector.core.policy import REFUSED, SCORE_LIMIT
from connector.core.validation import AwareUtcDateTime, StrictInteger, first_error, storable_lines, storable_text
from connector.inbound.ingest import ingest_api_score
from web.api.common import bp, json_body, require_json_type, services
from web.errors import ApiError


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
    require_json_type()
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
    document = json_body()
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
