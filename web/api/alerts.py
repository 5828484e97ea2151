"""The token API's alerts (admins only): their settings (`/settings/alerts`) and who gets which line's alerts
(`/alert-routes`). `connector.delivery.alerts.settings` and `connector.core.alert_people` decide and audit; these
routes only translate."""
from __future__ import annotations

from flask import Response, g
from marshmallow import RAISE, Schema, ValidationError, fields, validate
from sqlalchemy import select

from connector.core import alert_people
from connector.core.models import Role, User
from connector.core.policy import PolicyConflict, PolicyError
from connector.core.validation import INT32_MAX, LINE_MAX, Rule, first_error, storable_text
from connector.delivery.alerts import settings as alert_settings
from web.api.common import bp, json_body, require_token, services
from web.errors import ApiError

GROUP_PATTERN = r"^([0-9A-Za-z_-]{1,64})?$"  # alert_people.GROUP, or empty: every group


@bp.get("/settings/alerts")
@require_token(Role.ADMIN)
def get_alert_settings():
    """The alerts' settings in force (the defaults until an admin saves them)."""
    with services().db.reading() as session:
        return alert_settings.read(session).as_dict()


@bp.patch("/settings/alerts")
@require_token(Role.ADMIN)
def patch_alert_settings():
    """Change some of the alerts' settings; audited. A value out of its range is 422, naming the field; nothing
    is saved."""
    changes = json_body()
    if not isinstance(changes, dict) or not changes:
        raise ApiError(400, "expected a JSON object of settings to change")
    try:
        with services().db.transaction() as session:
            settings = alert_settings.save(session, changes, g.principal.username)
    except PolicyConflict as exc:
        raise ApiError(409, str(exc)) from None
    except PolicyError as exc:
        raise ApiError(422, str(exc)) from None
    return settings.as_dict()


class RouteSchema(Schema):
    """A route as the API takes it: the person by username; no line or group (null or empty): all of them."""

    class Meta:
        unknown = RAISE

    username = fields.String(required=True, validate=[validate.Length(min=1, max=64), storable_text])
    line = fields.String(load_default=None, allow_none=True, validate=[validate.Length(max=LINE_MAX), storable_text],
                         metadata={"description": "the PBX line's number; null or empty: all lines"})
    group = fields.String(load_default=None, allow_none=True, validate=[Rule(
        lambda group: None if not group or alert_people.GROUP.fullmatch(group) else "letters, digits, - and _",
        {"pattern": GROUP_PATTERN, "maxLength": 64})],
        metadata={"description": "the PBX's operator group id; null or empty: all groups"})


ROUTE_SCHEMA = RouteSchema()


def _route_json(route, username: str) -> dict:
    return {"id": route.id, "username": username, "line": route.line_number or None,
            "group": route.operator_group or None}


@bp.get("/alert-routes")
@require_token(Role.ADMIN)
def get_alert_routes():
    """Every route with its person, by person then line."""
    with services().db.reading() as session:
        return {"items": [_route_json(route, user.username) for route, user in alert_people.route_list(session)]}


@bp.post("/alert-routes")
@require_token(Role.ADMIN)
def post_alert_route():
    """Route a line's (and/or an operator group's) alerts to a supervisor or an admin: 201 when added, 200 when
    the same route was there (nothing changes); audited."""
    try:
        body = ROUTE_SCHEMA.load(json_body())
    except ValidationError as exc:
        raise ApiError(422, first_error(exc.messages)) from None
    with services().db.transaction() as session:
        user_id = session.scalar(select(User.id).where(User.username == body["username"], User.disabled.is_(False)))
        if user_id is None:
            raise ApiError(404, "no such user (or a disabled one)")
        try:
            route = alert_people.add_route(session, user_id, body["line"] or "", body["group"] or "",
                                           actor=g.principal.username)
        except alert_people.AlertPeopleError as exc:
            raise ApiError(409, str(exc)) from None
        added = route in session.new
        session.flush()
        answer = _route_json(route, body["username"])
    return answer, 201 if added else 200


@bp.delete("/alert-routes/<int:route_id>")
@require_token(Role.ADMIN)
def delete_alert_route(route_id: int):
    """Remove a route (audited); 404 when there is none."""
    if route_id > INT32_MAX:  # no such id can be stored; PostgreSQL would refuse to look for it
        raise ApiError(404, "no such route")
    with services().db.transaction() as session:
        if not alert_people.remove_route(session, route_id, actor=g.principal.username):
            raise ApiError(404, "no such route")
    return Response(status=204)
