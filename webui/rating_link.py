"""The settings page's "Оценка по ссылке (SMS)" card and its do-not-contact list (admins only). The console only
translates: `connector.inbound.link.settings` checks and stores the settings (the authority: what it refuses is
said beside its field and nothing is saved), `connector.inbound.link.contacts` keeps the list."""
from __future__ import annotations

from flask import g, redirect, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Optional

from connector.core.calls import line_numbers
from connector.core.models import Role
from connector.core.policy import PolicyError
from connector.core.runtime_settings import current_policy
from connector.inbound.link import contacts, rules, settings as link_settings
from connector.inbound.link.settings import RatingScale
from webui.common import bp, login_required, services
from webui.forms import LINK_LABELS
from webui.problems import link_setting_problem
from webui.settings import settings_page

LINK_HELP = {
    "delay_minutes": _l("120 — через два часа. Запрос, который пришёлся бы на ночь, ждёт утра."),
    "also_scored": _l("Обычно SMS уходит только тем, кто не ответил на опрос АТС."),
    "daily_cap": _l("От %(low)s до %(high)s: клиент, звонивший несколько раз, не получит больше.",
                    low=link_settings.RANGES["daily_cap"][0], high=link_settings.RANGES["daily_cap"][1]),
    "valid_days": _l("От %(low)s до %(high)s, и не дольше окна для оценки из общих настроек.",
                     low=link_settings.RANGES["valid_days"][0], high=link_settings.RANGES["valid_days"][1]),
    "template": _l("{link} — ссылка на страницу оценки (обязательно), {operator} — имя оператора, {date} — дата звонка. Проверяется длина с самой длинной ссылкой и именем: не больше %(cyrillic)s символов с кириллицей или %(latin)s латиницей.",  # noqa: E501
                   cyrillic=link_settings.LIMIT_CYRILLIC, latin=link_settings.LIMIT_LATIN),
    "from_extension": _l("SMS уходит с добавочного оператора звонка; если его нет — с этого. Оплата SMS списывается по этому сотруднику."),  # noqa: E501
    "sms_sender": _l("Пусто — имя по умолчанию в АТС. Только имя, которое есть у аккаунта: латиница, цифры, пробел, . _ -, до 11 символов."),  # noqa: E501
    "company": _l("Страница оценки показывает только его и дату звонка."),
}
INHERIT, ON, OFF = "", "on", "off"  # a line's choice: as the card's switch, on, off
LINE_FIELD = "line:"  # a line's select is posted as `line:<number>`
LIST_SHOWN = 200  # the newest numbers the card lists


class RatingLinkForm(FlaskForm):
    """Every setting of the channel; the types only: `link_settings.validate` decides the rest."""

    enabled = BooleanField(LINK_LABELS["enabled"])
    delay_minutes = IntegerField(LINK_LABELS["delay_minutes"], validators=[Optional()])
    send_from_hour = SelectField(LINK_LABELS["send_from_hour"], coerce=int, validate_choice=False,
                                 choices=[SelectChoice(hour, f"{hour}:00") for hour in range(24)])
    send_until_hour = SelectField(LINK_LABELS["send_until_hour"], coerce=int, validate_choice=False,
                                  choices=[SelectChoice(hour, f"{hour}:00") for hour in range(1, 25)])
    also_scored = BooleanField(LINK_LABELS["also_scored"])
    daily_cap = IntegerField(LINK_LABELS["daily_cap"], validators=[Optional()])
    valid_days = IntegerField(LINK_LABELS["valid_days"], validators=[Optional()])
    scale = SelectField(LINK_LABELS["scale"], validate_choice=False)
    template = TextAreaField(LINK_LABELS["template"])
    from_extension = StringField(LINK_LABELS["from_extension"])
    sms_sender = StringField(LINK_LABELS["sms_sender"])
    company = StringField(LINK_LABELS["company"])

    FIELDS = ("enabled", "delay_minutes", "send_from_hour", "send_until_hour", "also_scored", "daily_cap",
              "valid_days", "scale", "template", "from_extension", "sms_sender", "company")


class NumberForm(FlaskForm):
    number = StringField(_l("Номер телефона"))


def scale_choices(policy) -> list[SelectChoice]:
    """Each scale the page may ask on, with what its answers become on the connector's scale in force."""
    def mapped(scale: RatingScale) -> str:
        return ", ".join(f"{answer}→{rules.score_of(scale, answer, policy)}" for answer in rules.answers(scale, policy))

    good, bad = (rules.score_of(RatingScale.GOOD_BAD, answer, policy) for answer in (1, 0))
    return [
        SelectChoice(RatingScale.GOOD_BAD.value, _("хорошо или плохо (хорошо = %(good)s, плохо = %(bad)s)",
                                                   good=good, bad=bad)),
        SelectChoice(RatingScale.FIVE.value, _("от 1 до 5 (%(mapped)s)", mapped=mapped(RatingScale.FIVE))),
        SelectChoice(RatingScale.SURVEY.value, _("как в опросе АТС, от %(low)s до %(high)s (оценка как есть)",
                                                 low=policy.scale_min, high=policy.scale_max)),
    ]


