"""Signed, expiring recording links: `GET /recordings/<call_id>?exp=..&sig=..`.

The CRM's player keeps our link. A recording the connector holds a copy of (made for a target that
downloads files, see `connector.inbound.recordings`) is served from it; any other play asks the PBX for a fresh
single-use link and redirects to it, when `connector.inbound.recordings.fetch_plan` says the PBX may be asked.
"""
from __future__ import annotations

import io
from datetime import datetime, timezone

from flask import Blueprint, current_app, redirect, request, send_file
from sqlalchemy import select, update

from connector.core.links import link_is_valid, record_file_name
from connector.core.models import Call, RecordingCopy
from connector.inbound.pbx import PbxUnavailable, PbxWrongRequest
from connector.inbound.recordings import Missing, NotReady, fetch_plan, unavailable_hold
from web.errors import ApiError

bp = Blueprint("recordings", __name__)


def _not_yet(seconds: float, why: str) -> ApiError:
    seconds = max(1, int(seconds + 0.999))
    return ApiError(503, f"{why}; retry in {seconds} s", headers={"Retry-After": str(seconds)})


@bp.get("/recordings/<path:call_id>")
def play(call_id: str):
    services = current_app.extensions["connector"]
    if not link_is_valid(services.config.SECRET_KEY, call_id, request.args.get("exp"), request.args.get("sig")):
        raise ApiError(403, "recording link is invalid or expired")
    now = datetime.now(timezone.utc)
    with services.db.reading() as session:
        row = session.execute(select(Call.recording_id, Call.recording_unavailable_until, Call.recording_stored_at,
                                     RecordingCopy.body, RecordingCopy.content_type)
                              .outerjoin(RecordingCopy, RecordingCopy.recording_id == Call.recording_id)
                              .where(Call.entry_id == call_id)).first()
    recording_id, unavailable_until, stored_at, body, content_type = row if row else (None,) * 5
    if body is not None:
        return send_file(io.BytesIO(body), mimetype=content_type, conditional=True,
                         download_name=record_file_name(call_id), max_age=0)
    plan = fetch_plan(recording_id, unavailable_until, stored_at, now)
    if isinstance(plan, NotReady):
        raise _not_yet(plan.seconds, plan.why)
    if isinstance(plan, Missing):
        raise ApiError(404, plan.why)
    try:
        # Until the file has surely settled in the PBX's cloud, a fetch may be answered "not found".
        url = services.pbx.recording_link(recording_id, probing=plan.probing)
    except PbxWrongRequest as exc:
        hold = unavailable_hold(plan.probing, services.pbx.probe_hold)
        with services.db.transaction() as session:
            session.execute(update(Call).where(Call.entry_id == call_id)
                            .values(recording_unavailable_until=now + hold))
        if plan.probing:  # announced moments ago: not stored yet, not missing
            raise _not_yet(hold.total_seconds(), "the PBX has not stored the recording yet") from None
        raise ApiError(404, f"recording not available: the PBX has no file for it (result {exc.result})") from None
    except PbxUnavailable as exc:
        seconds = max(1, int((exc.retry_at - now).total_seconds()))
        raise ApiError(503, f"the PBX cannot hand out recordings right now; retry in {seconds} s",
                       headers={"Retry-After": str(seconds)}) from None
    return redirect(url, code=302)
