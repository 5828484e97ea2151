"""The settings page's "MANGO OFFICE" section: the admin enters the PBX's key and salt, the connector checks
them at once with a harmless command (the PBX's user list, which also fills the operator directory), and
stores them encrypted only when the PBX accepted them. Neither is ever shown back in full."""
from __future__ import annotations

from flask import abort, g, redirect, request, url_for
from flask_babel import format_datetime, gettext as _

from connector.core.models import Role
from connector.inbound import directory
from connector.inbound.pbx import PbxCoolingDown, PbxError, PbxUnavailable, PbxWrongRequest
from webui.common import bp, login_required, services
from webui.forms import MangoConnectionForm, ReplayForm
from webui.settings import settings_page

BAD_KEY, BAD_SIGN = 3105, 3102  # MANGO's results for an unknown key and a wrong signature (reference: PDF s.243)


def section(form: MangoConnectionForm | None = None, problem: str | None = None) -> dict:
    """What the section shows: where each value comes from, which is in force (masked), the directory's state."""
    store = services().pbx_credentials
    with services().db.reading() as s:
        state = store.state(s)
    return {"form": form or MangoConnectionForm(formdata=None), "problem": problem, "state": state,
            "saved": request.method == "GET" and request.args.get("mango_saved") == "1",
            "forget_form": ReplayForm()}


@bp.app_template_global("mango_section")
def _mango_section() -> dict:
    """The partial's data: as posted when a post was refused (`g.mango`), else as stored."""
    return g.get("mango") or section()


def _refusal(exc: PbxError) -> str:
    """Why the pair was not stored, as the admin reads it."""
    if isinstance(exc, PbxWrongRequest) and exc.result == BAD_KEY:
        return _("MANGO не знает такого уникального кода АТС. Проверьте его в личном кабинете. Ничего не сохранено.")
    if isinstance(exc, PbxWrongRequest) and exc.result == BAD_SIGN:
        return _("MANGO не принял подпись: ключ для создания подписи неверен. Ничего не сохранено.")
    if isinstance(exc, PbxWrongRequest):
        return _("MANGO отклонил проверочный запрос с этими данными. Ничего не сохранено.")
    if isinstance(exc, PbxCoolingDown):
        return _("Второй неверный запрос за 2 минуты заблокирует API MANGO, поэтому проверка отложена. Повторите после %(at)s. Ничего не сохранено.",  # noqa: E501
                 at=format_datetime(exc.retry_at, "short"))
    if isinstance(exc, PbxUnavailable):
        return _("MANGO сейчас не отвечает или API заблокирован; повторите после %(at)s. Ничего не сохранено.",
                 at=format_datetime(exc.retry_at, "short"))
    return _("MANGO ответил ошибкой; повторите позже. Ничего не сохранено.")


@bp.post("/settings/mango")
@login_required(Role.ADMIN)
def save_mango():
    form = MangoConnectionForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            problem = _("Форма устарела или подделана: откройте страницу заново")
        else:
            problem = next(str(f.errors[0]) for f in form if f.errors)
        g.mango = section(form, problem)  # shown as posted, with the problem
        return settings_page(None, {}, False, code=400)
    api_key, salt = form.api_key.data.strip(), form.api_salt.data.strip()
    try:
        # Harmless (it changes nothing in the PBX) and it lists the operators. A pair not known to work may be
        # refused, which counts towards MANGO's 2-minute block: the guard lets such a request go only when
        # no other wrong request was made within 2 minutes.
        entries = services().pbx.with_credentials(api_key, salt).users(probing=True)
    except PbxError as exc:
        g.mango = section(form, _refusal(exc))  # shown as posted, with the problem
        return settings_page(None, {}, False, code=422)
    with services().db.transaction() as s:
        services().pbx_credentials.save(s, api_key, salt, actor=g.principal.username)
        directory.store_read(s, entries)
    return redirect(url_for("console.settings", mango_saved=1) + "#mango")


@bp.post("/settings/mango/forget")
@login_required(Role.ADMIN)
def forget_mango():
    """The console's pair removed: the environment's (if any) is in force again. Audited."""
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        abort(400)
    with services().db.transaction() as s:
        services().pbx_credentials.forget(s, actor=g.principal.username)
    return redirect(url_for("console.settings") + "#mango")
