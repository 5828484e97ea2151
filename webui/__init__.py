"""The QA console: login, calls with the player and reviews, exports. Pages for people, beside the JSON API
for machines; both read through `connector` and follow the same role rules."""
from __future__ import annotations

import csv
import io
import math
import secrets
from datetime import timedelta
from functools import wraps
from pathlib import Path
from urllib.parse import urlsplit

from flask import (Blueprint, Response, abort, current_app, g, redirect, render_template, request, session,
                   stream_with_context, url_for)
from flask_babel import Babel, get_locale, gettext as _
from markupsafe import escape
from marshmallow import ValidationError

from connector.calls import CallFilter, Cursor, Sort, call_json, call_timeline, find_calls, get_visible_call
from connector.cells import csv_row, xlsx_row
from connector.exports import COLUMNS, call_rows
from connector.links import recording_link
from connector.models import JobStatus, Role
from connector.notifications import mark_read, notifications_for, unread_count
from connector.quality import marks_json
from connector.queries import CALL_QUERY_SCHEMA, REPORT_QUERY_SCHEMA
from connector.reports import By, ReportFilter, daily, distribution, report
from connector.reviews import add_review
from connector import outbox, status
from connector.runtime_settings import (audit_trail, current_policies, current_policy, delete_line_override,
                                       update_line_override, update_policy)
from connector.threshold import PolicyError
from connector import throttle
from connector.users import (Principal, UserError, end_session, list_tokens, list_users, login as check_login,
                             principal_for_session, read_then_write, revoke_token, start_session, token_state,
                             unlock)
from connector.validation import first_error
from webui import charts
from webui.forms import (HIGH_SCORES_CHOICES, LineOverrideForm, LoginForm, LogoutForm, MarkReadForm, ReplayForm,
                         ReviewForm, SettingsForm, UnlockForm)

bp = Blueprint("console", __name__, template_folder="templates")

PLAYER_LINK_SECONDS = 3600
DEVICE_COOKIE = "qa_device"  # "this browser logged in as <user> before": exempts it from others' lockouts
DEVICE_DAYS = 90


def services():
    return current_app.extensions["connector"]


LANGUAGES = ("ru", "en")
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


def _locale() -> str:
    """Russian unless the user asked for English (`?lang=en`, remembered in the session)."""
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
    return session.get("lang", LANGUAGES[0])


def configure(app) -> None:
    """Session cookies: HttpOnly, SameSite=Lax, Secure behind HTTPS. The cookie only names a server-side
    session (`console_sessions`), which ends at logout, after SESSION_IDLE_HOURS without a request, and
    SESSION_MAX_HOURS after the login. The UI speaks Russian, and English on request (Flask-Babel,
    catalogues in webui/translations)."""
    Babel(app, locale_selector=_locale, default_locale=LANGUAGES[0],
          default_translation_directories=str(TRANSLATIONS))
    config = services_config(app)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.PUBLIC_BASE_URL.startswith("https://"),
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=config.SESSION_MAX_HOURS), WTF_CSRF_TIME_LIMIT=None)
    app.wsgi_app = refuse_logins_when_busy(app.wsgi_app)


BUSY_BODY = ("<!doctype html><meta charset=\"utf-8\"><p role=\"alert\">Сервер проверяет другие входы: повторите "
             "через секунду. The server is checking other logins: try again in a second.</p>").encode()


def refuse_logins_when_busy(wsgi_app):
    """While this process's places for password checks are taken, a login post is answered 503 before Flask
    does anything (no session, no form, no template): under a flood most posts end here, in a fraction of a
    millisecond, so the PBX's callbacks queue behind little."""
    from connector.users import LOGINS_ADMITTED

    def app(environ, start_response):
        if (LOGINS_ADMITTED.full and environ.get("REQUEST_METHOD") == "POST"
                and environ.get("PATH_INFO") == "/login"):
            start_response("503 Service Unavailable", [("Content-Type", "text/html; charset=utf-8"),
                                                       ("Retry-After", "1"), ("Content-Length", str(len(BUSY_BODY)))])
            return [BUSY_BODY]
        return wsgi_app(environ, start_response)

    return app


