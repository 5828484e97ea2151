"""The connector's codes as people read them, in the page's language: one label function per kind of code.

The codes stay what they are in the database and the JSON API (they are the contract); only the console's
pages translate them, here and nowhere else. A code this version does not know is shown as stored, so a
newer value is never hidden."""
from __future__ import annotations

from datetime import date, datetime

from babel.dates import format_skeleton
from flask_babel import format_date, get_locale, gettext as _, lazy_gettext as _l

from connector.console.audit import AuditScope, audit_subject
from connector.core.models import (DeliveryStatus, JobStatus, NotificationKind, RequestReason, RequestStatus, Role,
                                   ScanProblem, ScoreOrigin, ScoreSource, SurveyState, TaskState)
from connector.console.status import State
from connector.core import follow_ups
from connector.core.calls import masked_phone
from connector.core.policy import HighScores, ScoreReason, ScoreStatus, score_reason
from connector.core.users import BOOTSTRAP_ADMIN, CLI_ACTOR, TokenState
from connector.delivery.targets.amocrm.kinds import JobKind as AmoCrmKind
from connector.delivery.targets.bitrix24.kinds import JobKind as Bitrix24Kind
from connector.delivery.targets.webhook.kinds import JobKind as WebhookKind
from connector.inbound.link.sms import CHANNEL as SMS_CHANNEL, JobKind as SmsKind
from connector.core import alert_people
from connector.core.alerting import Channel
from connector.delivery.alerts.planning import ALERT, DIGEST
from connector.delivery.alerts import channel_setup, settings as alert_settings
from connector.inbound.link import contacts, settings as link_settings
from connector.inbound.link.settings import RatingScale
from webui.forms import (ALERT_LABELS, FOLLOW_UP_OUTCOME_CHOICES, HIGH_SCORES_CHOICES, LINK_LABELS, POLICY_LABELS,
                         ROUTE_LABELS)


class Words:
    """The console's words for one kind of code, in the page's language: a code it does not know is shown as
    stored (an error a system returned, a value from before a word was given), and none as a dash."""

    def __init__(self, words: dict):
        self.words = words

    def __call__(self, code) -> str:
        if code is None:
            return "—"
        return str(self.words.get(code, code))


role_label = Words({Role.ADMIN: _l("администратор"), Role.SUPERVISOR: _l("супервизор"), Role.OPERATOR: _l("оператор")})


delivery_status_label = Words({
    DeliveryStatus.PENDING: _l("ждёт отправки"),
    DeliveryStatus.DELIVERED: _l("доставлен"),
    DeliveryStatus.UNMATCHED: _l("клиент не найден в CRM"),
    DeliveryStatus.DEAD: _l("не доставлен"),
    DeliveryStatus.SKIPPED: _l("не отправлялся"),
})


# calls.direction
direction_label = Words({"inbound": _l("входящий"), "outbound": _l("исходящий"), "internal": _l("внутренний")})


survey_label = Words({SurveyState.PENDING: _l("ждёт ответа"), SurveyState.ANSWERED: _l("ответ получен"),
                      SurveyState.NO_ANSWER: _l("без ответа"), SurveyState.NOT_OFFERED: _l("не предложен")})


job_status_label = Words({
    JobStatus.PENDING: _l("ждёт отправки"),
    JobStatus.DONE: _l("выполнено"),
    JobStatus.DEAD: _l("не выполнено"),
    JobStatus.UNMATCHED: _l("клиент не найден"),
    JobStatus.WAITING: _l("ждёт другого задания"),
})


job_kind_label = Words({
    AmoCrmKind.LOG_CALL: _l("звонок в журнал CRM"),
    AmoCrmKind.CONTACT: _l("контакт для неизвестного клиента"),
    AmoCrmKind.NOTE: _l("примечание с оценкой"),
    AmoCrmKind.TAGS: _l("теги"),
    AmoCrmKind.TASK: _l("задача по низкой оценке"),
    Bitrix24Kind.B24_CALL: _l("звонок в Bitrix24"),
    Bitrix24Kind.B24_RECORD: _l("запись разговора в Bitrix24"),
    Bitrix24Kind.B24_MARK: _l("оценка в Bitrix24"),
    Bitrix24Kind.B24_TODO: _l("дело по низкой оценке"),
    WebhookKind.SCORED: _l("оценка в вебхук"),
    SmsKind.RATING_REQUEST: _l("SMS со ссылкой для оценки"),
    ALERT: _l("оповещение о звонке"),
    DIGEST: _l("сводка оповещений"),
})


