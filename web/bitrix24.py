"""Bitrix24's events for the connector's local application: the admin pastes `<PUBLIC_BASE_URL>/bitrix24/app/<key>`
(shown on the settings page) as the application's handler; the portal posts `ONAPPINSTALL` there when the
application is installed, and its later events (connector.delivery.targets.bitrix24.install says what each does)."""
from __future__ import annotations

import logging

from flask import Blueprint, current_app, request

from connector.delivery.targets.bitrix24.install import MalformedEvent, WrongApplicationToken, key_matches
from web.errors import ApiError

log = logging.getLogger(__name__)

bp = Blueprint("bitrix24", __name__, url_prefix="/bitrix24")

# docs api-reference/common/events/on-app-install.md: "Data is sent as a POST request" (a PHP form).
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def store():
    services = current_app.extensions["connector"]
    if "bitrix24_install" not in current_app.extensions:
        from connector.delivery.targets.bitrix24.kit import build_bitrix24_install

        current_app.extensions["bitrix24_install"] = build_bitrix24_install(services.config, services.db)
    return current_app.extensions["bitrix24_install"]


@bp.post("/app/<key>")
def event(key: str):
    services = current_app.extensions["connector"]
    if not key_matches(services.config.SECRET_KEY, key):
        raise ApiError(404, "no such handler: copy its address from the settings page")
    if request.mimetype not in FORMS:
        raise ApiError(415, f"expected {FORMS[0]}, got {request.mimetype or 'no content type'}")
    try:
        outcome = store().receive(request.form)
    except WrongApplicationToken:
        log.warning("bitrix24: an event with a wrong application_token was refused")
        raise ApiError(401, "application_token does not match the installed application's") from None
    except MalformedEvent as exc:
        raise ApiError(400, str(exc)) from None
    return {"result": outcome.value}
