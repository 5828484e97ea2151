"""What every route of the token API shares: the `api` blueprint at /api/v1, the bearer-token check with its
throttle, and the JSON body's reading."""
from __future__ import annotations

import hmac
import math
from functools import wraps

from flask import Blueprint, current_app, g, request

from connector.core import throttle
from connector.core.models import Role
from connector.core.users import BOOTSTRAP_ADMIN, Principal, principal_for_token, read_then_write
from connector.core.validation import parse_json, text_problem
from web.errors import ApiError

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def services():
    return current_app.extensions["connector"]


def _principal_from_request() -> Principal:
    """Bearer auth: the bootstrap ADMIN_TOKEN, or a user's personal token (`connector users token`)."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise ApiError(401, "missing bearer token")
    # Wrong tokens are throttled per client address (connector.core.throttle): while its bucket holds, every
    # token from that address is refused unchecked, so guessing goes no faster than the delays allow.
    db = services().db
    keys = throttle.token_keys(throttle.client_address(request.remote_addr))
    wait = throttle.retry_after(db, keys)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(429, f"too many wrong tokens from this address: try again in {seconds} s",
                       headers={"Retry-After": str(seconds)})
    expected = services().config.ADMIN_TOKEN
    if expected and hmac.compare_digest(given.encode(), expected.encode()):
        return BOOTSTRAP_ADMIN
    if len(given) <= 128 and text_problem(given) is None:
        principal = read_then_write(db, lambda session: principal_for_token(session, given))
        if principal is not None:
            return principal
    throttle.record_failure(db, keys)
    raise ApiError(401, "unknown token")


def require_token(*roles: Role):
    """Any known token, or only these roles (403 for the others). The caller is `g.principal`."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.principal = _principal_from_request()
            if roles and g.principal.role not in roles:
                raise ApiError(403, f"{g.principal.role} may not do this")
            return view(*args, **kwargs)

        return wrapper

    return decorate


def require_json_type() -> None:
    if request.mimetype != "application/json":
        raise ApiError(415, f"expected application/json, got {request.mimetype or 'no content type'}")


def json_body() -> object:
    require_json_type()
    try:
        return parse_json(request.get_data(as_text=True), json_integers=True)
    except ValueError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