TARGETS = {"amocrm": "amoCRM", "bitrix24": "Bitrix24", "webhook": _l("вебхук"), "none": _l("не подключена"),
           SMS_CHANNEL: _l("SMS клиенту"), Channel.EMAIL: _l("почта"), Channel.TELEGRAM: "Telegram"}


def target_label(name: str | None) -> str:
    """A target by its name (`CRM`'s values); several, comma-separated, each named."""
    if name is None:
        return "—"
    return ", ".join(str(TARGETS.get(part, part)) for part in name.split(","))


score_source_label = Words({ScoreSource.CUSTOMER: _l("клиент"), ScoreSource.SUPERVISOR: _l("супервизор")})


score_origin_label = Words({
    ScoreOrigin.PBX_SURVEY: _l("опрос АТС (клавиши)"),
    ScoreOrigin.PBX_QUALITY: _l("контроль качества АТС"),
    ScoreOrigin.API: _l("API оценок"),
    ScoreOrigin.REVIEW: _l("разбор в консоли"),
    ScoreOrigin.LINK: _l("ссылка в SMS"),
})


# A rating request by link (connector.inbound.link): where it is, and why it was skipped or failed.
request_status_label = Words({
    RequestStatus.SCHEDULED: _l("ждёт времени отправки"),
    RequestStatus.SKIPPED: _l("не будет отправлен"),
    RequestStatus.QUEUED: _l("в очереди на отправку"),
    RequestStatus.ACCEPTED: _l("принят АТС"),
    RequestStatus.SENT: _l("отправлен"),
    RequestStatus.DELIVERED: _l("доставлен"),
    RequestStatus.FAILED: _l("не удался"),
})


request_reason_label = Words({
    RequestReason.DO_NOT_CONTACT: _l("номер в списке «не беспокоить»"),
    RequestReason.DAILY_CAP: _l("этому номеру сегодня уже отправляли"),
    RequestReason.NO_EXTENSION: _l("нет добавочного, с которого отправить"),
    RequestReason.TEXT_TOO_LONG: _l("текст с именем оператора не помещается в SMS"),
    RequestReason.CHANNEL_OFF: _l("оценка по ссылке выключена"),
    RequestReason.SCORED: _l("клиент уже оценил звонок"),
    RequestReason.TOO_LATE: _l("ссылка истекла бы до отправки"),
    RequestReason.BILLING: _l("АТС: недостаточно средств или ограничение тарифа"),
    RequestReason.REFUSED: _l("АТС отклонила запрос"),
    RequestReason.NOT_SENT: _l("АТС не отправила SMS"),
    RequestReason.NOT_DELIVERED: _l("оператор связи не доставил SMS"),
    RequestReason.CARRIER_REFUSED: _l("оператор связи отказал в доставке"),
    RequestReason.PBX_ERROR: _l("ошибка АТС"),
    RequestReason.GAVE_UP: _l("не удалось отправить, попытки исчерпаны"),
})


score_status_label = Words({
    ScoreStatus.ACCEPTED: _l("принята"),
    ScoreStatus.REFUSED: _l("отклонена"),
    ScoreStatus.KEPT: _l("сохранена, в силе первая"),
    ScoreStatus.DUPLICATE: _l("повтор"),
})


high_scores_label = Words({c.value: c.label for c in HIGH_SCORES_CHOICES})


# A call's follow-up after a low score (connector.core.follow_ups): its status as shown, the CRM task's state as the
# read-back found it, and how a supervisor said it ended.
follow_up_status_label = Words({"open": _l("ждёт звонка"), "overdue": _l("просрочена"), "done": _l("выполнена")})
task_state_label = Words({TaskState.OPEN: _l("открыта"), TaskState.COMPLETED: _l("выполнена"),
                          TaskState.DELETED: _l("удалена в CRM")})
follow_up_outcome_label = Words({c.value: c.label for c in FOLLOW_UP_OUTCOME_CHOICES})


def link_answer(scale: str, answer: int, offered: tuple[int, ...]) -> str:
    """An answer on the rating page as people name it: "Хорошо" / "Плохо", or "4 из 5"."""
    if scale == RatingScale.GOOD_BAD:
        return _("Хорошо") if answer else _("Плохо")
    return _("%(value)s из %(top)s", value=answer, top=offered[-1])


