"""The settings page's "Подключить Bitrix24" and "Исходящий вебхук" sections, admin only and audited.

- Bitrix24: the page shows the handler URL to paste into the portal's local application; the portal posts
  its install there (web.bitrix24), and the page says which portal installed it and when. "Отключить"
  forgets the tokens.
- The webhook: the admin enters the receiver's URL; the connector generates the signing secret, shows it in
  full once (on the answer to that post, never stored in a URL), then only its last characters. A test
  button sends one signed message and says what the receiver answered.

The sections reach the page through a context processor, so the settings page only includes the partials.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, current_app, g, redirect, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired, Length, ValidationError

from connector.core.accounts import account_row
from connector.core.models import Role, SettingsAudit
from connector.core.validation import text_problem
from connector.delivery.targets.bitrix24.install import handler_url as bitrix24_handler_url
from connector.delivery.targets.bitrix24.kit import settings_of as bitrix24_settings
from connector.delivery.targets.webhook.target import NAME as WEBHOOK, TestAnswer, TestResult, send_test
from web.bitrix24 import store as bitrix24_store
from webui.common import bp, login_required, services
from webui.forms import ReplayForm
from webui.settings import settings_page

WEBHOOK_TEST_SCOPE = "webhook_test"


def http_url(form, field) -> None:
    value = (field.data or "").strip()
    parts = urlsplit(value)
    if text_problem(value) or parts.scheme not in ("http", "https") or not parts.netloc or " " in value:
        raise ValidationError(_l("Укажите адрес вида https://example.ru/hook"))


class WebhookUrlForm(FlaskForm):
    url = StringField(_l("Адрес получателя"), validators=[DataRequired(_l("Укажите адрес получателя")),
                                                          Length(max=2000), http_url])


def webhook_connection():
    if "webhook_connection" not in current_app.extensions:
        from connector.delivery.targets.webhook.kit import build_webhook_connection

        current_app.extensions["webhook_connection"] = build_webhook_connection(services().config, services().db)
    return current_app.extensions["webhook_connection"]


def handler_url() -> str:
    config = services().config
    return bitrix24_handler_url(config.PUBLIC_BASE_URL, config.SECRET_KEY)  # the worker binds the same address


def bitrix24_section() -> dict:
    with services().db.reading() as s:
        installed = bitrix24_store().state(s)
    own = bitrix24_settings(services().config)
    return {"installed": installed, "handler_url": handler_url(), "env_portal": own.portal_url,
            "oauth_url": own.oauth_url, "has_app_keys": bool(own.client_id and own.client_secret),
            "listed": "bitrix24" in services().config.targets, "form": ReplayForm()}


TEST_WORDS = {
    TestResult.ACCEPTED: _l("Получатель принял тестовое сообщение (ответ %(status)s)."),
    TestResult.REFUSED: _l("Получатель отклонил тестовое сообщение (ответ %(status)s): проверьте, что у него действующий секрет."),  # noqa: E501
    TestResult.FAILED: _l("У получателя ошибка (ответ %(status)s): сообщение не принято, повторите позже."),
    TestResult.GONE: _l("Получатель просит больше не присылать сообщения (ответ %(status)s)."),
    TestResult.REDIRECTED: _l("Получатель перенаправляет на другой адрес (ответ %(status)s): укажите конечный адрес."),  # noqa: E501
    TestResult.NO_ANSWER: _l("Получатель не ответил: адрес недоступен или не ответил за 10 секунд."),
}


def webhook_section() -> dict:
    with services().db.reading() as s:
        state = webhook_connection().state(s)
    test: TestAnswer | None = g.get("webhook_test")
    return {"state": state, "form": g.get("webhook_form") or WebhookUrlForm(formdata=None),
            "problem": g.get("webhook_problem"), "new_secret": g.get("webhook_new_secret"),
            "test": test, "test_words": str(TEST_WORDS[test.result]) % {"status": test.status} if test else None,
            "saved": g.get("webhook_saved", False), "listed": "webhook" in services().config.targets,
            "action_form": ReplayForm()}


@bp.context_processor
def _sections():
    # Called by the partials themselves: only the settings page pays for the reads.
    return {"bitrix24_section": bitrix24_section, "webhook_section": webhook_section}


def _csrf_only() -> None:
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)


def _page(code: int = 200):
    response = settings_page(None, {}, False, code=code)
    if g.get("webhook_new_secret"):
        response = current_app.make_response(response)
        response.headers["Cache-Control"] = "no-store"  # the one page that shows the secret in full
    return response


# --- Bitrix24 ------------------------------------------------------------------------------------

@bp.post("/settings/bitrix24/disconnect")
@login_required(Role.ADMIN)
def disconnect_bitrix24():
    """Forget the installed portal and its tokens (audited); a new install from the portal connects again."""
    _csrf_only()
    with services().db.transaction() as s:
        bitrix24_store().disconnect(s, actor=g.principal.username)
    return redirect(url_for("console.settings") + "#bitrix24")


# --- the outbound webhook ------------------------------------------------------------------------

@bp.post("/settings/webhook")
@login_required(Role.ADMIN)
def save_webhook():
    form = WebhookUrlForm()
    if not form.validate_on_submit():
        g.webhook_form = form
        g.webhook_problem = (_("Форма устарела или подделана: откройте страницу заново") if form.csrf_token.errors
                             else next(str(f.errors[0]) for f in form if f.errors))
        return _page(400)
    with services().db.transaction() as s:
        g.webhook_new_secret = webhook_connection().save(s, form.url.data.strip(), actor=g.principal.username)
    g.webhook_saved = True
    return _page()


@bp.post("/settings/webhook/secret")
@login_required(Role.ADMIN)
def new_webhook_secret():
    """A new secret for the console's URL; the old one stops signing at once (the receiver needs the new)."""
    _csrf_only()
    with services().db.transaction() as s:
        url = account_row(s, WEBHOOK).endpoint_url
        if not url:
            abort(409)  # the button shows only beside a URL saved in the console
        g.webhook_new_secret = webhook_connection().save(s, url, actor=g.principal.username, regenerate=True)
    return _page()


@bp.post("/settings/webhook/forget")
@login_required(Role.ADMIN)
def forget_webhook():
    _csrf_only()
    with services().db.transaction() as s:
        webhook_connection().forget(s, actor=g.principal.username)
    return redirect(url_for("console.settings") + "#webhook")


@bp.post("/settings/webhook/test")
@login_required(Role.ADMIN)
def test_webhook():
    """One signed test message to the URL in force; the answer said in words on the page; audited."""
    _csrf_only()
    endpoint = webhook_connection().current()
    if not endpoint.url:
        g.webhook_problem = _("Сначала укажите адрес получателя.")
        return _page(409)
    answer = send_test(endpoint)
    with services().db.transaction() as s:
        s.add(SettingsAudit(scope=WEBHOOK_TEST_SCOPE, actor=g.principal.username, before={},
                            after={"url": endpoint.url, "result": answer.result.value, "status": answer.status,
                                   "secret": endpoint.shown()["secret"]}))
    g.webhook_test = answer
    return _page()
