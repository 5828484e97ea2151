"""The token API's notifications: the caller's own, a page at a time, and marking them read."""
from __future__ import annotations

from flask import g, request, url_for
from marshmallow import RAISE, Schema, ValidationError, fields, validate

from connector.core.notifications import mark_read, notification_page, unread_count
from connector.core.validation import INT32_MAX, StrictInteger, first_error
from web.api.common import bp, json_body, require_token, services
from web.errors import ApiError


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
    body = json_body() if request.get_data() else {}
    try:
        ids = MARK_READ_SCHEMA.load(body)["ids"]
    except ValidationError as exc:
        raise ApiError(422, first_error(exc.messages)) from None
    with services().db.transaction() as session:
        return {"marked": mark_read(session, g.principal, ids)}
