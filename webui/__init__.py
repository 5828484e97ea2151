"""The QA console: login, calls with the player and reviews, exports. Pages for people, beside the JSON API
for machines; both read through `connector` and follow the same role rules."""
from __future__ import annotations

import io
import math
import secrets
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from functools import wraps
from pathlib import Path
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from flask import (Blueprint, Response, abort, current_app, g, redirect, render_template, request, session,
                   url_for)
from flask_babel import Babel, format_datetime, get_locale, gettext as _, lazy_gettext as _l
from markupsafe import escape
from marshmallow import ValidationError
from werkzeug.exceptions import BadRequest, HTTPException

from connector.console import status, xlsx
from connector.console.exports import COLUMNS, FORMATS, Layout, Separator
from connector.console.queries import CALL_QUERY_SCHEMA, REPORT_QUERY_SCHEMA
from connector.console.reports import ReportFilter
from connector.console.reviews import add_review
from connector.core.calls import CallFilter, Cursor, Sort, call_json, call_timeline, find_calls, get_visible_call
from connector.core.links import recording_link
from connector.core.models import DeliveryStatus, JobStatus, Role
from connector.core.notifications import mark_read, newest_notification, notification_page, unread_count
from connector.delivery import outbox
from connector.inbound.quality import marks_json
from connector.core.runtime_settings import (audit_trail, current_policies, current_policy, delete_line_override,
                                       update_line_override, update_policy)
from connector.core import throttle
from connector.core.policy import PolicyError
from connector.core.users import (Principal, UserError, end_session, list_tokens, list_users, login as check_login,
                             principal_for_session, read_then_write, revoke_token, start_session, token_state,
                             unlock)
from webui import charts, labels
from webui.problems import filter_problem, policy_problem
from webui.forms import (LineOverrideForm, LoginForm, LogoutForm, MarkReadForm, ReplayForm,
                         ReviewForm, SettingsForm, UnlockForm)

bp = Blueprint("console", __name__, template_folder="templates")
for _name, _function in labels.FILTERS.items():  # every code a page shows goes through one of these
    bp.add_app_template_filter(_function, _name)

PLAYER_LINK_SECONDS = 3600
DEVICE_COOKIE = "qa_device"  # "this browser logged in as <user> before": exempts it from others' lockouts
DEVICE_DAYS = 90


def services():
    return current_app.extensions["connector"]


LANGUAGES = ("ru", "en")
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


PAGE_ARGS = ("lang", "sep")  # the page's own query arguments: never a filter


def _locale() -> str:
    """Russian unless the user asked for English (`?lang=en` on any page, remembered in the session)."""
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
    return session.get("lang", LANGUAGES[0])


@bp.before_request
def _remember_language():
    """A language asked for is kept even when the page answers with a redirect (to the login, say)."""
    _locale()


def _clear_session() -> None:
    """Forget who is logged in, keeping the language: it belongs to the browser, not to the login."""
    language = session.get("lang")
    session.clear()
    if language in LANGUAGES:
        session["lang"] = language


def _with_language(code: str) -> str:
    """This page in another language, with the same query (filters, a login's `next`). After a refused
    post the page is the one the form came from (`g.page_url`)."""
    base = g.get("page_url")
    if base is None:
        # Re-quoted, and never "//host" or "/\\host": an unknown address's page must not link to another site.
        path = quote("/" + request.path.lstrip("/\\"), safe="/:@!$&'()*+,;=-._~")
        base = request.script_root + path if request.method == "GET" else url_for("console.calls")
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in (*PAGE_ARGS, "line_saved")]
    else:
        args = []
    return f"{base}{'&' if '?' in base else '?'}{urlencode([*args, ('lang', code)])}"


def configure(app) -> None:
    """Session cookies: HttpOnly, SameSite=Lax, Secure behind HTTPS. The cookie only names a server-side
    session (`console_sessions`), which ends at logout, after SESSION_IDLE_HOURS without a request, and
    SESSION_MAX_HOURS after the login. The UI speaks Russian, and English on request (Flask-Babel,
    catalogues in webui/translations)."""
    config = services_config(app)
    Babel(app, locale_selector=_locale, default_locale=LANGUAGES[0], default_timezone=config.CONSOLE_TIMEZONE,
          timezone_selector=lambda: time_zone.selected_zone(),  # the account's zone (webui.time_zone)
          default_translation_directories=str(TRANSLATIONS))
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_SECURE=config.PUBLIC_BASE_URL.startswith("https://"),
                      PERMANENT_SESSION_LIFETIME=timedelta(hours=config.SESSION_MAX_HOURS), WTF_CSRF_TIME_LIMIT=None)
    app.wsgi_app = refuse_logins_early(app.wsgi_app, app.extensions["connector"].db)