def services_config(app):
    return app.extensions["connector"].config


def login_required(*roles: Role):
    """A page for logged-in users (these roles only: 403 for the others). The user is `g.principal`."""

    def decorate(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            principal = None
            if isinstance(session.get("sid"), str):
                config = services().config
                sid = session["sid"]
                principal = read_then_write(services().db, lambda s: principal_for_session(
                    s, sid, idle_hours=config.SESSION_IDLE_HOURS, max_hours=config.SESSION_MAX_HOURS))
            if principal is None:  # never logged in, logged out, expired, or disabled since
                session.clear()
                return redirect(url_for(".login", next=request.full_path.rstrip("?")))
            if roles and principal.role not in roles:
                abort(403)
            g.principal = principal
            return view(*args, **kwargs)

        return wrapper

    return decorate


@bp.app_context_processor
def _layout():
    principal: Principal | None = g.get("principal")
    unread = 0
    if principal is not None and principal.user_id is not None:
        with services().db.reading() as s:
            unread = unread_count(s, principal)
    role_names = {Role.ADMIN: _("администратор"), Role.SUPERVISOR: _("супервизор"), Role.OPERATOR: _("оператор")}
    return {"me": principal, "unread": unread, "logout_form": LogoutForm(), "Role": Role, "role_names": role_names,
            "locale": str(get_locale())}


def _safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not send people elsewhere. Browsers read a backslash
    as a slash (`/\\evil.example` is another host), and a control character (CR, LF) would split the
    redirect's header: either sends people to the call list instead."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target \
            and target.isprintable() and not urlsplit(target).netloc:
        return target
    return url_for(".calls")


@bp.get("/")
def index():
    return redirect(url_for(".calls") if "sid" in session else url_for(".login"))


def _device_signer():
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(current_app.secret_key, salt="console-device")


def _device_for(username: str) -> str | None:
    """The id of this browser's device cookie when it was given to `username` at a login, else None."""
    raw = request.cookies.get(DEVICE_COOKIE)
    if not raw:
        return None
    from itsdangerous import BadData

    try:
        owner, device = _device_signer().loads(raw, max_age=DEVICE_DAYS * 86400)
    except (BadData, ValueError, TypeError):
        return None
    return device if owner == username and isinstance(device, str) else None


def _refusal(message: str, status: int, retry_after: int) -> Response:
    """A login refused unchecked (throttled or busy): a few bytes and no template, since a flood gets this
    answer at the rate it asks, and every millisecond here is one the PBX's callbacks wait behind it."""
    body = (f'<!doctype html><html lang="{get_locale()}"><meta charset="utf-8"><title>{escape(message)}</title>'
            f'<p role="alert" class="error">{escape(message)}</p><p><a href="{url_for(".login")}">'
            f'{escape(_("Войти"))}</a></p></html>')
    return Response(body, status, {"Retry-After": str(retry_after)}, mimetype="text/html")


@bp.route("/login", methods=["GET", "POST"])
def login():
    form = LoginForm()
    error, status = None, 200
    if form.validate_on_submit():
        username = form.username.data
        device = _device_for(username)
        address = throttle.client_address(request.remote_addr)
        outcome = check_login(services().db, username, form.password.data, address, device)
        if outcome.principal is not None:
            with services().db.transaction() as s:
                sid = start_session(s, outcome.principal, address, max_hours=services().config.SESSION_MAX_HOURS)
            session.clear()  # a new session id at every login: nothing from before survives it
            session.permanent = True
            session["sid"] = sid
            response = redirect(_safe_next(request.args.get("next")))
            response.set_cookie(DEVICE_COOKIE, _device_signer().dumps([username, device or secrets.token_urlsafe(16)]),
                                max_age=DEVICE_DAYS * 86400, path=url_for(".login"), httponly=True, samesite="Lax",
                                secure=current_app.config["SESSION_COOKIE_SECURE"])
            return response
        if outcome.retry_after:
            wait = max(1, math.ceil(outcome.retry_after))
            return _refusal(_("Слишком много неудачных попыток входа: повторите через %(seconds)s с", seconds=wait),
                            429, wait)
        if outcome.busy:
            return _refusal(_("Сервер проверяет другие входы: повторите через секунду"), 503, 1)
        error, status = _("Неверное имя пользователя или пароль"), 401
    elif request.method == "POST":
        error, status = (_("Форма устарела или подделана: войдите ещё раз") if form.csrf_token.errors else
                         _("Введите имя пользователя и пароль")), 401
    return render_template("login.html", form=form, error=error), status


@bp.post("/logout")
def logout():
    if not LogoutForm().validate_on_submit():
        abort(400)
    if isinstance(session.get("sid"), str):
        with services().db.transaction() as s:
            end_session(s, session["sid"])  # the cookie, replayed, now finds nothing
    session.clear()
    return redirect(url_for(".login"))


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
                           fmt=lambda d: d.strftime("%Y-%m-%d %H:%M") if d else "—")


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
    except UserError as exc:
        return Response(str(exc), 422, mimetype="text/plain")
    throttle.forget_cached(services().db, keys)
    return redirect(url_for(".users_page"))


