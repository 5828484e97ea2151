"""The «Оповещения» page (supervisors and admins): «Мои каналы», where each person sets their own address, turns a
channel on or off, mutes it, sends themselves a test message and links their Telegram chat; and «Правила»
(admins only): the alerts' settings, who gets which line's alerts, the channels' setup, and the people whose
channel the messenger refused. The console only translates: `connector.core.alert_people` and
`connector.delivery.alerts` decide and audit; what they refuse is said beside its field and nothing is saved."""
from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from flask import abort, g, redirect, render_template, request, session, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, Optional

from connector.core import alert_people
from connector.core.alerting import ROUTABLE_ROLES, Channel
from connector.core.calls import line_numbers
from connector.core.models import Role
from connector.core.policy import PolicyError
from connector.core.users import list_users
from connector.console import report_mail
from connector.delivery.alerts import channel_setup as setup, digests, messages, settings as alert_settings, telegram_link
from connector.delivery.contract import CrmError
from connector.wiring import alert_sender, channel_setup
from webui.common import bp, login_required, services, when
from webui.forms import ALERT_LABELS, ROUTE_LABELS
from webui.labels import mail_problem_label, telegram_problem_label
from webui.problems import alert_field_problem, alert_people_problem, alert_setting_problem
from webui.time_zone import zone_in_force

STAFF = (Role.ADMIN, Role.SUPERVISOR)
STALE_FORM = _l("Форма устарела или подделана: откройте страницу заново")

# How long a channel stays quiet, as a person picks it; KEEP is offered only while a mute is on.
KEEP, UNMUTED, HOUR, MORNING, WEEK = "keep", "none", "hour", "morning", "week"
MORNING_HOUR = 9


def muted_until(choice: str, now: datetime, zone: ZoneInfo) -> datetime | None:
    """The moment a mute chosen now ends (None: not muted); "tomorrow morning" is 9:00 by the account's clock."""
    if choice == HOUR:
        return now + timedelta(hours=1)
    if choice == WEEK:
        return now + timedelta(days=7)
    if choice == MORNING:
        tomorrow = now.astimezone(zone).date() + timedelta(days=1)
        return datetime.combine(tomorrow, time(MORNING_HOUR), zone).astimezone(timezone.utc)
    return None


# Each channel's name, as the page and the test message call it.
CHANNEL_NAMES = {Channel.EMAIL: _l("Почта"), Channel.TELEGRAM: _l("Telegram")}
# The test message speaks Russian, as every alert does (connector.delivery.alerts.messages).
TRIAL_NAMES = {Channel.EMAIL: "почта", Channel.TELEGRAM: "Telegram"}
NOT_SET_UP = {Channel.EMAIL: _l("Почта не настроена: администратор указывает почтовый сервер на этой странице, в «Правилах»."),  # noqa: E501
              Channel.TELEGRAM: _l("Telegram не настроен: администратор сохраняет токен бота на этой странице, в «Правилах».")}  # noqa: E501
# A refused field of the SMTP server's form, in words (connector.delivery.alerts.channel_setup.validate_mail).
SMTP_PROBLEMS = {
    "host": _l("Имя или адрес почтового сервера, например smtp.yandex.ru"),
    "port": _l("Порт от 1 до 65535: 587 для STARTTLS, 465 для TLS"),
    "security": _l("Выберите защиту из списка"),
    "username": _l("Не длиннее 254 знаков, одной строкой"),
    "password": _l("Не длиннее 512 знаков, одной строкой"),
    "sender": _l("Адрес отправителя, например qa@example.ru или Контроль качества <qa@example.ru>"),
}
TOKEN_PROBLEM = _l("Токен, который выдал @BotFather, например 123456:ABC-DEF1234ghIkl")

SETTING_HELP = {
    "supervisor_below": _l("Оповещение, когда супервизор ставит оценку ниже этой. 0 — не оповещать."),
    "divergence": _l("Оповещение, когда оценки клиента и супервизора звонка отличаются хотя бы на столько. 0 — не оповещать."),  # noqa: E501
    "cap_per_hour": _l("Остальные придут одной сводкой. 0 — без ограничения."),
}


class ActionForm(FlaskForm):
    """A button's form: its CSRF token only."""


