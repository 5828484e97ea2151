"""The console's forms. Flask-WTF puts a CSRF token in each; a post without the right one is refused."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, HiddenField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from connector.core.validation import line_problem, text_problem


class LoginForm(FlaskForm):
    username = StringField(_l("Пользователь"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Пароль"), validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    pass


class MarkReadForm(FlaskForm):
    """Notifications are marked read by this explicit action only, never by opening a page. "Mark all" marks
    those up to the newest the page knew of (`up_to`): one that came after it was shown stays unread."""

    up_to = HiddenField(validators=[Optional()])


def storable_lines(form, field) -> None:
    """The rule the API applies to a comment (connector.core.validation.text_problem), said in the page's language."""
    if field.data and text_problem(field.data, multiline=True):
        raise ValidationError(_l("Комментарий не может содержать управляющие символы или недопустимый Юникод"))


def storable_text(form, field) -> None:
    """The same rule for one line of text (no tab, no line break)."""
    if field.data and text_problem(field.data):
        raise ValidationError(_l("Поле не может содержать управляющие символы или недопустимый Юникод"))


def line_name(form, field) -> None:
    """The one rule for a line's name (connector.core.validation.line_problem), said in the page's language."""
    if line_problem(field.data or ""):
        raise ValidationError(_l("Линия: от 1 до 32 символов, не только пробелы, без управляющих символов"))


class UnlockForm(FlaskForm):
    """Lift the login throttle of an account and/or an address (admins; audited)."""

    username = StringField(_l("Пользователь"), validators=[Optional(), Length(max=64)])
    address = StringField(_l("Адрес"), validators=[Optional(), Length(max=64)])


class ReviewForm(FlaskForm):
    score = IntegerField(_l("Оценка"), validators=[DataRequired()])
    comment = TextAreaField(_l("Комментарий"), validators=[Optional(), Length(max=2000), storable_lines])


# How a follow-up ended (connector.core.models.FollowUpOutcome), as a supervisor says it closing one.
FOLLOW_UP_OUTCOME_CHOICES = [
    SelectChoice("recovered", _l("перезвонили, клиент удовлетворён")),
    SelectChoice("not_recovered", _l("перезвонили, клиент не удовлетворён")),
    SelectChoice("unreachable", _l("не удалось дозвониться")),
]


class FollowUpCloseForm(FlaskForm):
    """A supervisor closes a call's follow-up: how it ended, and a note (plain text, at most 500 characters)."""

    # No outcome chosen at first: a press of «Закрыть» must not say "клиент удовлетворён" by itself.
    outcome = SelectField(_l("Итог"), choices=[SelectChoice("", _l("— выберите итог —")), *FOLLOW_UP_OUTCOME_CHOICES],
                          validators=[DataRequired()])
    note = TextAreaField(_l("Заметка"), validators=[Optional(), Length(max=500), storable_lines])


# The policy's rule for a score at or above the threshold (connector.core.policy.HighScores), as admins read it.
HIGH_SCORES_CHOICES = [
    SelectChoice("default", _l("как принято в каждой CRM (amoCRM: не писать, Bitrix24: писать)")),
    SelectChoice("ignore", _l("не писать в CRM (как в MANGO)")),
    SelectChoice("record", _l("писать текст оценки, без тега")),
]

HIGH_SCORES_HELP = _l("MANGO не пишет её в CRM, считая ненадёжной; коннектор всё равно хранит её и шлёт в вебхук")


# The policy's fields as the settings page names them (and the audit log after it).
POLICY_LABELS = {
    "enabled": _l("Функция включена"),
    "scale_min": _l("Шкала от"),
    "scale_max": _l("Шкала до"),
    "max_threshold": _l("Порог: оценка ниже него получает тег"),
    "tag_template": _l("Шаблон тега"),
    "score_text_template": _l("Шаблон текста оценки"),
    "rating_window_days": _l("Окно для оценки, дней (0: без ограничения)"),
    "lock_score": _l("Первая оценка клиента остаётся в силе"),
    "high_scores": _l("Оценка на пороге и выше"),
}


# The rating link's settings as their card names them (webui.rating_link), and the audit log after it.
LINK_LABELS = {
    "enabled": _l("Отправлять SMS со ссылкой на оценку"),
    "delay_minutes": _l("Через сколько минут после звонка"),
    "send_from_hour": _l("Отправлять с"),
    "send_until_hour": _l("Отправлять до"),
    "also_scored": _l("Также звонки, которые клиент уже оценил (второе мнение)"),
    "daily_cap": _l("Не больше SMS на один номер в день"),
    "valid_days": _l("Ссылка действует, дней"),
    "scale": _l("Шкала на странице оценки"),
    "template": _l("Текст SMS"),
    "from_extension": _l("Добавочный, с которого отправлять, если у оператора его нет"),
    "sms_sender": _l("Имя отправителя SMS"),
    "company": _l("Название компании на странице оценки"),
    "lines": _l("Линии"),
}