BUSY_BODY = ("<!doctype html><meta charset=\"utf-8\"><p role=\"alert\">Сервер проверяет другие входы: повторите "
             "через секунду. The server is checking other logins: try again in a second.</p>").encode()
THROTTLED_BODY = ("<!doctype html><meta charset=\"utf-8\"><p role=\"alert\">Слишком много неудачных попыток входа: "
                  "повторите через {seconds} с. Too many failed logins: try again in {seconds} s.</p>")
EARLY_FORM_BYTES = 4096  # a login form is far smaller; a bigger body goes the whole way (and is refused there)


def refuse_logins_early(wsgi_app, db):
    """A login post is refused before Flask does anything (no session, no form, no template) when this
    process's places for password checks are taken (503), or when what this process already knows of the
    throttle's buckets holds the attempt back (429, no database round trip). Under a flood most posts end
    here in a fraction of a millisecond, so the PBX's callbacks queue behind little. A browser with a
    device cookie, and whatever is not known yet, go the whole way (`login`), which decides the same way."""
    from connector.core.users import LOGINS_ADMITTED

    def app(environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST" and environ.get("PATH_INFO") == "/login":
            if LOGINS_ADMITTED.full:
                return _answer_early(start_response, "503 Service Unavailable", 1, BUSY_BODY)
            wait = _known_throttle(environ, db)
            if wait > 0:
                seconds = max(1, math.ceil(wait))
                body = THROTTLED_BODY.format(seconds=seconds).encode()
                return _answer_early(start_response, "429 Too Many Requests", seconds, body)
        return wsgi_app(environ, start_response)

    return app


def _answer_early(start_response, status: str, retry_after: int, body: bytes) -> list[bytes]:
    from web.security import HEADERS  # what every answer a browser reads carries

    start_response(status, [("Content-Type", "text/html; charset=utf-8"), ("Retry-After", str(retry_after)),
                            ("Content-Length", str(len(body))), *HEADERS.items()])
    return [body]


def _known_throttle(environ, db) -> float:
    """The wait the throttle already imposes on this login post, read from the form's user name and the
    client's address as `login` reads them; the body is put back for Flask."""
    if f"{DEVICE_COOKIE}=" in environ.get("HTTP_COOKIE", ""):
        return 0.0  # the device's own bucket, judged the whole way
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0.0
    if not 0 < length <= EARLY_FORM_BYTES or not environ.get("CONTENT_TYPE", "").startswith(
            "application/x-www-form-urlencoded"):
        return 0.0
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    try:
        username = parse_qs(body.decode(), keep_blank_values=True).get("username", [""])[0]
    except UnicodeDecodeError:
        return 0.0
    if not username:
        return 0.0
    address = throttle.client_address(environ.get("REMOTE_ADDR"))
    return throttle.known_wait(db, throttle.login_keys(username, address, None))


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
                _clear_session()
                return redirect(url_for(".login", next=request.full_path.rstrip("?")))
            g.principal = principal  # known before a refusal: its page shows who is refused
            if roles and principal.role not in roles:
                abort(403)
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
    return {"me": principal, "unread": unread, "logout_form": LogoutForm(), "Role": Role,
            "locale": str(get_locale()), "with_language": _with_language,
            "crm_status_names": crm_status_names(), "zone_name": _zone_name}


def crm_status_names() -> dict[str, str]:
    """A call's CRM status as the console names it, in the page's language (the list, its filter, the exports)."""
    return {status.value: labels.delivery_status_label(status) for status in DeliveryStatus}


def direction_names() -> dict[str, str]:
    """A call's direction as the console names it, in the page's language (the call page, the exports)."""
    return {code: labels.direction_label(code) for code in labels.direction_label.words}


def survey_names() -> dict[str, str]:
    """A call's survey state as the console names it, in the page's language (the call page, the exports)."""
    return {str(state): labels.survey_label(state) for state in labels.survey_label.words}


def _zone_name() -> str:
    """The account's time zone as people call it, in the page's language ("Москва", "Moscow Time")."""
    from babel.dates import get_timezone_name
    from flask_babel import get_timezone

    return get_timezone_name(get_timezone(), "long", locale=get_locale())


# A refused request, as people read it: what happened and what to do, in the page's language; never a status
# code or a field name. The JSON API keeps its own answers (web.errors).
PROBLEMS = {
    400: (_l("Запрос не понят"),
          _l("Страница устарела или ссылка повреждена. Откройте страницу заново из меню и повторите.")),
    403: (_l("Нет доступа"), _l("Эта страница или действие не для вашей роли. Нужен доступ: спросите администратора.")),
    404: (_l("Не найдено"), _l("Такой страницы или звонка нет, или он вам не виден: оператор видит свои звонки.")),
    405: (_l("Так открыть нельзя"), _l("Это действие выполняется кнопкой на странице, а не по ссылке.")),
    413: (_l("Слишком много данных"), _l("Форма прислала больше, чем сервер принимает. Сократите текст и повторите.")),
    422: (_l("Не удалось сохранить"), _l("Значение не подошло, ничего не изменено. Исправьте его и повторите.")),
}
OTHER_PROBLEM = (_l("Запрос не выполнен"), _l("Повторите позже или откройте страницу заново из меню."))


def error_page(exc: HTTPException, *, detail: str | None = None, back: str | None = None,
               back_label: str | None = None) -> tuple[str, int, dict]:
    """A refused request as a console page, with the header when the person is logged in. A detail given
    with `abort(status, description=...)` replaces the general one."""
    status = exc.code or 400
    title, general = PROBLEMS.get(status, OTHER_PROBLEM)
    if detail is None and exc.description != type(exc).description:
        detail = exc.description
    if "principal" not in g and isinstance(session.get("sid"), str):  # a page that is not the console's
        config = services().config
        sid = session["sid"]
        g.principal = read_then_write(services().db, lambda s: principal_for_session(
            s, sid, idle_hours=config.SESSION_IDLE_HOURS, max_hours=config.SESSION_MAX_HOURS))
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else {}
    return render_template("error.html", status=status, title=title, detail=detail or general, back=back,
                           back_label=back_label), status, headers


bp.register_error_handler(HTTPException, error_page)


class FilterRefused(Exception):
    """A filter of the list or the reports that cannot be read: `field` is its query parameter."""

    def __init__(self, field: str, query: dict):
        super().__init__(field)
        self.field, self.query = field, query

    @property
    def message(self) -> str:
        return filter_problem(self.field)


@bp.errorhandler(FilterRefused)
def _filter_refused(exc: FilterRefused):
    """An export (or another page without the filter form) refused for its filters: the way back is the
    list or the reports with the same filters, where the form says which one is wrong."""
    reports = request.endpoint in ("console.reports", "console.export_report_xlsx")
    back = url_for(".reports" if reports else ".calls", **exc.query)
    return error_page(BadRequest(), detail=exc.message, back=back,
                      back_label=_("К отчётам") if reports else _("К списку звонков"))


@bp.app_template_filter("when")
def _when(moment) -> str:
    """A moment (a datetime, or ISO 8601 text as the API gives it; UTC when it has no offset) as people there
    read it: in the account's time zone (webui.time_zone), in the page's language."""
    if not moment:
        return "—"
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
        except ValueError:
            return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return format_datetime(moment, "short")


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
            _clear_session()  # a new session id at every login: nothing from before survives it but the language
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
    _clear_session()
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
                           fmt=_when)


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