class EmailForm(FlaskForm):
    email = StringField(_l("Адрес почты для оповещений"), validators=[Optional(), Length(max=254)])


class ChannelForm(FlaskForm):
    enabled = BooleanField(_l("Присылать оповещения сюда"))
    mute = SelectField(_l("Заглушить"), validate_choice=False)

    def offer(self, muted: datetime | None) -> "ChannelForm":
        """The mute's choices; while a mute is on, keeping it (its end said in local time) comes first."""
        keep = [SelectChoice(KEEP, _("оставить: заглушено до %(when)s", when=when(muted)))] if muted else []
        self.mute.choices = [*keep, SelectChoice(UNMUTED, _("не заглушать")), SelectChoice(HOUR, _("на 1 час")),
                             SelectChoice(MORNING, _("до 9:00 завтра по времени аккаунта")),
                             SelectChoice(WEEK, _("на неделю"))]
        return self


class SmtpForm(FlaskForm):
    """The types only: `channel_setup.validate_mail` decides."""

    host = StringField(_l("Почтовый сервер"), validators=[Optional(), Length(max=253)])
    port = IntegerField(_l("Порт"), validators=[Optional()])
    security = SelectField(_l("Защита"), validate_choice=False, choices=[
        SelectChoice("starttls", _l("STARTTLS (обычно порт 587)")), SelectChoice("tls", _l("TLS (порт 465)")),
        SelectChoice("none", _l("без шифрования (только сервер в своей сети)"))])
    username = StringField(_l("Логин"), validators=[Optional(), Length(max=254)])
    password = PasswordField(_l("Пароль"), validators=[Optional(), Length(max=512)])
    sender = StringField(_l("Адрес отправителя"), validators=[Optional(), Length(max=254)])

    FIELDS = ("host", "port", "security", "username", "sender")


WEEKDAYS = (_l("понедельник"), _l("вторник"), _l("среда"), _l("четверг"), _l("пятница"), _l("суббота"),
            _l("воскресенье"))
NO_REPORT = "none"


class ReportForm(FlaskForm):
    period = SelectField(_l("Как часто"), validate_choice=False, choices=[
        SelectChoice(NO_REPORT, _l("не присылать")), SelectChoice("daily", _l("каждый день, за вчера")),
        SelectChoice("weekly", _l("каждую неделю, за 7 дней"))])
    hour = SelectField(_l("Во сколько"), coerce=int, validate_choice=False,
                       choices=[SelectChoice(hour, f"{hour}:00") for hour in range(24)])
    weekday = SelectField(_l("В какой день недели"), coerce=int, validate_choice=False,
                          choices=[SelectChoice(n, name) for n, name in enumerate(WEEKDAYS)])


class BotTokenForm(FlaskForm):
    token = PasswordField(_l("Токен бота"), validators=[Optional(), Length(max=200)])


class AlertSettingsForm(FlaskForm):
    """The types only: `alert_settings.save` checks the ranges."""

    supervisor_below = IntegerField(ALERT_LABELS["supervisor_below"], validators=[Optional()])
    divergence = IntegerField(ALERT_LABELS["divergence"], validators=[Optional()])
    quiet_from_hour = SelectField(ALERT_LABELS["quiet_from_hour"], coerce=int, validate_choice=False,
                                  choices=[SelectChoice(hour, f"{hour}:00") for hour in range(24)])
    quiet_until_hour = SelectField(ALERT_LABELS["quiet_until_hour"], coerce=int, validate_choice=False,
                                   choices=[SelectChoice(hour, f"{hour}:00") for hour in range(24)])
    cap_per_hour = IntegerField(ALERT_LABELS["cap_per_hour"], validators=[Optional()])

    FIELDS = ("supervisor_below", "divergence", "quiet_from_hour", "quiet_until_hour", "cap_per_hour")


class RouteForm(FlaskForm):
    # Not limited to the choices: the domain refuses a person who may not receive alerts, in its own words.
    user = SelectField(ROUTE_LABELS["user"], coerce=int, validate_choice=False)
    line = SelectField(ROUTE_LABELS["line"], validate_choice=False)
    group = StringField(ROUTE_LABELS["group"], validators=[Optional(), Length(max=64)])

    def offer(self, people: list, lines: list[str]) -> "RouteForm":
        self.user.choices = [SelectChoice(user.id, user.username) for user in people]
        self.line.choices = [SelectChoice("", _("все линии")), *(SelectChoice(line, line) for line in lines)]
        return self


