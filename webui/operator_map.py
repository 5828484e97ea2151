"""The settings page's "Операторы и пользователи CRM" section: each PBX operator beside a choice of each CRM's
users (read from the CRM), saved in one post into the same extension -> user maps the API edits, audited the
same way. A CRM that cannot be read is said so, and its current values stay editable as numbers."""
from __future__ import annotations

import re

from flask import current_app, g, redirect, request, url_for
from flask_babel import gettext as _

from connector import registry
from connector.core.models import Role
from connector.core.policy import PolicyError
from connector.core.validation import INT32_MAX
from connector.delivery.contract import CrmUser
from connector.delivery.operator_map import (Unreadable, UserLists, UsersRead, current_maps, operator_rows,
                                             save_maps)
from webui.common import bp, login_required, services
from webui.forms import ReplayForm
from webui.settings import settings_page

FIELD = re.compile(r"map-(?P<target>[a-z0-9]+)-(?P<extension>.+)")  # one select (or number) per target and row


def _targets() -> tuple[str, ...]:
    """The configured targets that name users (the webhook names none)."""
    return tuple(t for t in services().config.targets if t in registry.targets_with_users())


def _initial() -> dict[str, dict[str, int]]:
    return {t: services().config.user_map(t) for t in _targets()}


def _lists() -> UserLists:
    """The CRMs' user lists, one keeper per app, reading through each target's own client and rate limiter."""
    lists = current_app.extensions.get("operator_map_lists")
    if lists is None:
        config, db = services().config, services().db
        lists = UserLists({t: registry.build_user_reader(t, config, db) for t in _targets()})
        current_app.extensions["operator_map_lists"] = lists
    return lists


def _unreadable_text(why: Unreadable) -> str:
    if why is Unreadable.REFUSED:
        return _("CRM отказала коннектору в списке пользователей (доступ или оплата аккаунта). Номера пользователей можно ввести вручную.")  # noqa: E501
    return _("CRM сейчас не отвечает, список пользователей не получен. Номера пользователей можно ввести вручную.")


def section() -> dict:
    """What the section shows: rows, each target's users (or why not), the current maps, the unmapped count."""
    targets = _targets()
    with services().db.reading() as s:
        maps = current_maps(s, _initial())
        rows = operator_rows(s, maps)
    columns = []
    for target in targets:
        outcome = _lists().read(target)
        if isinstance(outcome, UsersRead):
            columns.append({"target": target, "users": outcome.users, "problem": None, "detail": None})
        else:
            columns.append({"target": target, "users": None, "problem": _unreadable_text(outcome.why),
                            "detail": outcome.detail})
    posted = g.get("operator_map_posted") or {}
    values = {(t, r.extension): posted.get((t, r.extension), maps[t].get(r.extension)) for t in targets for r in rows}
    unmapped = {r.extension for r in rows if any(values[(t, r.extension)] in (None, "") for t in targets)}
    return {"targets": targets, "columns": columns, "rows": rows, "values": values, "unmapped": unmapped,
            "problem": g.get("operator_map_problem"), "form": ReplayForm(),
            "saved": request.method == "GET" and request.args.get("operators_saved") == "1"}


@bp.app_context_processor
def _section_for_templates() -> dict:
    """The settings page includes the section; it is built only when the page renders it."""
    return {"operator_map_section": section}


@bp.app_template_filter("crm_user")
def crm_user(user: CrmUser) -> str:
    """An option's text: "Ирина Петрова (#12)", marked when the CRM has deactivated the user."""
    text = f"{user.name or _('без имени')} (#{user.id})"
    return text if user.active else _("%(user)s — отключён в CRM", user=text)


def _posted(targets: tuple[str, ...]) -> tuple[dict[str, dict[str, int | None]], dict, str | None]:
    """The rows as posted (target -> extension -> user id or None), the raw values, and the first problem."""
    changes: dict[str, dict[str, int | None]] = {t: {} for t in targets}
    raw, problem = {}, None
    for key, value in request.form.items():
        match = FIELD.fullmatch(key)
        if not match or match["target"] not in targets:
            continue
        value = value.strip()
        raw[(match["target"], match["extension"])] = value
        if value == "":
            changes[match["target"]][match["extension"]] = None
        elif value.isdigit() and 0 < int(value) <= INT32_MAX:
            changes[match["target"]][match["extension"]] = int(value)
        elif problem is None:
            problem = _("Добавочный %(extension)s: номер пользователя CRM — целое число от 1 до 2147483647.",
                        extension=match["extension"])
    return changes, raw, problem


@bp.post("/settings/operators")
@login_required(Role.ADMIN)
def save_operator_map():
    """Every row's choice for every CRM in one post; each map that changed leaves one audit row."""
    targets = _targets()
    if not ReplayForm().validate_on_submit():  # a form with only its CSRF token
        g.operator_map_problem = _("Форма устарела или подделана: откройте страницу заново")
        return settings_page(None, {}, False, code=400)
    changes, raw, problem = _posted(targets)
    if problem is None:
        try:
            with services().db.transaction() as s:
                save_maps(s, _initial(), changes, actor=g.principal.username)
        except PolicyError:
            problem = _("Сопоставление не сохранено: проверьте добавочные номера и номера пользователей.")
    if problem is not None:
        g.operator_map_posted, g.operator_map_problem = raw, problem
        return settings_page(None, {}, False, code=422)
    return redirect(url_for("console.settings", operators_saved=1) + "#operators")