def _call_filter() -> tuple[CallFilter, Sort, dict, Cursor | None]:
    raw = {k: v for k, v in request.args.items() if v != ""}
    try:
        args = CALL_QUERY_SCHEMA.load(raw)
        sort = args.pop("sort")
        after = args.pop("after", None)
    except ValidationError as exc:
        abort(Response(first_error(exc.messages), 400, mimetype="text/plain"))
    args.pop("page", None)
    args.pop("per_page", None)
    return CallFilter(**args, visible_extensions=g.principal.visible_extensions), sort, raw, after


@bp.get("/calls")
@login_required()
def calls():
    flt, sort, raw, after = _call_filter()
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
        found = find_calls(s, flt, per_page=25, after=after, sort=sort)
        items = [call_json(c) for c in found.calls]
    query = {k: v for k, v in raw.items() if k != "after"}
    next_link = url_for(".calls", after=found.next_cursor.encode(), **query) if found.next_cursor else None
    low_scores = url_for(".calls", score_lte=policy.max_threshold - 1)
    return render_template("calls.html", items=items, found=found, query=query, next_link=next_link,
                           low_scores=low_scores, policy=policy, sort=sort)


@bp.get("/notifications")
@login_required()
def notifications():
    with services().db.reading() as s:
        items = [{"call_id": n.call.entry_id, "kind": n.kind, "read": n.read, "at": n.created_at.isoformat()}
                 for n in notifications_for(s, g.principal)]
    return render_template("notifications.html", items=items, read_form=MarkReadForm())


@bp.get("/calls/export.csv")
@login_required()
def export_csv():
    flt, sort, _raw, _after = _call_filter()

    def generate():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for row in call_rows(services().db, flt, sort):  # one short read per page: nothing held while sending
            writer.writerow(csv_row(row))  # no control characters, no formulas (connector.cells)
            if out.tell() > 64_000:
                yield out.getvalue()
                out.seek(0)
                out.truncate()
        yield out.getvalue()

    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=calls.csv"})


@bp.get("/calls/export.xlsx")
@login_required()
def export_xlsx():
    from openpyxl import Workbook

    flt, sort, _raw, _after = _call_filter()
    book = Workbook(write_only=True)  # rows go straight to the file: memory stays flat
    sheet = book.create_sheet("calls")
    sheet.append(COLUMNS)
    for row in call_rows(services().db, flt, sort):  # one short read per page
        sheet.append(xlsx_row(sheet, row))  # no control characters, no formulas (connector.cells)
    return _xlsx(book, "calls.xlsx")


def _report_filter() -> tuple[ReportFilter, dict]:
    raw = {k: v for k, v in request.args.items() if v != ""}
    try:
        args = REPORT_QUERY_SCHEMA.load(raw)
    except ValidationError as exc:
        abort(Response(first_error(exc.messages), 400, mimetype="text/plain"))
    return ReportFilter(**args, visible_extensions=g.principal.visible_extensions), raw