# --- «Мои каналы» --------------------------------------------------------------------------------------------

def _my_channels(session, user_id: int, now: datetime, posted: dict) -> list[dict]:
    """Each channel as its person sees it: set up here or not, its address in words, on or off, muted until."""
    set_up = setup.read_setup(session, services().config).channels
    person = alert_people.people(session).get(user_id)
    held = digests.held_for(session, user_id)
    rows = []
    for channel in Channel:
        state = person.channels.get(channel) if person else None
        muted = state.muted_until if state and state.muted_until and state.muted_until > now else None
        form = posted.get(channel) or ChannelForm(formdata=None, enabled=state.enabled if state else True,
                                                  mute=KEEP if muted else UNMUTED)
        row = {"channel": channel.value, "name": CHANNEL_NAMES[channel], "set_up": channel in set_up,
               "not_set_up": NOT_SET_UP[channel], "address": alert_people.address(session, user_id, channel),
               "reachable": state is not None, "enabled": bool(state and state.enabled), "muted_until": muted,
               "refused": telegram_problem_label(state.refused) if state else None, "form": form.offer(muted)}
        row["held"] = held.get(channel.value)  # (calls, when their digest goes), or None
        if channel == Channel.TELEGRAM:
            bot = telegram_link.bot_state(session)
            row["bot"] = ({"username": bot.bot_username, "last_error": telegram_problem_label(bot.last_error)}
                          if bot else None)
        rows.append(row)
    return rows


NOTICES = {
    "email": _l("Адрес почты сохранён."),
    "email_removed": _l("Адрес почты убран: по почте оповещения не придут."),
    "channel": _l("Настройки канала сохранены."),
    "unlinked": _l("Telegram отвязан: оповещения туда больше не придут."),
    "settings": _l("Настройки оповещений сохранены."),
    "route_added": _l("Получатель добавлен."),
    "route_removed": _l("Получатель убран."),
    "route_gone": _l("Этого получателя уже нет: ничего не изменилось."),
    "smtp": _l("Почтовый сервер сохранён. Проверьте его: «Отправить проверочное сообщение» в «Моих каналах»."),
    "smtp_forgotten": _l("Почтовый сервер из консоли забыт: действуют настройки окружения, если они есть."),
    "token": _l("Токен бота сохранён: через несколько секунд бот ответит коннектору."),
    "token_forgotten": _l("Токен бота из консоли забыт: действует токен из окружения, если он есть."),
    "report": _l("Расписание отчёта сохранено."),
}


def alerts_page(*, code: int = 200, email_form: EmailForm | None = None, channel_forms: dict | None = None,
                problems: dict | None = None, trial: dict | None = None, link: dict | None = None,
                settings_form: AlertSettingsForm | None = None, route_form: RouteForm | None = None,
                smtp_form: SmtpForm | None = None):
    """The page; the forms hold what was posted after a refusal (None: what is stored). `problems` maps a form's
    field (`email`, `channel`, a setting's name, `route.user` …) to its refusal in words."""
    principal = g.principal
    now = datetime.now(timezone.utc)
    with services().db.reading() as s:
        email = alert_people.address(s, principal.user_id, Channel.EMAIL) if principal.user_id else None
        channels = _my_channels(s, principal.user_id, now, channel_forms or {}) if principal.user_id else []
        rules = _rules(s, settings_form, route_form, smtp_form) if principal.role == Role.ADMIN else None
    if request.method != "GET":  # a post answered with the page: switching the language reopens the page
        g.page_url = url_for(".alerts")
    notice = NOTICES.get(request.args.get("done", "")) if request.method == "GET" else None
    with services().db.reading() as s:
        schedule = report_mail.schedule_of(s, principal.user_id) if principal.user_id else None
    report_form = ReportForm(formdata=None, period=schedule.period if schedule else NO_REPORT,
                             hour=schedule.hour if schedule else 8, weekday=schedule.weekday if schedule else 0)
    return render_template(
        "alerts.html", report_form=report_form, report_state=_report_state(schedule), email_form=email_form or EmailForm(formdata=None, email=email or ""), channels=channels,
        problems=problems or {}, trial=trial, link=link, notice=notice, rules=rules, action_form=ActionForm()), code