# connector.console.reports.FUNNEL
funnel_step_label = Words({"due": _l("К отправке"), "sent": _l("Отправлено"), "delivered": _l("Доставлено"),
                           "opened": _l("Открыто"), "rated": _l("Оценено")})


def reason_label(reason: ScoreReason, *, value: int | None = None, tag: str | None = None,
                 high_scores: str | None = None) -> str:
    """Why a customer score did what it did (connector.core.policy.ScoreReason)."""
    if reason == ScoreReason.BELOW_THRESHOLD:
        return _("ниже порога: тег «%(tag)s»", tag=tag)
    if reason == ScoreReason.AT_OR_ABOVE_THRESHOLD:
        return _("на пороге и выше: %(rule)s", rule=high_scores_label(high_scores or HighScores.DEFAULT))
    if reason == ScoreReason.FEATURE_OFF:
        return _("функция выключена: оценка сохранена, в CRM ничего не отправлено")
    if reason == ScoreReason.ALREADY_IN_FORCE:
        return _("такая же оценка уже в силе")
    if reason == ScoreReason.LOCKED:
        return _("в силе остаётся первая оценка клиента")
    if reason == ScoreReason.TOO_LATE:
        return _("пришла позже окна для оценки")
    return _("не оценка: не число или вне шкалы")


def score_reason_label(score: dict) -> str:
    """A score of the call (as `call_json` lists it) with the reason of its decision."""
    if score.get("source") == ScoreSource.SUPERVISOR:
        return _("не оценка: не число или вне шкалы") if score.get("status") == ScoreStatus.REFUSED else ""
    reason = score_reason(score.get("status"), score.get("value"), bool(score.get("record")), score.get("tag"))
    return reason_label(reason, value=score.get("value"), tag=score.get("tag"),
                        high_scores=score.get("high_scores"))


def decision_label(call: dict) -> str:
    """The decision in force for the call's customer score (`call_json`'s `decision`)."""
    if call.get("customer_score") is None:
        return ""
    decision = call["decision"]
    reason = score_reason(ScoreStatus.ACCEPTED, call["customer_score"], decision["record"], decision["tag"])
    return reason_label(reason, value=call["customer_score"], tag=decision["tag"],
                        high_scores=decision["high_scores"])


state_label = Words({
    State.OK: _l("в порядке"),
    State.NONE: _l("не подключена"),
    State.LAGGING: _l("отстаёт: события ждут обработки больше минуты"),
    State.BLOCKED: _l("заблокирована"),
    State.SCAN_FAILING: _l("сбор оценок из статистики не удаётся"),
    State.FAILING: _l("доставка не удаётся больше 5 минут, попытки продолжаются"),
    State.PAUSED: _l("приостановлена: задания не отправляются, пока подключение не восстановят"),
})


SCAN_PROBLEMS = {
    ScanProblem.BLOCKED: _l("АТС заблокировала доступ к API на время"),
    ScanProblem.COOLING_DOWN: _l("пауза после ошибочного запроса к АТС"),
    ScanProblem.RATE_LIMITED: _l("слишком много запросов к АТС: повтор чуть позже"),
    ScanProblem.UNAVAILABLE: _l("АТС недоступна или не ответила понятно"),
    ScanProblem.REFUSED: _l("АТС отказала в запросе: проверьте права ключа API и настройки статистики"),
    ScanProblem.REPORT_FAILED: _l("АТС не подготовила отчёт статистики"),
    ScanProblem.REPORT_LATE: _l("отчёт статистики АТС не был готов вовремя"),
}


def scan_problem_label(code: str | None) -> str:
    if code is None:  # stored before the problems had codes
        return _("причина не записана")
    return str(SCAN_PROBLEMS.get(code, code))


# connector.inbound.mango.scanner.WINDOWS
scan_window_label = Words({"recent": _l("за последние полчаса"), "day": _l("за последние сутки"),
                           "days": _l("за последние дни")})


# The PBX's callbacks by their path (MANGO's names), and the other ways a fact reaches the inbox.
EVENT_KINDS = {
    "events/call": _l("состояние звонка"),
    "events/summary": _l("итоги звонка"),
    "events/recording": _l("запись разговора"),
    "events/record/added": _l("запись сохранена в облаке АТС"),
    "events/dtmf": _l("клиент нажал клавиши (опрос)"),
    "scores": _l("оценка через API"),
    "cc/call:customer": _l("оценка клиента из контроля качества АТС"),
    "cc/call:marks": _l("анкета супервизора из контроля качества АТС"),
}


