"""The console's forms. Flask-WTF puts a CSRF token in each; a post without the right one is refused."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class LoginForm(FlaskForm):
    username = StringField("Пользователь", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Пароль", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    pass


class ReviewForm(FlaskForm):
    score = IntegerField("Оценка", validators=[DataRequired()])
    comment = TextAreaField("Комментарий", validators=[Optional(), Length(max=2000)])


class SettingsForm(FlaskForm):
    """The policy's fields; the policy itself checks them together (connector.threshold.validate_policy)."""

    enabled = BooleanField("Функция включена")
    scale_min = IntegerField("Шкала от", validators=[Optional()])
    scale_max = IntegerField("Шкала до", validators=[Optional()])
    max_threshold = IntegerField("Порог: оценка ниже него получает тег", validators=[Optional()])
    tag_template = StringField("Шаблон тега", validators=[Optional(), Length(max=255)])
    score_text_template = StringField("Шаблон текста оценки", validators=[Optional(), Length(max=255)])
    rating_window_days = IntegerField("Окно для оценки, дней (0: без ограничения)", validators=[Optional()])
    lock_score = BooleanField("Первая оценка клиента остаётся в силе")


class ReplayForm(FlaskForm):
    pass


class LineOverrideForm(FlaskForm):
    line_number = StringField("Линия", validators=[DataRequired(), Length(max=32)])
    enabled = BooleanField("Функция включена", default=True)
    max_threshold = IntegerField("Порог", validators=[Optional()])