# The alerts' settings as their page names them (webui.alerts), and the audit log after it; and a route's parts.
ALERT_LABELS = {
    "supervisor_below": _l("Оценка супервизора ниже"),
    "divergence": _l("Оценки клиента и супервизора расходятся на"),
    "quiet_from_hour": _l("Тихие часы с"),
    "quiet_until_hour": _l("Тихие часы до"),
    "cap_per_hour": _l("Не больше оповещений в час одному человеку"),
}
ROUTE_LABELS = {"user": _l("Кому"), "line": _l("Линия"), "group": _l("Группа операторов")}


class SettingsForm(FlaskForm):
    """The policy's fields; the policy itself checks them together (connector.core.policy.validate_policy)."""

    enabled = BooleanField(POLICY_LABELS["enabled"])
    scale_min = IntegerField(POLICY_LABELS["scale_min"], validators=[Optional()])
    scale_max = IntegerField(POLICY_LABELS["scale_max"], validators=[Optional()])
    max_threshold = IntegerField(POLICY_LABELS["max_threshold"], validators=[Optional()])
    tag_template = StringField(POLICY_LABELS["tag_template"], validators=[Optional(), Length(max=255)])
    score_text_template = StringField(POLICY_LABELS["score_text_template"], validators=[Optional(), Length(max=255)])
    rating_window_days = IntegerField(POLICY_LABELS["rating_window_days"], validators=[Optional()])
    lock_score = BooleanField(POLICY_LABELS["lock_score"])
    high_scores = SelectField(POLICY_LABELS["high_scores"], choices=HIGH_SCORES_CHOICES, default="default",
                              description=HIGH_SCORES_HELP)


class ReplayForm(FlaskForm):
    pass


INHERIT = ""  # a line's field left to the global setting: nothing stored for it


class LineOverrideForm(FlaskForm):
    """A line's own settings: only what the admin chose is stored; a field left "as in the general settings"
    (an empty threshold) follows them, the global switch included. The inherited choices' labels say what
    the general settings are now (`inherit_from`)."""

    line_number = StringField(_l("Линия"), validators=[DataRequired(_l("Укажите линию")), line_name])
    enabled = SelectField(_l("Функция"), default=INHERIT,
                          choices=[SelectChoice(INHERIT, _l("как в общих настройках")),
                                   SelectChoice("on", _l("включена на этой линии")),
                                   SelectChoice("off", _l("выключена на этой линии"))])
    max_threshold = IntegerField(_l("Порог"), validators=[Optional()])
    high_scores = SelectField(_l("Оценка на пороге и выше"), default=INHERIT,
                              choices=[SelectChoice(INHERIT, _l("как в общих настройках")), *HIGH_SCORES_CHOICES])

    def inherit_from(self, policy, high_scores_labels: dict) -> "LineOverrideForm":
        """Name the general settings in force beside "as in the general settings"."""
        state = _l("включена") if policy.enabled else _l("выключена")
        self.enabled.choices = [SelectChoice(INHERIT, _l("как в общих настройках (сейчас: %(state)s)", state=state)),
                                *self.enabled.choices[1:]]
        rule = high_scores_labels[policy.high_scores]
        self.high_scores.choices = [SelectChoice(INHERIT, _l("как в общих настройках (сейчас: %(rule)s)", rule=rule)),
                                    *self.high_scores.choices[1:]]
        self.max_threshold.description = _l("Пусто — как в общих настройках (сейчас %(threshold)s)",
                                            threshold=policy.max_threshold)
        return self

    def override(self) -> dict:
        """What the admin set for the line, and nothing else."""
        chosen = {}
        if self.enabled.data != INHERIT:
            chosen["enabled"] = self.enabled.data == "on"
        if self.max_threshold.data is not None:
            chosen["max_threshold"] = self.max_threshold.data
        if self.high_scores.data != INHERIT:
            chosen["high_scores"] = self.high_scores.data
        return chosen

    def show(self, override: dict) -> "LineOverrideForm":
        """Fill the form with a line's stored override, for editing."""
        if "enabled" in override:
            self.enabled.data = "on" if override["enabled"] else "off"
        self.max_threshold.data = override.get("max_threshold")
        self.high_scores.data = override.get("high_scores", INHERIT)
        return self


def pbx_secret(form, field) -> None:
    """A key or salt as MANGO issues them: one word of printable characters."""
    value = field.data or ""
    if text_problem(value) or any(c.isspace() for c in value.strip()):
        raise ValidationError(_l("Без пробелов и управляющих символов"))


class MangoConnectionForm(FlaskForm):
    """MANGO OFFICE's key and salt (the account's Integrations → API connector), checked with a harmless
    command before they are stored; never shown back."""

    api_key = StringField(_l("Уникальный код АТС (vpbx_api_key)"),
                          validators=[DataRequired(_l("Укажите уникальный код")), Length(max=128), pbx_secret])
    api_salt = PasswordField(_l("Ключ для создания подписи (vpbx_api_salt)"),
                             validators=[DataRequired(_l("Укажите ключ подписи")), Length(max=128), pbx_secret])
