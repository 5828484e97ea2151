"""Signed, expiring recording links: `GET /recordings/<call_id>?exp=..&sig=..`.

The CRM's player keeps our link; each play asks the PBX for a fresh single-use link
and redirects to it.
"""
from __future__ import annotations

from flask import Blueprint, current_app, redirect, request

from connector.calls import get_call
from connector.links import link_is_valid
from connector.pbx.mango import RecordingUnavailable, fresh_recording_link
from webhooks.errors import ApiError

bp = Blueprint("recordings", __name__)


@bp.get("/recordings/<path:call_id>")
def play(call_id: str):
    services = current_app.extensions["connector"]
    config = services.config
    if not link_is_valid(config.SECRET_KEY, call_id, request.args.get("exp"), request.args.get("sig")):
        raise ApiError(403, "recording link is invalid or expired")
    with services.db.transaction() as session:
        call = get_call(session, call_id)
        recording_id = call.recording_id if call else None
    if not recording_id:
        raise ApiError(404, "recording not ready yet: the PBX has not reported a completed recording")
    try:
        url = fresh_recording_link(config.MANGO_API_URL, config.MANGO_API_KEY, config.MANGO_API_SALT, recording_id)
    except RecordingUnavailable as exc:
        raise ApiError(404 if exc.not_found else 502, str(exc)) from None
    return redirect(url, code=302)