@bp.get("/reports")
@login_required()
def reports():
    flt, raw = _report_filter()
    with services().db.reading() as s:  # one snapshot: the tables and charts agree
        policy = current_policy(s, services().ingest.initial_policy)
        operators, lines = report(s, By.OPERATOR, flt, policy), report(s, By.LINE, flt, policy)
        scores, days = distribution(s, flt), daily(s, flt, policy)
    return render_template("reports.html", query=raw, operators=operators, lines=lines, policy=policy,
                           distribution=charts.bars(scores), days=days, W=charts.WIDTH, H=charts.HEIGHT,
                           trend_points=charts.line([d["average"] for d in days], policy.scale_min,
                                                    policy.scale_max))


@bp.get("/reports/export.xlsx")
@login_required()
def export_report_xlsx():
    from openpyxl import Workbook

    flt, _raw = _report_filter()
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
        sheets = {"operators": report(s, By.OPERATOR, flt, policy), "lines": report(s, By.LINE, flt, policy)}
    book = Workbook(write_only=True)
    for name, body in sheets.items():
        sheet = book.create_sheet(name)
        rows = body["items"] + [body["totals"]]
        columns = list(body["totals"])
        sheet.append(columns)
        for row in rows:
            sheet.append(xlsx_row(sheet, [row[c] for c in columns]))
    return _xlsx(book, "report.xlsx")


def _xlsx(book, filename: str) -> Response:
    out = io.BytesIO()
    book.save(out)
    return Response(out.getvalue(), mimetype="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


POLICY_FIELDS = ("enabled", "scale_min", "scale_max", "max_threshold", "tag_template", "score_text_template",
                 "rating_window_days", "lock_score", "high_scores")


@bp.route("/settings", methods=["GET", "POST"])
@login_required(Role.ADMIN)
def settings():
    """The policy, each error beside its field and nothing half-saved; the connections' state; dead
    deliveries with a replay button."""
    initial = services().ingest.initial_policy
    form = SettingsForm()
    errors: dict[str, str] = {}
    saved = False
    if request.method == "POST":
        if not form.validate_on_submit():
            errors = {name: field.errors[0] for name, field in form._fields.items() if field.errors}
            if form.csrf_token.errors:
                errors["form"] = _("Форма устарела или подделана: откройте страницу заново")
        else:
            changes = {name: form[name].data for name in POLICY_FIELDS}
            errors = {name: _("обязательное поле") for name, value in changes.items() if value is None}
            if not errors:
                try:
                    with services().db.transaction() as s:  # a refused change rolls back whole
                        update_policy(s, initial, changes, actor=g.principal.username)
                    saved = True
                except PolicyError as exc:
                    errors[exc.field] = exc.message
    with services().db.reading() as s:
        policies = current_policies(s, initial)
        policy = policies.base
        state = {**status.details(s, services().config.targets), **status.last_activity(s)}
        dead = [{"id": j.id, "key": j.key, "error": j.last_error, "at": j.updated_at.isoformat()}
                for j in outbox.list_jobs(s, JobStatus.DEAD, limit=50)]
    if request.method == "GET" or saved:
        form = SettingsForm(formdata=None, data=policy.as_dict())
    return render_template("settings.html", form=form, errors=errors, saved=saved, state=state, dead=dead,
                           replay_form=ReplayForm(), fields=POLICY_FIELDS, lines=sorted(policies.lines.items()),
                           line_form=LineOverrideForm(formdata=None), high_scores_labels={c.value: c.label for c in HIGH_SCORES_CHOICES}), \
        (422 if errors else 200)


@bp.post("/settings/lines")
@login_required(Role.ADMIN)
def save_line():
    """Set a line's override; the line keeps only the fields given (an empty threshold: the global one)."""
    form = LineOverrideForm()
    if not form.validate_on_submit():
        if form.line_number.errors and not form.csrf_token.errors:  # said in the page's language
            return Response(str(form.line_number.errors[0]), 400, mimetype="text/plain")
        abort(400)
    override = {"enabled": bool(form.enabled.data)}
    if form.max_threshold.data is not None:
        override["max_threshold"] = form.max_threshold.data
    if form.high_scores.data:  # empty: the global rule
        override["high_scores"] = form.high_scores.data
    line = form.line_number.data.strip()
    try:
        with services().db.transaction() as s:
            update_line_override(s, services().ingest.initial_policy, line, override, actor=g.principal.username)
    except PolicyError as exc:
        return Response(f"{line}: {exc}", 422, mimetype="text/plain")
    return redirect(url_for(".settings"))


@bp.post("/settings/lines/<line_number>/delete")
@login_required(Role.ADMIN)
def delete_line(line_number: str):
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)
    with services().db.transaction() as s:
        delete_line_override(s, line_number, actor=g.principal.username)
    return redirect(url_for(".settings"))