def _query() -> dict:
    """The filters as the page's link holds them: no empty ones, no page arguments (`lang`)."""
    return {k: v for k, v in request.args.items() if v != "" and k not in PAGE_ARGS}


def _refused_field(exc: ValidationError) -> str:
    return str(next(iter(exc.messages))) if isinstance(exc.messages, dict) and exc.messages else ""


def _local_days(raw: dict) -> dict:
    """The filters with each date the form's date fields give (2026-11-20) made that day's midnight in
    the account's time zone, offset included: the query schema, shared with the API, reads a moment without an
    offset as UTC, and a person means their own day."""
    zone = time_zone.zone_in_force().zone
    local = dict(raw)
    for key in ("date_from", "date_to"):
        try:
            day = date.fromisoformat(raw[key]) if len(raw.get(key, "")) == 10 else None
        except ValueError:
            continue  # the schema says what is wrong with it
        if day is not None:
            local[key] = datetime.combine(day, datetime.min.time(), zone).isoformat()
    return local


def _call_filter() -> tuple[CallFilter, Sort, dict, Cursor | None]:
    """The list's filters (raises FilterRefused)."""
    raw = _query()
    try:
        args = CALL_QUERY_SCHEMA.load(_local_days(raw))
        sort = args.pop("sort")
        after = args.pop("after", None)
    except ValidationError as exc:
        raise FilterRefused(_refused_field(exc), raw) from None
    args.pop("page", None)
    args.pop("per_page", None)
    return CallFilter(**args, visible_extensions=g.principal.visible_extensions), sort, raw, after