def _smtp_values(in_force) -> dict:
    mail = in_force.mail
    if mail is None:
        return {"port": 587, "security": "starttls"}
    return {"host": mail.host, "port": mail.port, "security": mail.security.value, "username": mail.username,
            "sender": mail.sender}


def _report_state(schedule) -> str | None:
    """The person's schedule in words."""
    if schedule is None:
        return None
    if schedule.period == "weekly":
        return _("Приходит каждую неделю: %(day)s, %(hour)s:00, за 7 дней до этого дня.",
                 day=WEEKDAYS[schedule.weekday], hour=schedule.hour)
    return _("Приходит каждый день в %(hour)s:00, за вчерашний день.", hour=schedule.hour)


def _rules(session, settings_form: AlertSettingsForm | None, route_form: RouteForm | None,
           smtp_form: SmtpForm | None = None) -> dict:
    """What «Правила» shows: the settings, the routes, who may receive alerts, the channels' setup, refusals."""
    in_force = setup.read_setup(session, services().config)
    settings = alert_settings.read(session)
    users = list_users(session)
    staff = [user for user in users if user.role in ROUTABLE_ROLES and not user.disabled]
    usernames = {user.id: user.username for user in users}
    refused = [(usernames.get(person.user_id, ""), str(CHANNEL_NAMES[channel]),
                telegram_problem_label(state.refused))
               for person in alert_people.people(session).values()
               for channel, state in person.channels.items() if state.refused]
    bot = telegram_link.bot_state(session)
    return {
        "form": settings_form or AlertSettingsForm(formdata=None, data=settings.as_dict()),
        "help": SETTING_HELP,
        "routes": [{"id": route.id, "username": user.username, "line": route.line_number,
                    "group": route.operator_group} for route, user in alert_people.route_list(session)],
        "route_form": (route_form or RouteForm(formdata=None)).offer(staff, line_numbers(session)),
        "smtp": in_force.mail, "smtp_source": in_force.mail_source.value,
        "smtp_form": smtp_form or SmtpForm(formdata=None, data=_smtp_values(in_force)),
        "telegram": {"set_up": bool(in_force.bot_token), "source": in_force.bot_source.value,
                     "username": bot.bot_username if bot else None,
                     "last_error": telegram_problem_label(bot.last_error) if bot else None},
        "token_form": BotTokenForm(formdata=None),
        "refused": sorted(refused),
    }


TRIAL = "alerts_trial"  # the console session's note of a test message's outcome, shown once


@bp.get("/alerts")
@login_required(*STAFF)
def alerts():
    return alerts_page(trial=session.pop(TRIAL, None))


def _stale(**forms):
    return alerts_page(code=400, problems={"form": str(STALE_FORM)}, **forms)


def _me() -> int:
    """The person's own user id: the page is about themselves (the admin token has no page of its own)."""
    if g.principal.user_id is None:
        abort(403)
    return g.principal.user_id


@bp.post("/alerts/email")
@login_required(*STAFF)
def save_alert_email():
    form = EmailForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            return _stale(email_form=form)
        return alerts_page(code=422, email_form=form, problems={"email": alert_field_problem("email")})
    email = (form.email.data or "").strip()
    try:
        with services().db.transaction() as s:
            alert_people.set_email(s, _me(), email, actor=g.principal.username)
    except alert_people.AlertPeopleError as exc:
        return alerts_page(code=422, email_form=form, problems={"email": alert_people_problem(exc)[1]})
    return redirect(url_for(".alerts", done="email" if email else "email_removed") + "#my-channels")


def _channel(name: str) -> Channel:
    try:
        return Channel(name)
    except ValueError:
        abort(404)


