"""What the console says when it refuses something. The connector gives its reasons for machines (a field
name and an English sentence, as the API answers them); a person reads them here, in the page's language,
naming what they see on the page: the field's label, the allowed range."""
from __future__ import annotations

from flask_babel import gettext as _, lazy_gettext as _l

from connector.core.policy import Policy, PolicyError
from connector.inbound.link import settings as link_settings

# The list's and the reports' filters, by their query parameter, named as the filter form names them.
FILTER_LABELS = {
    "score_lte": _l("Оценка до"),
    "score_gte": _l("Оценка от"),
    "operator": _l("Оператор"),
    "line": _l("Линия"),
    "date_from": _l("С"),
    "date_to": _l("До (не включая)"),
    "tagged": _l("С тегом"),
    "supervisor_rated": _l("Оценка супервизора"),
    "crm_status": _l("Статус в CRM"),
    "follow_up": _l("Обратная связь"),
    "sort": _l("Порядок"),
}


def filter_problem(field: str) -> str:
    """A refused filter of the call list or the reports (`field`: its query parameter), said for people."""
    label = FILTER_LABELS.get(field)
    if field in ("score_lte", "score_gte"):
        return _("«%(label)s»: введите целое число", label=label)
    if field in ("date_from", "date_to"):
        return _("«%(label)s»: введите дату (день, месяц, год)", label=label)
    if field == "line":
        return _("«%(label)s»: от 1 до 32 символов, не только пробелы, без управляющих символов", label=label)
    if field == "operator":
        return _("«%(label)s»: до 32 символов, без управляющих символов", label=label)
    if field == "after":
        return _("Ссылка «Дальше» устарела или повреждена: откройте список заново")
    if label is not None:
        return _("«%(label)s»: выберите значение из списка", label=label)
    return _("Ссылка повреждена или устарела: откройте страницу из меню заново")


def policy_problem(exc: PolicyError, policy: Policy) -> str:
    """A refused setting (global or a line's), said beside its field. `policy` is the one the change was
    checked as (its scale bounds the threshold)."""
    if exc.field in ("scale_min", "scale_max"):
        return _("Шкала: целые числа от 0 до 99, «от» меньше «до»")
    if exc.field == "max_threshold":
        return _("Порог: от %(low)s до %(high)s (при %(high)s тег получает любая оценка, при %(low)s ни одна)",
                 low=policy.scale_min, high=policy.scale_max + 1)
    if exc.field == "rating_window_days":
        return _("Окно: от 0 (без ограничения) до 3650 дней")
    if exc.field in ("tag_template", "score_text_template"):
        return _("Шаблон: до 255 символов, {score} на месте оценки, без других фигурных скобок и управляющих символов")
    if exc.field in ("high_scores", "enabled", "lock_score"):
        return _("Выберите значение из списка")
    return _("Значение не подходит")


def link_setting_problem(field: str, template: str | None = None, public_base_url: str | None = None) -> str:
    """A refused setting of the rating link, said beside its field. `template` (with the address links start
    with) lets a too long text say how long it gets."""
    ranges = link_settings.RANGES
    if field == "delay_minutes":
        return _("Задержка: от %(low)s до %(high)s минут (неделя)", low=ranges[field][0], high=ranges[field][1])
    if field in ("send_from_hour", "send_until_hour"):
        return _("Часы отправки: конец позже начала (например, с 9:00 до 21:00)")
    if field in ("daily_cap", "valid_days"):
        return _("Целое число от %(low)s до %(high)s", low=ranges[field][0], high=ranges[field][1])
    if field == "template":
        return _template_problem(template, public_base_url)
    if field == "from_extension":
        return _("Добавочный сотрудника: только цифры, до 16")
    if field == "sms_sender":
        return _("Латинские буквы, цифры, пробел, точка, _ и -, до 11 символов; только имя, которое есть у аккаунта в АТС")  # noqa: E501
    if field == "company":
        return _("До %(n)s символов, без управляющих символов", n=link_settings.TEXTS[field])
    return _("Выберите значение из списка")


def _template_problem(template: str | None, public_base_url: str | None) -> str:
    problem = link_settings.template_syntax_problem(template) if template is not None else "unknown"
    if problem == link_settings.MISSING_LINK:
        return _("В тексте должна быть {link}: на её место встанет ссылка. Ничего не сохранено.")
    if problem is not None:
        return _("Можно только {link}, {operator} и {date}, без управляющих символов; фигурную скобку как текст пишите дважды: {{ или }}. Ничего не сохранено.")  # noqa: E501
    length, limit = link_settings.longest_sms(template, public_base_url or "")
    return _("Со ссылкой, самым длинным именем оператора и датой текст займёт %(length)s символов, а SMS вмещает %(limit)s (%(alphabet)s). Сократите текст. Ничего не сохранено.",  # noqa: E501
             length=length, limit=limit, alphabet=_("латиницей") if limit == link_settings.LIMIT_LATIN else _("с кириллицей"))


def alert_setting_problem(field: str) -> str:
    """A refused setting of the alerts (`connector.delivery.alerts.settings`), said beside its field."""
    from connector.delivery.alerts.settings import RANGES

    low, high = RANGES.get(field, (0, 0))
    if field in ("supervisor_below", "divergence"):
        return _("Целое число от %(low)s до %(high)s (0 — не оповещать)", low=low, high=high)
    if field == "cap_per_hour":
        return _("Целое число от %(low)s до %(high)s (0 — без ограничения)", low=low, high=high)
    return _("Выберите час из списка")


def alert_field_problem(field: str) -> str:
    """A field of the alerts' forms the console could not even read (an e-mail address, a route's person, line
    or group), said beside it."""
    if field == "email":
        return _("Адрес почты, например name@example.ru, до 254 символов. Ничего не сохранено.")
    if field == "line":
        return _("Линия: номер АТС, до 32 символов. Выберите её из списка.")
    if field == "group":
        return _("Группа операторов: её код в АТС — латинские буквы, цифры, - и _, до 64 символов.")
    return _("Выберите получателя из списка.")


# What `connector.core.alert_people` refuses (AlertPeopleError's one line, for machines), by the field a person
# corrects; tests/test_alerts_console.py meets each of them, so a reworded refusal is noticed there.
_ALERT_PEOPLE_FIELDS = {
    "an e-mail address such as name@example.ru": "email",
    "no such user": "user",
    "a line is the PBX number, at most 32 characters": "line",
    "an operator group is the PBX's group id: letters, digits, - and _": "group",
}


def alert_people_problem(exc: Exception) -> tuple[str, str]:
    """A refused change to the alerts' people: the field it is said beside, and the words."""
    message = str(exc)
    if message.startswith("alerts go to supervisors and admins only"):
        return "user", _("Оповещения получают только супервизоры и администраторы: оператор не видит чужие звонки. Ничего не добавлено.")  # noqa: E501
    field = _ALERT_PEOPLE_FIELDS.get(message, "user")
    if field == "user" and message == "no such user":
        return field, _("Такого пользователя нет или он отключён. Ничего не добавлено.")
    return field, alert_field_problem(field)
