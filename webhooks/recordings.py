"""Signed, expiring recording links: `GET /recordings/<call_id>?exp=..&sig=..`.

The CRM's player keeps our link; each play asks the PBX for a fresh single-use link
and redirects to it. A recording the PBX says it does not have is remembered for
`UNAVAILABLE_FOR`: every wrong request counts towards MANGO's 2-minute block of the
whole account, so the player answers 404 at once instead of asking again.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, redirect, request
from sqlalchemy import select, update

from connector.links import link_is_valid
from connector.models import Call
from connector.pbx.mango_api import MangoUnavailable, MangoWrongRequest
from webhooks.errors import ApiError

bp = Blueprint("recordings", __name__)

UNAVAILABLE_FOR = timedelta(minutes=3)


@bp.get("/recordings/<path:call_id>")
def play(call_id: str):
    services = current_app.extensions["connector"]
    if not link_is_valid(services.config.SECRET_KEY, call_id, request.args.get("exp"), request.args.get("sig")):
        raise ApiError(403, "recording link is invalid or expired")
    now = datetime.now(timezone.utc)
    with services.db.transaction() as session:
        row = session.execute(select(Call.recording_id, Call.recording_unavailable_until)
                              .where(Call.entry_id == call_id)).first()
    recording_id, unavailable_until = row if row else (None, None)
    if not recording_id:
        raise ApiError(404, "recording not ready yet: the PBX has not reported a recording in its cloud")
    if unavailable_until and unavailable_until > now:
        raise ApiError(404, "recording not available: the PBX had no file for it moments ago; try again later")
    try:
        url = services.pbx.recording_link(recording_id)
    except MangoWrongRequest as exc:
        with services.db.transaction() as session:
            session.execute(update(Call).where(Call.entry_id == call_id)
                            .values(recording_unavailable_until=now + UNAVAILABLE_FOR))
        raise ApiError(404, f"recording not available: the PBX has no file for it (result {exc.result})") from None
    except MangoUnavailable as exc:
        seconds = max(1, int((exc.retry_at - now).total_seconds()))
        raise ApiError(503, f"the PBX cannot hand out recordings right now; retry in {seconds} s",
                       headers={"Retry-After": str(seconds)}) from None
    return redirect(url, code=302)