@bp.post("/alerts/channels/<name>")
@login_required(*STAFF)
def save_alert_channel(name: str):
    channel = _channel(name)
    form = ChannelForm()
    if not form.validate_on_submit():
        return _stale(channel_forms={channel: form})
    choice = form.mute.data
    with services().db.transaction() as s:
        until = None
        if choice == KEEP:  # the mute in force stays as it is (None if it ended meanwhile)
            state = alert_people.people(s).get(_me())
            until = state.channels[channel].muted_until if state and channel in state.channels else None
        elif choice in (HOUR, MORNING, WEEK):
            until = muted_until(choice, datetime.now(timezone.utc), ZoneInfo(zone_in_force().name))
        alert_people.set_channel(s, _me(), channel, enabled=form.enabled.data, muted_until=until)
    return redirect(url_for(".alerts", done="channel") + f"#channel-{channel.value}")


@bp.post("/alerts/channels/<name>/test")
@login_required(*STAFF)
def send_alert_test(name: str):
    """A test message to the person's own address, now (not through the queue); the outcome said in words."""
    channel = _channel(name)
    if not ActionForm().validate_on_submit():
        return _stale()
    store = channel_setup(services().config, services().db)
    send = alert_sender(services().config, channel, store)
    with services().db.reading() as s:
        address = alert_people.address(s, _me(), channel)
    if channel not in store.current().channels:
        outcome = {"ok": False, "text": str(NOT_SET_UP[channel])}
    elif not address:
        outcome = {"ok": False, "text": _("Сначала укажите адрес почты.") if channel == Channel.EMAIL
                   else _("Сначала подключите Telegram.")}
    else:
        try:
            send(address, messages.trial_message(TRIAL_NAMES[channel]), "")
            outcome = {"ok": True, "text": _("Отправлено")}
        except CrmError as exc:
            said = mail_problem_label if channel == Channel.EMAIL else telegram_problem_label
            outcome = {"ok": False, "text": _("Не отправлено: %(reason)s", reason=said(exc.message))}
    # Said on the page after a redirect: a reload then shows the page, it does not send another test.
    session[TRIAL] = {"channel": channel.value, "ok": outcome["ok"], "text": str(outcome["text"])}
    return redirect(url_for(".alerts") + f"#channel-{channel.value}")


@bp.post("/alerts/telegram/link")
@login_required(*STAFF)
def link_telegram():
    """A new one-time code; the page (not a redirect: the code stays out of the address and the history) shows
    the bot's link with it, or why there is none yet."""
    if not ActionForm().validate_on_submit():
        return _stale()
    with services().db.reading() as s:
        telegram_set_up = Channel.TELEGRAM in setup.read_setup(s, services().config).channels
    if not telegram_set_up:
        return alerts_page(code=409, problems={"telegram": str(NOT_SET_UP[Channel.TELEGRAM])})
    now = datetime.now(timezone.utc)
    with services().db.transaction() as s:
        bot = telegram_link.bot_state(s)
        username = bot.bot_username if bot else None
        code = telegram_link.start_link(s, _me(), now) if username else None
    if code is None:
        return alerts_page(code=409, link={"url": None})
    return alerts_page(link={"url": telegram_link.deep_link(username, code), "until": now + telegram_link.CODE_TTL})


@bp.post("/alerts/telegram/unlink")
@login_required(*STAFF)
def unlink_telegram():
    if not ActionForm().validate_on_submit():
        return _stale()
    with services().db.transaction() as s:
        alert_people.unlink(s, _me(), Channel.TELEGRAM)
    return redirect(url_for(".alerts", done="unlinked") + "#channel-telegram")


# --- «Правила» (admins) -------------------------------------------------------------------------------------

@bp.post("/alerts/settings")
@login_required(Role.ADMIN)
def save_alert_settings():
    form = AlertSettingsForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            return _stale(settings_form=form)
        problems = {name: alert_setting_problem(name) for name in form.FIELDS if form[name].errors}
        return alerts_page(code=422, settings_form=form, problems=problems)
    changes = {name: form[name].data for name in form.FIELDS}
    problems = {name: alert_setting_problem(name) for name, value in changes.items() if value is None}
    if not problems:
        try:
            with services().db.transaction() as s:  # a refused change rolls back whole
                alert_settings.save(s, changes, g.principal.username)
        except PolicyError as exc:
            problems = {exc.field: alert_setting_problem(exc.field)}
    if problems:
        return alerts_page(code=422, settings_form=form, problems=problems)
    return redirect(url_for(".alerts", done="settings") + "#rules")