def event_kind_label(kind: str | None) -> str:
    if kind in EVENT_KINDS:
        return str(EVENT_KINDS[kind])
    return _("другое событие АТС (%(kind)s)", kind=kind)


EVENT_SOURCES = {"mango": _l("АТС (MANGO)"), "mango_quality": _l("контроль качества АТС"),
                 "scores_api": _l("API оценок"), "link": _l("оценка по ссылке")}


def event_source_label(source: str | None) -> str:
    """Where a timeline entry came from: an inbox source, or a target's name."""
    return str(EVENT_SOURCES[source]) if source in EVENT_SOURCES else target_label(source)


LINK_STEPS = {"sent": _l("SMS со ссылкой для оценки отправлено"), "delivered": _l("SMS со ссылкой доставлено"),
              "opened": _l("клиент открыл ссылку для оценки"), "rated": _l("клиент оценил звонок по ссылке")}


def timeline_what(entry: dict) -> str:
    """One entry of `connector.core.calls.call_timeline`: a stored event, a job done (or not) in a target, or
    a step of the rating request by link."""
    if "event" in entry:
        return event_kind_label(entry["event"])
    if "link" in entry:
        return str(LINK_STEPS[entry["link"]])
    return _("%(job)s: %(status)s", job=job_kind_label(entry["job"]), status=job_status_label(entry["status"]))


# What Telegram answered, as connector.delivery.telegram words it for the log (English, with the chat's id), in
# the page's language: the person or the admin reads what to do, not the Bot API's description. Text it does not
# know is shown as stored.
TELEGRAM_PROBLEMS = (
    ("bot was blocked by the user", _l("бот заблокирован в Telegram")),
    ("user is deactivated", _l("аккаунт Telegram удалён")),
    ("bot was kicked", _l("бота удалили из группы")),
    ("knows no chat", _l("Telegram не знает этот чат")),
    ("refused the bot token", _l("Telegram не принял токен бота: сохраните токен, который выдал @BotFather")),
    ("to a webhook", _l("у бота настроен вебхук, поэтому коннектор не читает его сообщения: удалите вебхук (deleteWebhook) или возьмите другого бота")),  # noqa: E501
)


def _said_as(problems: tuple, text: str | None) -> str | None:
    """A logged problem in the page's words: the first phrase of `problems` it contains; else as stored."""
    if not text:
        return text
    lowered = text.lower()
    return next((str(words) for phrase, words in problems if phrase in lowered), text)


def telegram_problem_label(text: str | None) -> str | None:
    return _said_as(TELEGRAM_PROBLEMS, text)


# What the SMTP server answered, as connector.delivery.mail words it for the log, in the page's language.
MAIL_PROBLEMS = (
    ("refused the login", _l("почтовый сервер не принял логин или пароль")),
    ("offers no starttls", _l("почтовый сервер не поддерживает STARTTLS: выберите TLS (порт 465)")),
    ("certificate is not trusted", _l("сертификату почтового сервера нет доверия")),
    ("did not answer", _l("почтовый сервер не отвечает: проверьте его адрес и порт")),
)


def mail_problem_label(text: str | None) -> str | None:
    return _said_as(MAIL_PROBLEMS, text)


notification_kind_label = Words({NotificationKind.REVIEW: _l("Разбор вашего звонка"),
                                 NotificationKind.LOW_SCORE: _l("Низкая оценка"),
                                 NotificationKind.ALERT_REFUSED: _l("Оповещение не доставлено: Telegram отключён, подключите его заново в «Оповещениях»")})  # noqa: E501


token_state_label = Words({TokenState.ACTIVE: _l("действует"), TokenState.EXPIRED: _l("истёк"),
                           TokenState.REVOKED: _l("отозван")})


# --- the audit log -------------------------------------------------------------------------------------

# The connections made on the settings page, each audited under its own scope (named where it is written).
CONNECTION_SCOPES = {
    "mango_credentials": _l("Подключение MANGO OFFICE"),
    "amocrm_connection": _l("Подключение amoCRM"),
    "bitrix24_install": _l("Подключение Bitrix24"),
    "webhook_connection": _l("Исходящий вебхук"),
    "webhook_test": _l("Тестовое сообщение вебхука"),
}


