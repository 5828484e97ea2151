"""MANGO OFFICE VPBX callbacks: verify, validate, store, then answer 200.

The PBX admin points the VPBX "API connector" at `<PUBLIC_BASE_URL>/mango`.
"""
from __future__ import annotations

from flask import Blueprint, current_app, request

from connector.ingest import ingest_pbx_message
from connector.pbx import mango
from webhooks.errors import ApiError

bp = Blueprint("mango", __name__, url_prefix="/mango")

FORM = "application/x-www-form-urlencoded"


def _verified_json() -> str:
    if request.mimetype != FORM:
        raise ApiError(415, f"expected {FORM}, got {request.mimetype or 'no content type'}")
    config = current_app.extensions["connector"].config
    return mango.verify(request.form, config.MANGO_API_KEY, config.MANGO_API_SALT)


@bp.post("/ping")
def ping():
    _verified_json()
    return {"success": True}


@bp.post("/<any(events, result):group>/<path:name>")
def event(group: str, name: str):
    services = current_app.extensions["connector"]
    message = mango.parse(f"{group}/{name}", _verified_json())
    with services.db.transaction() as session:
        ingest_pbx_message(session, services.ingest, message)
    return {"success": True}  # only after the commit above
