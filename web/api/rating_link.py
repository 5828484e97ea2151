"""The token API's rating link (admins only): its settings (`/settings/rating-link`) and the do-not-contact
list (`/do-not-contact`). `connector.inbound.link` decides; these routes only translate."""
from __future__ import annotations

import re

from flask import Response, g

from connector.core.models import DoNotContact, Role
from connector.core.policy import PolicyConflict, PolicyError
from connector.inbound.link import contacts, settings as link_settings
from web.api.common import bp, json_body, require_token, services
from web.errors import ApiError


def _settings_json(settings: link_settings.LinkSettings, saved_at) -> dict:
    return {**settings.as_dict(), "saved_at": saved_at.isoformat() if saved_at else None}


@bp.get("/settings/rating-link")
@require_token(Role.ADMIN)
def get_rating_link():
    """The channel's settings in force (the defaults, the channel off, until an admin saves them)."""
    with services().db.reading() as session:
        return _settings_json(*link_settings.read(session))


@bp.patch("/settings/rating-link")
@require_token(Role.ADMIN)
def patch_rating_link():
    """Change some of the channel's settings (`lines` is replaced whole); audited. A value wrong on its own is
    422, values that do not fit together or the link's address (the sending hours, the template's length in
    an SMS) are 409; both name the field, and nothing is saved."""
    changes = json_body()
    if not isinstance(changes, dict) or not changes:
        raise ApiError(400, "expected a JSON object of settings to change")
    try:
        with services().db.transaction() as session:
            link_settings.save(session, changes, services().config.PUBLIC_BASE_URL, actor=g.principal.username)
    except PolicyConflict as exc:
        raise ApiError(409, str(exc)) from None
    except PolicyError as exc:
        raise ApiError(422, str(exc)) from None
    with services().db.reading() as session:
        return _settings_json(*link_settings.read(session))


def _contact_json(row) -> dict:
    return {"number": row.number, "source": row.source, "actor": row.actor, "added_at": row.added_at.isoformat()}


@bp.get("/do-not-contact")
@require_token(Role.ADMIN)
def get_do_not_contact():
    """Every number no rating request goes to, the newest first."""
    with services().db.reading() as session:
        return {"items": [_contact_json(row) for row in contacts.listed(session)]}


@bp.post("/do-not-contact")
@require_token(Role.ADMIN)
def post_do_not_contact():
    """`{"number": "+79161234567"}` (or 8..., 7...): 201 when added, 200 when it was already listed (nothing
    changes); audited."""
    body = json_body()
    if not isinstance(body, dict) or set(body) != {"number"} or not isinstance(body["number"], str) \
            or not re.fullmatch(contacts.NUMBER_PATTERN, body["number"]):
        raise ApiError(422, 'number: expected {"number": "+7XXXXXXXXXX"} (+7, 7 or 8 and ten digits)')
    try:
        with services().db.transaction() as session:
            added = contacts.add(session, body["number"], contacts.ContactSource.ADMIN, g.principal.username)
            answer = _contact_json(session.get(DoNotContact, contacts.normalised(body["number"])))
    except ValueError as exc:
        raise ApiError(422, f"number: {exc}") from None
    return answer, 201 if added else 200


@bp.delete("/do-not-contact/<number>")
@require_token(Role.ADMIN)
def delete_do_not_contact(number: str):
    """Take a number off the list (audited); 404 when it is not on it."""
    if not re.fullmatch(contacts.NUMBER_PATTERN, number):
        raise ApiError(404, "not on the list: a number is +7, 7 or 8 and ten digits")
    with services().db.transaction() as session:
        if not contacts.remove(session, number, actor=g.principal.username):
            raise ApiError(404, "not on the do-not-contact list")
    return Response(status=204)