@bp.get("/calls")
@login_required()
def calls():
    try:
        flt, sort, raw, after = _call_filter()
    except FilterRefused as refused:  # said on the filter form, which keeps what was typed
        flt, sort, raw, after = None, Sort.NEWEST, refused.query, None
        problem, bad_field = refused.message, refused.field
    else:
        problem = bad_field = None
    found, items = None, []
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
        if flt is not None:
            found = find_calls(s, flt, per_page=25, after=after, sort=sort)
            items = [call_json(c) for c in found.calls]
    query = {k: v for k, v in raw.items() if k != "after"}
    next_link = url_for(".calls", after=found.next_cursor.encode(), **query) if found and found.next_cursor else None
    low_scores = url_for(".calls", score_lte=policy.max_threshold - 1)
    return render_template("calls.html", items=items, found=found, query=query, next_link=next_link,
                           low_scores=low_scores, policy=policy, sort=sort, problem=problem,
                           bad_field=bad_field), 400 if problem else 200


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


@bp.get("/calls/export.csv")
@login_required()
def export_csv():
    return _export("csv", "calls.csv")


@bp.get("/calls/export.xlsx")
@login_required()
def export_xlsx():
    return _export("xlsx", "calls.xlsx")


# How a time is written in an export, by the page's language: (CSV's strftime format, XLSX's number format).
EXPORT_TIMES = {"ru": ("%d.%m.%Y %H:%M", "dd.mm.yyyy hh:mm"), "en": ("%Y-%m-%d %H:%M", "yyyy-mm-dd hh:mm")}
SEPARATORS = {"semicolon": Separator.SEMICOLON, "comma": Separator.COMMA}  # ?sep=; semicolon unless asked


def export_layout(separator: Separator = Separator.SEMICOLON) -> Layout:
    """An export as the person asking reads it: the columns named in the page's language (as the list names
    them where it shows them), times in the account's time zone, the direction, the survey and the CRM status as
    the console names them (plain strings: the layout goes to a child process, which has no request)."""
    headers = {"call_id": _("Звонок"), "started_at": _("Начало"), "direction": _("Направление"),
               "operator": _("Оператор"), "line_number": _("Линия"), "customer_phone": _("Клиент"),
               "talk_seconds": _("Разговор, с"), "survey": _("Опрос"), "customer_score": _("Оценка клиента"),
               "supervisor_score": _("Оценка супервизора"), "tag": _("Тег"), "reviews": _("Отзывы супервизоров"),
               "crm_status": _("Статус в CRM"), "crm_entity": _("Запись в CRM")}
    csv_time, xlsx_time = EXPORT_TIMES[str(get_locale())]
    return Layout(headers=tuple(headers[c] for c in COLUMNS), statuses=crm_status_names(),
                  directions=direction_names(), surveys=survey_names(),
                  zone=time_zone.zone_in_force().name, csv_time=csv_time, xlsx_time=xlsx_time,
                  separator=separator, bom=True, sheet=_("Звонки"))


