"""The caller's notifications: the page (all or only the unread), and marking them read."""
from __future__ import annotations

from flask import abort, g, redirect, render_template, request, url_for

from connector.core.notifications import mark_read, newest_notification, notification_page, unread_count
from webui.common import bp, login_required, services
from webui.forms import MarkReadForm


NOTIFICATIONS_PER_PAGE = 50


def _positive_int(name: str) -> int | None:
    """A page argument that must be a positive whole number (400 otherwise), or None when absent."""
    raw = request.args.get(name, "")
    if raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 2 ** 31:
        abort(400)
    return int(raw)


@bp.get("/notifications")
@login_required()
def notifications():
    """The caller's notifications, newest first, a page at a time (all or only the unread), each with its
    call's operator and scores; nothing is marked read by opening it."""
    before = _positive_int("before")
    unread_only = request.args.get("unread") == "1"
    with services().db.reading() as s:
        page = notification_page(s, g.principal, before=before, per_page=NOTIFICATIONS_PER_PAGE,
                                 unread_only=unread_only)
        unread = unread_count(s, g.principal)
        newest = newest_notification(s, g.principal)
        items = [{"call_id": n.call.entry_id, "started_at": n.call.created_at, "kind": n.kind, "read": n.read,
                  "at": n.created_at,
                  "operator": n.call.operator_extension, "customer_score": n.call.customer_score,
                  "supervisor_score": n.call.supervisor_score, "tagged": n.call.decision_tag is not None}
                 for n in page.items]
    scope = {"unread": 1} if unread_only else {}
    return render_template("notifications.html", items=items, page=page, unread_total=unread,
                           unread_only=unread_only,
                           newer_link=url_for(".notifications", **scope) if before is not None else None,
                           older_link=url_for(".notifications", before=page.older, **scope) if page.older else None,
                           read_form=MarkReadForm(formdata=None, up_to=newest))


@bp.post("/notifications/read")
@login_required()
def read_all_notifications():
    """Every notification up to the newest the page showed (a later one stays unread)."""
    form = MarkReadForm()
    if not form.validate_on_submit():
        abort(400)
    up_to = form.up_to.data or ""
    if up_to and not (up_to.isascii() and up_to.isdigit() and int(up_to) < 2 ** 63):
        abort(400)
    with services().db.transaction() as s:
        mark_read(s, g.principal, up_to=int(up_to) if up_to else None)
    return redirect(url_for(".notifications"))
