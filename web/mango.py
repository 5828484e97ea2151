"""MANGO OFFICE VPBX callbacks: verify, validate, store in the inbox, then answer 200.

The PBX admin points the VPBX "API connector" at `<PUBLIC_BASE_URL>/mango`.
"""
from __future__ import annotations

from flask import Blueprint, current_app, request

from connector.core.metrics import CALLBACKS
from connector.core.validation import text_problem
from connector.inbound.mango import callbacks as mango
from connector.inbound.mango.credentials import CALLBACK_SECONDS
from connector.inbound.pbx import SignatureRejected
from web.errors import ApiError

bp = Blueprint("mango", __name__, url_prefix="/mango")


def accept_doubled_slashes(wsgi_app):
    """The PBX's callbacks under `/mango//events/...` are taken as `/mango/events/...`. MANGO's manual gives
    the external system's address with a trailing slash (§2.1.1, `https://external-system.com/mango-api-connector/`)
    and does not say whether it adds one before `events/...`; the web framework would answer a doubled slash
    with a 308 redirect, which a PBX need not follow, and the event would be lost to a redirect."""

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(bp.url_prefix + "/") and "//" in path:
            environ["PATH_INFO"] = bp.url_prefix + "/" + "/".join(p for p in path[len(bp.url_prefix):].split("/") if p)
        return wsgi_app(environ, start_response)

    return app

# The PBX's own examples post urlencoded forms; public MANGO clients post multipart.
FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


def _verified_json() -> str:
    if request.mimetype not in FORMS:
        raise ApiError(415, f"expected {FORMS[0]} or {FORMS[1]}, got {request.mimetype or 'no content type'}")
    store = current_app.extensions["connector"].pbx_credentials  # the console's pair, or the environment's
    credentials = store.current(max_age=CALLBACK_SECONDS)  # no read on the way of a callback, as a rule
    try:
        return mango.verify(request.form, credentials.api_key, credentials.salt)
    except SignatureRejected:
        fresh = store.after_refusal()  # a pair saved in another process since: accepted at once
        if fresh is None or fresh == credentials:
            raise
        return mango.verify(request.form, fresh.api_key, fresh.salt)


@bp.post("/ping")
def ping():
    """The account's "check connection" button; it may post nothing at all, which is answered 200
    and stores nothing. A ping that carries fields is verified like any event."""
    if request.content_length or request.mimetype:
        if request.mimetype in FORMS and not request.form:
            return {"success": True}
        _verified_json()
    return {"success": True}


MAX_KIND = 64  # inbound_events.kind


@bp.post("/<any(events, result):group>/<path:name>")
def event(group: str, name: str):
    services = current_app.extensions["connector"]
    kind = f"{group}/{name}"
    if len(kind) > MAX_KIND or text_problem(kind) or not kind.isprintable():
        raise ApiError(400, f"path: the event name must be printable and at most {MAX_KIND} characters")
    message = mango.parse(kind, _verified_json())
    stored = services.intake.submit("mango", message)  # committed, with others waiting at the same moment
    # Only after the commit above. The PBX reads only the status: a duplicate is acknowledged too.
    if not stored:
        CALLBACKS.labels("mango", "duplicate").inc()
        return {"success": True, "duplicate": True}
    CALLBACKS.labels("mango", "accepted").inc()
    return {"success": True}  # the worker applies it to its call