# The rating link's own scopes (connector.inbound.link).
LINK_SCOPES = {link_settings.SCOPE: _l("Оценка по ссылке (SMS)"), contacts.SCOPE: _l("Список «не беспокоить»")}
# The alerts' scopes (connector.delivery.alerts.settings, connector.core.alert_people), each with its fields' names.
ALERT_SCOPES = {alert_settings.SCOPE: (_l("Оповещения: правила"), ALERT_LABELS),
                alert_people.ROUTES_SCOPE: (_l("Оповещения: кто получает"), ROUTE_LABELS),
                channel_setup.SMTP_SCOPE: (_l("Оповещения: почтовый сервер"), {
                    "host": _l("Почтовый сервер"), "port": _l("Порт"), "security": _l("Защита"),
                    "username": _l("Логин"), "password": _l("Пароль"), "sender": _l("Адрес отправителя")}),
                channel_setup.TOKEN_AUDIT: (_l("Оповещения: бот Telegram"), {"token": _l("Токен бота")})}
# The SMTP server's protection (connector.delivery.mail.MailSecurity), in the audit log.
mail_security_label = Words({"starttls": "STARTTLS", "tls": "TLS", "none": _l("без шифрования")})


def audit_scope_label(scope: str) -> str:
    if scope == follow_ups.AUDIT_SCOPE:
        return _("Обратная связь с клиентом")
    if scope in CONNECTION_SCOPES:
        return str(CONNECTION_SCOPES[scope])
    if scope in LINK_SCOPES:
        return str(LINK_SCOPES[scope])
    if scope in ALERT_SCOPES:
        return str(ALERT_SCOPES[scope][0])
    subject = audit_subject(scope)
    if subject.kind == AuditScope.POLICY:
        return _("Общие настройки")
    if subject.kind == AuditScope.ACCOUNT:
        return _("Настройки аккаунта")
    if subject.kind == AuditScope.LINE:
        return _("Настройки линии %(line)s", line=subject.name)
    if subject.kind == AuditScope.USER_MAP:
        return _("Сотрудники %(target)s по добавочным", target=target_label(subject.name))
    if subject.kind == AuditScope.USER:
        return _("Пользователь %(user)s", user=subject.name)
    if subject.kind == AuditScope.LOGIN:
        if subject.name and subject.address:
            return _("Вход %(user)s с адреса %(address)s", user=subject.name, address=subject.address)
        if subject.name:
            return _("Вход %(user)s", user=subject.name)
        return _("Входы с адреса %(address)s", address=subject.address)
    return scope


AUDIT_FIELDS = {
    **POLICY_LABELS,
    "password": _l("Пароль"),
    "disabled": _l("Отключён"),
    "failures": _l("Неудачных входов"),
    "locked": _l("Вход заблокирован"),
    "time_zone": _l("Часовой пояс"),
    "email": _l("Адрес почты для оповещений"),
}
ON_OFF_FIELDS = ("enabled", "lock_score")  # switches: said "on" / "off"
audit_field_words = Words(AUDIT_FIELDS)


CONTACT_FIELDS = {"number": _l("Номер"), "source": _l("Кто добавил")}


FOLLOW_UP_FIELDS = {"call_id": _l("Звонок"), "status": _l("Состояние"), "outcome": _l("Итог"),
                    "note": _l("Заметка")}


def audit_field_label(scope: str, field: str) -> str:
    if scope == follow_ups.AUDIT_SCOPE:
        return str(FOLLOW_UP_FIELDS.get(field, field))
    if scope == link_settings.SCOPE:
        return str(LINK_LABELS.get(field, field))
    if scope == contacts.SCOPE:
        return str(CONTACT_FIELDS.get(field, field))
    if scope in ALERT_SCOPES:
        return str(ALERT_SCOPES[scope][1].get(field, field))
    subject = audit_subject(scope)
    if subject.kind == AuditScope.USER_MAP:
        return _("добавочный %(extension)s", extension=field)
    if field.startswith("token "):
        return _("Токен %(id)s", id=field.removeprefix("token "))
    return audit_field_words(field)


# Who made a change: a console user by name, or the admin token, or the command line.
actor_label = Words({BOOTSTRAP_ADMIN.username: _l("токен администратора (ADMIN_TOKEN)"),
                     CLI_ACTOR: _l("командная строка"),
                     contacts.CUSTOMER_ACTOR: _l("клиент, на странице оценки")})


password_value_label = Words({"old": _l("прежний"), "new": _l("новый")})


# Who put a number on the do-not-contact list (`do_not_contact.source`).
contact_source_label = Words({contacts.ContactSource.ADMIN: _l("администратор"),
                              contacts.ContactSource.CUSTOMER: _l("клиент, на странице оценки")})


