"""The settings page's "amoCRM" section: an admin connects amoCRM from the browser, through amoCRM's
authorization page (the integration's keys) or with a long-lived token, and may remove the console's
connection. The domain's side is `connector.delivery.targets.amocrm.connection`; here only the forms, the redirects and
the words. Secrets are never shown back in full."""
from __future__ import annotations

import re
from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import PasswordField, StringField
from wtforms.validators import Length, Optional, ValidationError

from connector.core.accounts import SharedRateLimiter
from connector.core.models import Role
from connector.delivery.targets.amocrm.connection import AmoConnectionStore, ConnectionRefused, Refusal
from connector.delivery.targets.amocrm.kit import NAME, build_amocrm_connection, settings_of
from web.security import CONTENT_SECURITY_POLICY
from webui.common import bp, login_required, services
from webui.forms import ReplayForm, pbx_secret
from webui.settings import settings_page

LOOPBACK = ("127.0.0.1", "localhost", "::1")  # a local amoCRM stand-in may speak plain HTTP; a real account never


def account_address(form, field) -> None:
    """The account's address: https://<subdomain>.amocrm.ru (or .kommo.com), nothing after the host."""
    value = (field.data or "").strip().rstrip("/")
    parts = urlsplit(value)
    if value and not (re.fullmatch(r"https?://[^/\s?#@]+", value) and parts.hostname
                      and (parts.scheme == "https" or parts.hostname in LOOPBACK)):
        raise ValidationError(_l("Укажите адрес аккаунта в виде https://поддомен.amocrm.ru"))


class AmoOAuthForm(FlaskForm):
    """The integration's keys (amoCRM: «амоМаркет» → the integration → «Ключи и доступы»)."""

    base_url = StringField(_l("Адрес аккаунта amoCRM"), validators=[Optional(), Length(max=255), account_address])
    client_id = StringField(_l("ID интеграции"), validators=[Optional(), Length(max=128), pbx_secret])
    client_secret = PasswordField(_l("Секретный ключ"), validators=[Optional(), Length(max=255), pbx_secret])


class AmoTokenForm(FlaskForm):
    base_url = StringField(_l("Адрес аккаунта amoCRM"), validators=[Optional(), Length(max=255), account_address])
    token = PasswordField(_l("Долгосрочный токен"), validators=[Optional(), Length(max=4096), pbx_secret])


def store() -> AmoConnectionStore:
    """One per app: it keeps a second-old copy of the connection, as the worker's does."""
    found = current_app.extensions.get("amocrm_connection")
    if found is None:
        config, db = services().config, services().db
        limiter = SharedRateLimiter(db, NAME, settings_of(config).rate_limit)
        found = current_app.extensions["amocrm_connection"] = build_amocrm_connection(
            config, db, wait_turn=limiter.wait_turn)
    return found


def refusal_text(reason: Refusal) -> str:
    """Why nothing was stored, as the admin reads it."""
    return {
        Refusal.NOT_PENDING: _("Это подключение уже завершено или не начиналось: ответ amoCRM использован. Ничего не сохранено. Нажмите «Подключить amoCRM» ещё раз."),  # noqa: E501
        Refusal.WRONG_STATE: _("Ответ amoCRM не относится к подключению, начатому в этом браузере (параметр state не совпал). Ничего не сохранено."),  # noqa: E501
        Refusal.EXPIRED: _("Подключение устарело: после нажатия «Подключить amoCRM» прошло больше 10 минут. Ничего не сохранено. Нажмите кнопку ещё раз."),  # noqa: E501
        Refusal.WRONG_ACCOUNT: _("Доступ разрешён в другом аккаунте amoCRM, чем указанный адрес. Ничего не сохранено."),
        Refusal.NO_CODE: _("amoCRM не передал код авторизации: доступ не разрешён. Ничего не сохранено."),
        Refusal.CODE_REFUSED: _("amoCRM отклонил код авторизации (истёк, уже использован или неверны ID интеграции и секретный ключ). Ничего не сохранено."),  # noqa: E501
        Refusal.TOKEN_REFUSED: _("amoCRM не принял долгосрочный токен. Ничего не сохранено."),
        Refusal.UNAVAILABLE: _("amoCRM сейчас не отвечает; повторите позже. Ничего не сохранено."),
    }[reason]


