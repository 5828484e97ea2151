"""Logging in and out: the login form with its throttle and the device cookie, the early refusal of login
posts under a flood (`refuse_logins_early`, a WSGI layer), and the console's root."""
from __future__ import annotations

import io
import math
import secrets
from urllib.parse import parse_qs, urlsplit

from flask import Response, abort, current_app, redirect, render_template, request, session, url_for
from flask_babel import get_locale, gettext as _
from markupsafe import escape

from connector.core import throttle
from connector.core.users import end_session, login as check_login, start_session
from webui.common import bp, clear_session, services
from webui.forms import LoginForm, LogoutForm

DEVICE_COOKIE = "qa_device"  # "this browser logged in as <user> before": exempts it from others' lockouts
DEVICE_DAYS = 90


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
            clear_session()  # a new session id at every login: nothing from before survives it but the language
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
    clear_session()
    return redirect(url_for(".login"))
