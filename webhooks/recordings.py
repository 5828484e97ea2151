"""Signed, expiring recording links: `GET /recordings/<call_id>?exp=..&sig=..`.

The CRM's player keeps our link; each play asks the PBX for a fresh single-use link
and redirects to it. Every wrong request counts towards MANGO's 2-minute block of the whole
account, so:
- a recording the PBX says it does not have is remembered for `UNAVAILABLE_FOR`: the player
  answers 404 at once instead of asking again;
- right after the PBX says a file is in its cloud (record/added), a fetch may still find none
  (the vendor warns of it under load). The first fetch waits `FIRST_FETCH_DELAY`; until `SETTLING`
  has passed a fetch is a "probing" request (sent only when no other wrong request is in the
  2-minute window, one at a time), and a miss is "not ready yet" (503 with Retry-After), never
  "the PBX lacks it".
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from flask import Blueprint, current_app, redirect, request
from sqlalchemy import select, update

from connector.links import link_is_valid
from connector.models import Call
from connector.pbx.mango_api import STRIKE_WINDOW, MangoUnavailable, MangoWrongRequest
from webhooks.errors import ApiError

bp = Blueprint("recordings", __name__)

UNAVAILABLE_FOR = timedelta(minutes=3)
FIRST_FETCH_DELAY = timedelta(seconds=45)
SETTLING = timedelta(minutes=5)


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
        row = session.execute(select(Call.recording_id, Call.recording_unavailable_until, Call.recording_stored_at)
                              .where(Call.entry_id == call_id)).first()
    recording_id, unavailable_until, stored_at = row if row else (None, None, None)
    if not recording_id:
        raise ApiError(404, "recording not ready yet: the PBX has not reported a recording in its cloud")
    settling = stored_at is not None and now < stored_at + SETTLING
    if stored_at is not None and now < stored_at + FIRST_FETCH_DELAY:
        raise _not_yet((stored_at + FIRST_FETCH_DELAY - now).total_seconds(),
                       "the PBX is still storing the recording")
    if unavailable_until and unavailable_until > now:
        if settling:
            raise _not_yet((unavailable_until - now).total_seconds(), "the PBX has not stored the recording yet")
        raise ApiError(404, "recording not available: the PBX had no file for it moments ago; try again later")
    try:
        # Until the file has surely settled in the PBX's cloud, a fetch may be answered "not found".
        url = services.pbx.recording_link(recording_id, probing=settling)
    except MangoWrongRequest as exc:
        hold = STRIKE_WINDOW if settling else UNAVAILABLE_FOR
        with services.db.transaction() as session:
            session.execute(update(Call).where(Call.entry_id == call_id)
                            .values(recording_unavailable_until=now + hold))
        if settling:  # announced moments ago: not stored yet, not missing
            raise _not_yet(hold.total_seconds(), "the PBX has not stored the recording yet") from None
        raise ApiError(404, f"recording not available: the PBX has no file for it (result {exc.result})") from None
    except MangoUnavailable as exc:
        seconds = max(1, int((exc.retry_at - now).total_seconds()))
        raise ApiError(503, f"the PBX cannot hand out recordings right now; retry in {seconds} s",
                       headers={"Retry-After": str(seconds)}) from None
    return redirect(url, code=302)
