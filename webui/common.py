"""What every page of the console shares: the one blueprint (`console`), the page's language, the login check,
the header's context, the time filter, and refused requests as pages. It imports no other page module: they
import it."""
from __future__ import annotations

from datetime import datetime, timezone
from functools import wraps
from pathlib import Path
from urllib.parse import quote, urlencode

from flask import Blueprint, abort, current_app, g, redirect, render_template, request, session, url_for
from flask_babel import format_datetime, get_locale, lazy_gettext as _l
from werkzeug.exceptions import HTTPException

from connector.core.models import DeliveryStatus, Role
from connector.core.notifications import unread_count
from connector.core.users import Principal, principal_for_session, read_then_write
from webui import labels
from webui.forms import LogoutForm


bp = Blueprint("console", __name__, template_folder="templates")
for _name, _function in labels.FILTERS.items():  # every code a page shows goes through one of these
    bp.add_app_template_filter(_function, _name)


def services():
    return current_app.extensions["connector"]


LANGUAGES = ("ru", "en")
TRANSLATIONS = Path(__file__).resolve().parent / "translations"


PAGE_ARGS = ("lang", "sep")  # the page's own query arguments: never a filter


def select_locale() -> str:
    """Russian unless the user asked for English (`?lang=en` on any page, remembered in the session)."""
    wanted = request.args.get("lang")
    if wanted in LANGUAGES:
        session["lang"] = wanted
    return session.get("lang", LANGUAGES[0])


@bp.before_request
def _remember_language():
    """A language asked for is kept even when the page answers with a redirect (to the login, say)."""
    select_locale()


def clear_session() -> None:
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
                clear_session()
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


@bp.app_template_filter("when")
def when(moment) -> str:
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
