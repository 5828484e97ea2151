"""The account's time zone in the console: the zone in force for this request (Babel formats every time in
it, the date filters read their days in it, the reports count days in it, the exports write times in it), and
the settings page's "Часовой пояс" card where an admin chooses it. `connector.core.time_zone` decides the zone."""
from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import SelectField

from connector.core import time_zone
from connector.core.models import Role
from webui.common import bp, login_required, services
from webui.labels import zone_label
from webui.settings import settings_page

GROUPS = {"russia": _l("Россия"), "cis": _l("Страны СНГ"), "other": _l("Другие")}


def zone_in_force() -> time_zone.ZoneInForce:
    """The account's zone, read at most once per request (one small query) by whatever asks first: Babel's
    selector, a date filter, an export, the settings card."""
    if "zone_in_force" not in g:
        with services().db.reading() as s:
            g.zone_in_force = time_zone.zone_in_force(s, services().config.CONSOLE_TIMEZONE)
    return g.zone_in_force


def selected_zone() -> str:
    """Flask-Babel's `timezone_selector`: every time a page formats is in the account's zone."""
    return zone_in_force().name


class TimeZoneForm(FlaskForm):
    # Not limited to the choices offered: any zone the zone database knows is valid (as in the API), and the
    # domain says what is wrong with one that is not.
    time_zone = SelectField(_l("Часовой пояс"), validate_choice=False)

    def offer(self, current: str) -> None:
        """The zones, grouped, each named as people call it with its offset: the zone in force among them."""
        self.time_zone.choices = {str(GROUPS[group]): [(name, zone_label(name)) for name in names]
                                  for group, names in time_zone.choices(current).items()}


def section(form: TimeZoneForm | None = None, problem: str | None = None) -> dict:
    """What the card shows: the zone in force and where it comes from, the form (as posted after a refusal)."""
    in_force = zone_in_force()
    if form is None:
        form = TimeZoneForm(formdata=None, time_zone=in_force.name)
    form.offer(in_force.name)
    return {"form": form, "problem": problem, "in_force": in_force,
            "saved": request.method == "GET" and request.args.get("zone_saved") == "1"}


@bp.app_template_global("zone_section")
def _zone_section() -> dict:
    """The partial's data: as posted when a post was refused (`g.zone`), else as stored."""
    return g.get("zone") or section()


@bp.post("/settings/time-zone")
@login_required(Role.ADMIN)
def save_time_zone():
    form = TimeZoneForm()
    if not form.validate_on_submit():  # its only validator is the CSRF token
        problem = _("Форма устарела или подделана: откройте страницу заново")
        g.zone = section(form, problem)  # shown as posted, with the problem
        return settings_page(None, {}, False, code=400)
    try:
        with services().db.transaction() as s:
            time_zone.update_time_zone(s, form.time_zone.data, actor=g.principal.username)
    except time_zone.TimeZoneError:
        problem = _("Такого часового пояса нет: выберите его из списка. Ничего не сохранено.")
        g.zone = section(form, problem)  # shown as posted, with the problem
        return settings_page(None, {}, False, code=422)
    return redirect(url_for("console.settings", zone_saved=1) + "#time-zone")