@bp.post("/alerts/routes")
@login_required(Role.ADMIN)
def add_alert_route():
    form = RouteForm()
    if not form.validate_on_submit() or form.user.data is None:
        if form.csrf_token.errors:
            return _stale(route_form=form)
        field = next((name for name in ("line", "group") if form[name].errors), "user")
        return alerts_page(code=422, route_form=form, problems={f"route.{field}": alert_field_problem(field)})
    try:
        with services().db.transaction() as s:
            alert_people.add_route(s, form.user.data, form.line.data or "", form.group.data or "",
                                   actor=g.principal.username)
    except alert_people.AlertPeopleError as exc:
        field, problem = alert_people_problem(exc)
        return alerts_page(code=422, route_form=form, problems={f"route.{field}": problem})
    return redirect(url_for(".alerts", done="route_added") + "#routes")


@bp.post("/alerts/routes/<int:route_id>/remove")
@login_required(Role.ADMIN)
def remove_alert_route(route_id: int):
    if not ActionForm().validate_on_submit():
        return _stale()
    with services().db.transaction() as s:
        removed = alert_people.remove_route(s, route_id, actor=g.principal.username)
    return redirect(url_for(".alerts", done="route_removed" if removed else "route_gone") + "#routes")


# --- the channels' set-up (admins) ---------------------------------------------------------------------------

@bp.post("/alerts/smtp")
@login_required(Role.ADMIN)
def save_smtp():
    form = SmtpForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            return _stale(smtp_form=form)
        field = next((name for name in (*form.FIELDS, "password") if form[name].errors), "host")
        return alerts_page(code=422, smtp_form=form, problems={f"smtp.{field}": str(SMTP_PROBLEMS[field])})
    values = {name: form[name].data for name in form.FIELDS}
    try:
        with services().db.transaction() as s:
            setup.save_mail(s, services().config, values, form.password.data or None, actor=g.principal.username)
    except PolicyError as exc:
        return alerts_page(code=422, smtp_form=form, problems={f"smtp.{exc.field}": str(SMTP_PROBLEMS[exc.field])})
    return redirect(url_for(".alerts", done="smtp") + "#channels-setup")


@bp.post("/alerts/smtp/forget")
@login_required(Role.ADMIN)
def forget_smtp():
    if not ActionForm().validate_on_submit():
        return _stale()
    with services().db.transaction() as s:
        setup.forget_mail(s, actor=g.principal.username)
    return redirect(url_for(".alerts", done="smtp_forgotten") + "#channels-setup")


@bp.post("/alerts/telegram/token")
@login_required(Role.ADMIN)
def save_bot_token():
    form = BotTokenForm()
    if not form.validate_on_submit() or not (form.token.data or "").strip():
        if form.csrf_token.errors:
            return _stale()
        return alerts_page(code=422, problems={"token": str(TOKEN_PROBLEM)})
    try:
        with services().db.transaction() as s:
            setup.save_bot_token(s, services().config, form.token.data, actor=g.principal.username)
    except PolicyError:
        return alerts_page(code=422, problems={"token": str(TOKEN_PROBLEM)})
    return redirect(url_for(".alerts", done="token") + "#channels-setup")


@bp.post("/alerts/telegram/token/forget")
@login_required(Role.ADMIN)
def forget_bot_token():
    if not ActionForm().validate_on_submit():
        return _stale()
    with services().db.transaction() as s:
        setup.save_bot_token(s, services().config, None, actor=g.principal.username)
    return redirect(url_for(".alerts", done="token_forgotten") + "#channels-setup")


# --- the person's report e-mail ------------------------------------------------------------------------------

@bp.post("/alerts/report")
@login_required(*STAFF)
def save_report_schedule():
    form = ReportForm()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            return _stale()
        return alerts_page(code=422, problems={"report": _("Выберите значения из списков")})
    period = None if form.period.data == NO_REPORT else form.period.data
    try:
        with services().db.transaction() as s:
            report_mail.subscribe(s, _me(), period, hour=form.hour.data, weekday=form.weekday.data)
    except ValueError:
        return alerts_page(code=422, problems={"report": _("Выберите значения из списков")})
    return redirect(url_for(".alerts", done="report") + "#report-mail")
