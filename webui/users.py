"""People (admin only): the accounts, their personal tokens (revocable one by one) and the login throttle
(liftable)."""
from __future__ import annotations

from flask import abort, g, redirect, render_template, url_for
from flask_babel import gettext as _

from connector.core import throttle
from connector.core.models import Role
from connector.core.users import UserError, list_tokens, list_users, revoke_token, token_state, unlock
from webui.common import bp, login_required, services, when
from webui.forms import ReplayForm, UnlockForm


@bp.get("/users")
@login_required(Role.ADMIN)
def users_page():
    """People, their personal tokens (revocable one by one) and the login throttle (liftable)."""
    at = throttle.now()
    with services().db.transaction() as s:
        people = [{"name": u.username, "role": u.role, "disabled": u.disabled,
                   "extensions": ", ".join(u.extensions or [])} for u in list_users(s)]
        tokens = [{"id": t.id, "user": owner, "name": t.name or "", "created": t.created_at, "expires": t.expires_at,
                   "used": t.last_used_at, "state": token_state(t, at)} for t, owner in list_tokens(s)]
        buckets = [{"key": b.key, "failures": b.failures, "last": b.last_failed_at, "locked": b.locked,
                    "until": b.blocked_until if b.blocked_until and b.blocked_until > at else None,
                    **_bucket_target(b.key)}
                   for b in throttle.active(s)]
    return render_template("users.html", people=people, tokens=tokens, buckets=buckets, form=UnlockForm(),
                           fmt=when)


def _bucket_target(key: str) -> dict:
    """What an admin lifts to clear a bucket: the account, or the address."""
    kind, _, rest = key.partition(":")
    if kind in ("addr", "token"):
        return {"user": "", "address": rest}
    if kind == "user":
        return {"user": rest, "address": ""}
    user, _, where = rest.rpartition(" ")
    return {"user": user, "address": where if kind == "pair" else ""}


@bp.post("/users/tokens/<int:token_id>/revoke")
@login_required(Role.ADMIN)
def revoke_token_page(token_id: int):
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)
    try:
        with services().db.transaction() as s:
            revoke_token(s, token_id, actor=g.principal.username)
    except UserError:
        abort(404)
    return redirect(url_for(".users_page"))


@bp.post("/users/unlock")
@login_required(Role.ADMIN)
def unlock_page():
    form = UnlockForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        with services().db.transaction() as s:
            keys = unlock(s, actor=g.principal.username, username=form.username.data or None,
                          address=form.address.data or None)
    except UserError:  # only a forged post: the page's buttons always name a user or an address
        abort(422, description=_("Не удалось снять блокировку: укажите пользователя или IP-адрес."))
    throttle.forget_cached(services().db, keys)
    return redirect(url_for(".users_page"))