def _export(fmt: str, filename: str) -> Response:
    """The filtered list as a file, streamed as it is read: built in a child process (connector.console.offload), one
    short read per page, every cell through connector.console.cells (no control characters, no formulas)."""
    flt, sort, _raw, _after = _call_filter()  # the role's rule is in the filter: an operator's own calls
    separator = SEPARATORS.get(request.args.get("sep") or "semicolon")
    if separator is None:
        abort(400, description=_("Разделитель CSV: semicolon (точка с запятой) или comma (запятая)."))
    # Raises before answering if it cannot start.
    chunks = services().reads.export(fmt, flt, sort, export_layout(separator))
    return Response(chunks, mimetype=FORMATS[fmt],  # needs no request context: the work is the child's
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


def _report_filter() -> tuple[ReportFilter, dict]:
    """The reports' filters (raises FilterRefused)."""
    raw = _query()
    try:
        args = REPORT_QUERY_SCHEMA.load(_local_days(raw))
    except ValidationError as exc:
        raise FilterRefused(_refused_field(exc), raw) from None
    return ReportFilter(**args, visible_extensions=g.principal.visible_extensions,
                        zone=time_zone.zone_in_force().name), raw


@bp.get("/reports")
@login_required()
def reports():
    try:
        flt, raw = _report_filter()
    except FilterRefused as refused:  # said on the filter form, which keeps what was typed
        return render_template("reports.html", query=refused.query, problem=refused.message,
                               bad_field=refused.field, operators=None), 400
    # Counted in a child process (connector.console.offload), in one snapshot: the tables and charts agree.
    counted = services().figures(flt, services().ingest.initial_policy)
    policies, operators, lines = counted["policy"], counted["operators"], counted["lines"]
    scores, days = counted["distribution"], counted["daily"]
    policy = policies.for_line(flt.line)  # the chart's colours: the threshold of the line shown, or the global one
    return render_template("reports.html", query=raw, operators=operators, lines=lines, policy=policy,
                           own_thresholds=sorted(line for line, o in policies.lines.items() if "max_threshold" in o),
                           distribution=charts.bar_chart(scores, (policy.scale_min, policy.scale_max)),
                           days=days, chart=charts, trend=_trend(days, policy), counted_at=counted["counted_at"],
                           problem=None, bad_field=None)


def _trend(days: list[dict], policy) -> charts.LineChart:
    """The daily averages on the scale in force, the days named as the page writes them."""
    return charts.line_chart([date.fromisoformat(d["day"]) for d in days], [d["average"] for d in days],
                             policy.scale_min, policy.scale_max, short=[labels.short_day_label(d["day"]) for d in days],
                             full=[labels.day_label(d["day"]) for d in days])


@bp.get("/reports/export.xlsx")
@login_required()
def export_report_xlsx():
    flt, _raw = _report_filter()
    counted = services().figures(flt, services().ingest.initial_policy, ("operators", "lines"))
    sheets = []
    for name, title in (("operators", _("Операторы")), ("lines", _("Линии"))):
        rows = _report_rows(counted[name])
        sheets.append(xlsx.Sheet(title, rows, xlsx.fit_widths(rows), header=True))
    return Response(b"".join(xlsx.stream(sheets)), mimetype=xlsx.MIME,  # a few rows: no need to stream
                    headers={"Content-Disposition": "attachment; filename=report.xlsx"})


def _report_rows(body: dict) -> list[list]:
    """A report as a sheet: its columns named as the reports page names them, a row per item, then the totals
    (cells: connector.console.xlsx)."""
    names = {"operator": _("Оператор"), "line": _("Линия"), "calls": _("Звонков"), "answered": _("Отвечено"),
             "offered": _("Опрос предложен"), "no_answer": _("Без ответа"), "rated": _("Оценено"),
             "response_rate": _("Отклик") + ", %", "average": _("Средняя"), "positive": _("Довольны"),
             "negative": _("Недовольны"), "csat": "CSAT, %", "nps": "NPS",
             "supervisor_rated": _("Оценок супервизора"), "supervisor_average": _("Средняя супервизора")}
    columns = list(body["totals"])
    totals = [_("Итого")] + [body["totals"][c] for c in columns[1:]]  # its key is empty: the page's word for it
    return [[names[c] for c in columns]] + [[row[c] for c in columns] for row in body["items"]] + [totals]


POLICY_FIELDS = ("enabled", "scale_min", "scale_max", "max_threshold", "tag_template", "score_text_template",
                 "rating_window_days", "lock_score", "high_scores")


HIGH_SCORES_LABELS = labels.high_scores_label.words


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
                    errors[exc.field] = policy_problem(exc, _candidate_scale(initial, changes))
    editing = request.args.get("line") if request.method == "GET" else None
    return _settings_page(form if request.method == "POST" and not saved else None, errors, saved,
                          editing=editing)


def _candidate_scale(initial, changes: dict):
    """The scale a refused change was checked with: a threshold's bounds are said on it."""
    with services().db.reading() as s:
        policy = current_policy(s, initial)
    scale = {k: changes[k] for k in ("scale_min", "scale_max") if isinstance(changes.get(k), int)}
    return replace(policy, **scale)


def _settings_page(form: SettingsForm | None, errors: dict, saved: bool, *, line_form: LineOverrideForm | None = None,
                   line_problem: str | None = None, editing: str | None = None, code: int | None = None,
                   mango: dict | None = None, zone: dict | None = None):
    """The settings page; `form` / `line_form` hold what was posted (None: the values stored); `mango` the
    PBX connection section as posted (webui.pbx_connection), `zone` the time zone card (webui.time_zone)."""
    initial = services().ingest.initial_policy
    with services().db.reading() as s:
        policies = current_policies(s, initial)
        policy = policies.base
        state = {**status.details(s, services().config.targets), **status.last_activity(s)}
        dead = [{"id": j.id, "kind": j.kind, "crm": j.crm, "call_id": j.call.entry_id, "started_at": j.call.created_at,
                 "error": j.last_error, "at": j.updated_at.isoformat()}
                for j in outbox.list_jobs(s, JobStatus.DEAD, limit=50)]
    if form is None:
        form = SettingsForm(formdata=None, data=policy.as_dict())
    if line_form is None:
        line_form = LineOverrideForm(formdata=None)
        if editing in policies.lines:
            line_form.line_number.data = editing
            line_form.show(policies.lines[editing])
    line_form.inherit_from(policy, HIGH_SCORES_LABELS)
    lines = sorted(policies.lines.items())
    # Lines that stay on by their own setting while the feature is off: said, since the switch does not reach them.
    switched_on = [line for line, o in lines if o.get("enabled") is True] if not policy.enabled else []
    if request.method != "GET":  # a refused post: the page is the settings page
        g.page_url = url_for(".settings")
    return render_template("settings.html", form=form, errors=errors, saved=saved, state=state, dead=dead,
                           replay_form=ReplayForm(), fields=POLICY_FIELDS, lines=lines, policy=policy,
                           line_form=line_form, line_problem=line_problem,
                           line_saved=request.method == "GET" and request.args.get("line_saved") == "1",
                           switched_on=switched_on, high_scores_labels=HIGH_SCORES_LABELS,
                           mango=mango or pbx_connection.section(), zone=zone or time_zone.section()), \
        code or (422 if errors else 200)


@bp.post("/settings/lines")
@login_required(Role.ADMIN)
def save_line():
    """Set a line's override: only what the admin chose ("as in the general settings" and an empty threshold
    store nothing, so the general settings, the switch included, keep covering those fields). Nothing chosen
    at all: the line follows the general settings again. A refusal is said on the line form."""
    form = LineOverrideForm()
    with services().db.reading() as s:
        policy = current_policy(s, services().ingest.initial_policy)
    form.inherit_from(policy, HIGH_SCORES_LABELS)
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            problem = _("Форма устарела или подделана: откройте страницу заново")
        else:
            problem = next(str(f.errors[0]) for f in form if f.errors)
        return _settings_page(None, {}, False, line_form=form, line_problem=problem, code=400)
    line = form.line_number.data.strip()
    override = form.override()
    try:
        with services().db.transaction() as s:
            if override:
                update_line_override(s, services().ingest.initial_policy, line, override,
                                     actor=g.principal.username)
            elif not delete_line_override(s, line, actor=g.principal.username):
                problem = _("Для линии ничего не выбрано: она и так следует общим настройкам. Выберите своё.")
                return _settings_page(None, {}, False, line_form=form, code=422, line_problem=problem)
    except PolicyError as exc:
        return _settings_page(None, {}, False, line_form=form, line_problem=policy_problem(exc, policy), code=422)
    return redirect(url_for(".settings", line_saved=1) + "#lines")


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
        rows = [{"actor": r.actor, "at": r.changed_at.isoformat(), "scope": labels.audit_scope_label(r.scope),
                 "changes": [(labels.audit_field_label(r.scope, k), labels.audit_value(k, r.before.get(k)),
                              labels.audit_value(k, r.after.get(k)))
                             for k in {**r.before, **r.after} if r.before.get(k) != r.after.get(k)]}
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
    if request.method != "GET":  # a refused review: the page is the call's
        g.page_url = url_for(".call_page", call_id=call_id)
    config = services().config
    with services().db.reading() as s:
        call = _visible_call(s, call_id)
        data = call_json(call, with_history=True, marks=marks_json(s, call))
        for row, score in zip(call.scores, data["scores"]):  # what a decision's reason is read from
            score.update(record=row.record, high_scores=row.high_scores)
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
        except ValueError:  # checked before anything is written: only a score outside the scale
            policy = current_policy(s, services().ingest.initial_policy)
            error = _("Оценка: целое число от %(low)s до %(high)s", low=policy.scale_min, high=policy.scale_max)
        else:
            error = None
    if error:
        return _render_call(call_id, form, error, 422)
    return redirect(url_for(".call_page", call_id=call_id))


# Registered on `bp` after it is complete: the PBX connection's section, and the operator-name filter.
from webui import (crm_connection, operator_map, operator_names, pbx_connection, target_connections,  # noqa: E402,F401
                   time_zone)
