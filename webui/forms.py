"""The console's forms. Flask-WTF puts a CSRF token in each; a post without the right one is refused."""
from __future__ import annotations

from flask_wtf import FlaskForm
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, IntegerField, PasswordField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from connector.validation import line_problem, text_problem


class LoginForm(FlaskForm):
    username = StringField(_l("Пользователь"), validators=[DataRequired(), Length(max=64)])
    password = PasswordField(_l("Пароль"), validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    pass


class MarkReadForm(FlaskForm):
    """Notifications are marked read by this explicit action only, never by opening a page."""


def storable_lines(form, field) -> None:
    """The rule the API applies to a comment (connector.validation.text_problem), said in the page's language."""
    if field.data and text_problem(field.data, multiline=True):
        raise ValidationError(_l("Комментарий не может содержать управляющие символы или недопустимый Юникод"))


def storable_text(form, field) -> None:
    """The same rule for one line of text (no tab, no line break)."""
    if field.data and text_problem(field.data):
        raise ValidationError(_l("Поле не может содержать управляющие символы или недопустимый Юникод"))


def line_name(form, field) -> None:
    """The one rule for a line's name (connector.validation.line_problem), said in the page's language."""
    if line_problem(field.data or ""):
        raise ValidationError(_l("Линия: от 1 до 32 символов, не только пробелы, без управляющих символов"))


class UnlockForm(FlaskForm):
    """Lift the login throttle of an account and/or an address (admins; audited)."""

    username = StringField(_l("Пользователь"), validators=[Optional(), Length(max=64)])
    address = StringField(_l("Адрес"), validators=[Optional(), Length(max=64)])


class ReviewForm(FlaskForm):
    score = IntegerField(_l("Оценка"), validators=[DataRequired()])
    comment = TextAreaField(_l("Комментарий"), validators=[Optional(), Length(max=2000), storable_lines])


# The policy's rule for a score at or above the threshold (connector.threshold.HighScores), as admins read it.
HIGH_SCORES_CHOICES = [
    SelectChoice("default", _l("как принято в каждой CRM (amoCRM: не писать, Bitrix24: писать)")),
    SelectChoice("ignore", _l("не писать в CRM (как в MANGO)")),
    SelectChoice("record", _l("писать текст оценки, без тега")),
]

HIGH_SCORES_HELP = _l("MANGO не пишет её в CRM, считая ненадёжной; коннектор всё равно хранит её и шлёт в вебхук")


class SettingsForm(FlaskForm):
    """The policy's fields; the policy itself checks them together (connector.threshold.validate_policy)."""

    enabled = BooleanField(_l("Функция включена"))
    scale_min = IntegerField(_l("Шкала от"), validators=[Optional()])
    scale_max = IntegerField(_l("Шкала до"), validators=[Optional()])
    max_threshold = IntegerField(_l("Порог: оценка ниже него получает тег"), validators=[Optional()])
    tag_template = StringField(_l("Шаблон тега"), validators=[Optional(), Length(max=255)])
    score_text_template = StringField(_l("Шаблон текста оценки"), validators=[Optional(), Length(max=255)])
    rating_window_days = IntegerField(_l("Окно для оценки, дней (0: без ограничения)"), validators=[Optional()])
    lock_score = BooleanField(_l("Первая оценка клиента остаётся в силе"))
    high_scores = SelectField(_l("Оценка на пороге и выше"), choices=HIGH_SCORES_CHOICES, default="default",
                              description=HIGH_SCORES_HELP)


class ReplayForm(FlaskForm):
    pass


class LineOverrideForm(FlaskForm):
    line_number = StringField(_l("Линия"), validators=[DataRequired(), line_name])
    enabled = BooleanField(_l("Функция включена"), default=True)
    max_threshold = IntegerField(_l("Порог"), validators=[Optional()])
    high_scores = SelectField(_l("Оценка на пороге и выше"), default="",
                              choices=[SelectChoice("", _l("как у всех")), *HIGH_SCORES_CHOICES])