# The rating page's scale (the rating link's setting), in short.
rating_scale_label = Words({RatingScale.GOOD_BAD: _l("хорошо или плохо"), RatingScale.FIVE: _l("от 1 до 5"),
                            RatingScale.SURVEY: _l("как в опросе АТС")})


def link_lines_value(lines: dict) -> str:
    """The rating link's per-line switches as the audit log shows them: "74950000002: выкл."."""
    if not lines:
        return _("все линии как общий выключатель")
    return ", ".join(f"{line}: {_('вкл.') if override.get('enabled') else _('выкл.')}"
                     for line, override in sorted(lines.items()))


def audit_value(field: str, value) -> str:
    """A value before or after a change, as the settings page would show it."""
    if value is None:
        return _("не задано")
    if isinstance(value, bool):
        if field in ON_OFF_FIELDS:
            return _("вкл.") if value else _("выкл.")
        return _("да") if value else _("нет")
    if field == "high_scores":
        return high_scores_label(value)
    if field == "time_zone":
        return zone_label(value)
    if field == "password":
        return password_value_label(value)
    if field == "source":
        return contact_source_label(value)
    if field == "outcome":
        return follow_up_outcome_label(value)
    if field == "scale":
        return rating_scale_label(value)
    if field == "security":
        return mail_security_label(value)
    if field == "lines" and isinstance(value, dict):
        return link_lines_value(value)
    if field.startswith("token "):
        return token_state_label(value)
    if field in ("quiet_from_hour", "quiet_until_hour") and isinstance(value, int):
        return f"{value}:00"
    if field in ("line", "group") and value == "":  # an alert route's "any"
        return _("все линии") if field == "line" else _("все группы")
    if value == "":
        return _("пусто")
    return str(value)


def day_label(day: str | date | None) -> str:
    """A calendar day (ISO text, as the reports give it) as the page's language writes it."""
    if not day:
        return "—"
    if isinstance(day, str):
        try:
            day = datetime.fromisoformat(day).date()
        except ValueError:
            return day
    return format_date(day, "short")


def short_day_label(day: str | date) -> str:
    """A day and month only, as the page's language writes them ("22.11", "11/22"): a chart's x axis, where the
    year is the table's to tell."""
    if isinstance(day, str):
        day = datetime.fromisoformat(day).date()
    return format_skeleton("dM", day, locale=get_locale())


def zone_label(name: str | None, at: datetime | None = None) -> str:
    """A time zone as people call it, in the page's language, with its offset from UTC (at `at`, now unless
    given): "Москва (UTC+3)", "Yekaterinburg (UTC+5)". A name the zone database does not know is shown as
    stored."""
    from zoneinfo import ZoneInfo

    from babel.dates import get_timezone_location

    from connector.core.time_zone import zone_problem

    if not name:
        return "—"
    if zone_problem(name):
        return str(name)
    if name in ("UTC", "Etc/UTC"):
        return _("Всемирное координированное время (UTC)")
    zone = ZoneInfo(name)
    offset = int((at or datetime.now(zone)).astimezone(zone).utcoffset().total_seconds()) // 60
    hours, minutes = divmod(abs(offset), 60)
    shown = f"UTC{'+' if offset >= 0 else '-'}{hours}" + (f":{minutes:02d}" if minutes else "")
    city = get_timezone_location(zone, locale=str(get_locale() or "ru"), return_city=True)
    return f"{city} ({shown})"


FILTERS = {
    "role": role_label, "delivery_status": delivery_status_label, "job_status": job_status_label,
    "job_kind": job_kind_label, "direction": direction_label, "survey": survey_label, "target": target_label,
    "score_source": score_source_label,
    "score_origin": score_origin_label, "score_status": score_status_label, "score_reason": score_reason_label,
    "decision": decision_label, "state": state_label, "scan_problem": scan_problem_label,
    "scan_window": scan_window_label, "timeline_what": timeline_what, "event_source": event_source_label,
    "notification_kind": notification_kind_label, "token_state": token_state_label,
    "audit_scope": audit_scope_label, "actor": actor_label, "high_scores": high_scores_label, "day": day_label,
    "masked_phone": masked_phone, "zone": zone_label, "request_status": request_status_label,
    "request_reason": request_reason_label, "funnel_step": funnel_step_label, "contact_source": contact_source_label,
    "follow_up_status": follow_up_status_label, "task_state": task_state_label,
    "follow_up_outcome": follow_up_outcome_label,
}