def section(oauth_form: AmoOAuthForm | None = None, token_form: AmoTokenForm | None = None,
            problem: str | None = None) -> dict:
    """What the section shows: where each value comes from, which is in force (masked), the tokens' state."""
    with services().db.reading() as s:
        state = store().status(s)
    if problem is None and request.method == "GET" and request.args.get("amocrm_problem") in set(Refusal):
        problem = refusal_text(Refusal(request.args["amocrm_problem"]))
    return {"oauth_form": oauth_form or AmoOAuthForm(formdata=None), "token_form": token_form or AmoTokenForm(
        formdata=None), "problem": problem, "state": state, "redirect_uri": store().redirect_uri,
            "saved": request.method == "GET" and request.args.get("amocrm_saved") == "1",
            "forget_form": ReplayForm(), "listed": "amocrm" in services().config.targets}


@bp.app_template_global("amocrm_section")
def _amocrm_section() -> dict:
    """The partial's data: as posted when a post was refused (`g.amocrm`), else as stored."""
    g.amocrm_form_shown = True
    return g.get("amocrm") or section()


@bp.after_request
def _allow_amocrm_authorization(response):
    """A page with the «Подключить amoCRM» form may send the browser on to amoCRM's authorization page: the
    browser checks the form's redirect against the page's form-action, so that page's policy names amoCRM's
    origin too (every other page keeps 'self' alone). The app-wide headers only fill in what is not set."""
    if g.get("amocrm_form_shown"):
        parts = urlsplit(store().authorize_url)
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {parts.scheme}://{parts.netloc}")
    return response


def _refused(problem: str, code: int, **forms):
    g.amocrm = section(problem=problem, **forms)
    return settings_page(None, {}, False, code=code)


def _form_problem(form: FlaskForm) -> str:
    if form.csrf_token.errors:
        return _("Форма устарела или подделана: откройте страницу заново")
    return next(str(f.errors[0]) for f in form if f.errors)


@bp.post("/settings/amocrm/connect")
@login_required(Role.ADMIN)
def connect_amocrm():
    """The first step: remember what was entered with a fresh state, then go to amoCRM's authorization page."""
    form = AmoOAuthForm()
    if not form.validate_on_submit():
        return _refused(_form_problem(form), 400, oauth_form=form)
    env = store().environment
    base_url = (form.base_url.data or "").strip().rstrip("/") or env.base_url
    client_id = (form.client_id.data or "").strip() or env.client_id
    client_secret = (form.client_secret.data or "").strip() or env.client_secret
    if not (base_url and client_id and client_secret):
        return _refused(_("Укажите адрес аккаунта, ID интеграции и секретный ключ (или задайте их в переменных окружения AMOCRM_BASE_URL, AMOCRM_CLIENT_ID, AMOCRM_CLIENT_SECRET)"), 400, oauth_form=form)  # noqa: E501
    with services().db.transaction() as s:
        target = store().begin(s, base_url, client_id, client_secret, session["sid"])
    return redirect(target, code=303)


@bp.get("/settings/amocrm/callback")
@login_required(Role.ADMIN)
def amocrm_callback():
    """amoCRM's redirect back (code, state, referer): the tokens are stored only when all is right."""
    try:
        store().complete(request.args.get("state", ""), request.args.get("code", ""),
                         request.args.get("referer", ""), session["sid"], actor=g.principal.username)
    except ConnectionRefused as exc:
        return redirect(url_for("console.settings", amocrm_problem=exc.reason.value) + "#amocrm")
    return redirect(url_for("console.settings", amocrm_saved=1) + "#amocrm")


@bp.post("/settings/amocrm/token")
@login_required(Role.ADMIN)
def save_amocrm_token():
    """A long-lived token, stored only after amoCRM answered a harmless GET /api/v4/account with it."""
    form = AmoTokenForm()
    if not form.validate_on_submit():
        return _refused(_form_problem(form), 400, token_form=form)
    base_url = (form.base_url.data or "").strip().rstrip("/") or store().environment.base_url
    token = (form.token.data or "").strip()
    if not (base_url and token):
        return _refused(_("Укажите адрес аккаунта и долгосрочный токен"), 400, token_form=form)
    try:
        store().save_long_lived(base_url, token, actor=g.principal.username)
    except ConnectionRefused as exc:
        return _refused(refusal_text(exc.reason), 422, token_form=form)
    return redirect(url_for("console.settings", amocrm_saved=1) + "#amocrm")


@bp.post("/settings/amocrm/forget")
@login_required(Role.ADMIN)
def forget_amocrm():
    """The console's connection and its tokens removed: the environment's (if any) is in force again."""
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)
    with services().db.transaction() as s:
        store().forget(s, actor=g.principal.username)
    return redirect(url_for("console.settings") + "#amocrm")