def section(form: RatingLinkForm | None = None, errors: dict | None = None,
            line_choices: dict[str, str] | None = None) -> dict:
    """What the card shows: the settings in force (or as posted after a refusal), when they were saved, the
    lines calls came on with each one's choice."""
    with services().db.reading() as s:
        stored, saved_at = link_settings.read(s)
        policy = current_policy(s, services().ingest.initial_policy)
        known = [line for line in line_numbers(s) if link_settings.LINE.fullmatch(line)]
    if form is None:
        form = RatingLinkForm(formdata=None, data=stored.as_dict())
    form.scale.choices = scale_choices(policy)
    if line_choices is None:
        line_choices = {line: ON if o["enabled"] else OFF for line, o in stored.lines.items()}
    lines = sorted(set(known) | set(stored.lines) | set(line_choices))
    return {"form": form, "errors": errors or {}, "saved_at": saved_at, "help": LINK_HELP, "enabled": stored.enabled,
            "lines": [(line, line_choices.get(line, INHERIT)) for line in lines],
            "saved": request.method == "GET" and request.args.get("link_saved") == "1"}


@bp.app_template_global("link_section")
def _link_section() -> dict:
    """The card's data: as posted when a post was refused (`g.rating_link`), else as stored."""
    return g.get("rating_link") or section()


def _posted_lines() -> dict[str, str]:
    return {name.removeprefix(LINE_FIELD): value for name, value in request.form.items()
            if name.startswith(LINE_FIELD) and value in (INHERIT, ON, OFF)}


@bp.post("/settings/rating-link")
@login_required(Role.ADMIN)
def save_rating_link():
    form = RatingLinkForm()
    chosen = _posted_lines()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            errors = {"form": _("Форма устарела или подделана: откройте страницу заново")}
        else:
            errors = {name: link_setting_problem(name) for name in form.FIELDS if form[name].errors}
        g.rating_link = section(form, errors, chosen)
        return settings_page(None, {}, False, code=400)
    changes = {name: form[name].data for name in form.FIELDS}
    changes.update({name: (changes[name] or "").strip() for name in ("from_extension", "sms_sender", "company")})
    errors = {name: _("обязательное поле") for name, value in changes.items() if value is None}
    if not errors:
        changes["lines"] = {line: {"enabled": value == ON} for line, value in chosen.items() if value != INHERIT}
        base_url = services().config.PUBLIC_BASE_URL
        try:
            with services().db.transaction() as s:  # a refused change rolls back whole
                link_settings.save(s, changes, base_url, actor=g.principal.username)
        except PolicyError as exc:
            errors = {exc.field: link_setting_problem(exc.field, changes.get("template"), base_url)}
    if errors:
        g.rating_link = section(form, errors, chosen)
        return settings_page(None, {}, False, code=422)
    return redirect(url_for("console.settings", link_saved=1) + "#rating-link")


# --- the do-not-contact list --------------------------------------------------------------------------------

NOTICES = {"added": _l("Номер добавлен в список: SMS с просьбой об оценке на него не уйдут."),
           "already": _l("Этот номер уже в списке: ничего не изменилось."),
           "removed": _l("Номер убран из списка."),
           "not_listed": _l("Этого номера в списке уже нет: ничего не изменилось.")}


def contacts_section(form: NumberForm | None = None, problem: str | None = None) -> dict:
    with services().db.reading() as s:
        rows = [{"number": row.number, "source": row.source, "actor": row.actor, "added_at": row.added_at}
                for row in contacts.listed(s, limit=LIST_SHOWN)]
        total = contacts.count(s)
    notice = NOTICES.get(request.args.get("dnc", "")) if request.method == "GET" else None
    return {"form": form or NumberForm(formdata=None), "remove_form": NumberForm(formdata=None), "rows": rows,
            "total": total, "shown": LIST_SHOWN, "problem": problem, "notice": notice}


@bp.app_template_global("contacts_section")
def _contacts_section() -> dict:
    return g.get("contacts") or contacts_section()


def _refused_number(form: NumberForm, problem: str, code: int):
    g.contacts = contacts_section(form, problem)  # shown as typed, with the problem
    return settings_page(None, {}, False, code=code)


@bp.post("/settings/do-not-contact")
@login_required(Role.ADMIN)
def add_contact():
    form = NumberForm()
    if not form.validate_on_submit():
        return _refused_number(form, _("Форма устарела или подделана: откройте страницу заново"), 400)
    try:
        with services().db.transaction() as s:
            added = contacts.add(s, form.number.data or "", contacts.ContactSource.ADMIN, g.principal.username)
    except ValueError:
        problem = _("Номер: 11 цифр, начиная с +7, 7 или 8, например +7 916 123-45-67. Ничего не добавлено.")
        return _refused_number(form, problem, 422)
    # The number stays out of the address: addresses land in the browser's history and the proxy's log.
    return redirect(url_for("console.settings", dnc="added" if added else "already") + "#do-not-contact")


@bp.post("/settings/do-not-contact/remove")
@login_required(Role.ADMIN)
def remove_contact():
    form = NumberForm()
    if not form.validate_on_submit():
        return _refused_number(NumberForm(formdata=None), _("Форма устарела или подделана: откройте страницу заново"),
                               400)
    with services().db.transaction() as s:
        removed = contacts.remove(s, form.number.data or "", actor=g.principal.username)
    return redirect(url_for("console.settings", dnc="removed" if removed else "not_listed") + "#do-not-contact")