@bp.post("/settings/replay")
@login_required(Role.ADMIN)
def replay_dead():
    """Every dead delivery back in the queue with a fresh retry budget (`connector deliveries replay`)."""
    if not ReplayForm().validate_on_submit():
        abort(400)
    with services().db.transaction() as s:
        ids = outbox.jobs_to_replay(s, JobStatus.DEAD, None)
    plannings = {target.name: target for target in services().ingest.targets}
    for job_id in ids:
        with services().db.transaction() as s:
            outbox.replay(s, job_id, plannings)
    return redirect(url_for(".settings"))


@bp.get("/audit")
@login_required(Role.ADMIN)
def audit():
    with services().db.reading() as s:
        rows = [{"actor": r.actor, "at": r.changed_at.isoformat(), "scope": r.scope,
                 "changes": {k: (r.before.get(k), v) for k, v in r.after.items() if r.before.get(k) != v}}
                for r in audit_trail(s, limit=200)]
    return render_template("audit.html", rows=rows)


def _visible_call(s, call_id: str):
    call = get_visible_call(s, call_id, g.principal)
    if call is None:
        abort(404)
    return call


@bp.get("/calls/<path:call_id>")
@login_required()
def call_page(call_id: str):
    return _render_call(call_id, ReviewForm())


def _render_call(call_id: str, form: ReviewForm, error: str | None = None, status: int = 200):
    config = services().config
    with services().db.reading() as s:
        call = _visible_call(s, call_id)
        data = call_json(call, with_history=True, marks=marks_json(s, call))
        timeline = call_timeline(s, call)
        policy = current_policy(s, services().ingest.initial_policy)
        unread_here = unread_count(s, g.principal, call=call)  # read by the page's button, never by opening it
    player = (recording_link("", config.SECRET_KEY, call_id, ttl=PLAYER_LINK_SECONDS)
              if data["recording_id"] else None)
    return render_template("call.html", call=data, player=player, form=form, error=error, policy=policy,
                           timeline=timeline, unread_here=unread_here, read_form=MarkReadForm()), status


@bp.post("/calls/<path:call_id>/read")
@login_required()
def read_call_notifications(call_id: str):
    if not MarkReadForm().validate_on_submit():
        abort(400)
    with services().db.transaction() as s:
        mark_read(s, g.principal, call=_visible_call(s, call_id))
    return redirect(url_for(".call_page", call_id=call_id))


@bp.post("/notifications/read")
@login_required()
def read_all_notifications():
    if not MarkReadForm().validate_on_submit():
        abort(400)
    with services().db.transaction() as s:
        mark_read(s, g.principal)
    return redirect(url_for(".notifications"))


@bp.post("/calls/<path:call_id>/reviews")
@login_required(Role.ADMIN, Role.SUPERVISOR)
def review(call_id: str):
    form = ReviewForm()
    if not form.validate_on_submit():
        problem = _("Форма устарела или подделана") if form.csrf_token.errors else \
            form.comment.errors[0] if form.comment.errors else _("Укажите оценку числом")
        return _render_call(call_id, form, problem, 400)
    with services().db.transaction() as s:
        call = _visible_call(s, call_id)
        try:
            add_review(s, services().ingest, call, g.principal, form.score.data,
                       (form.comment.data or "").strip() or None)
        except ValueError as exc:  # checked before anything is written
            error = str(exc)
        else:
            error = None
    if error:
        return _render_call(call_id, form, error, 422)
    return redirect(url_for(".call_page", call_id=call_id))
