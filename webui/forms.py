"""The console's forms. Flask-WTF puts a CSRF token in each; a post without the right one is refused."""
from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional


class LoginForm(FlaskForm):
    username = StringField("Пользователь", validators=[DataRequired(), Length(max=64)])
    password = PasswordField("Пароль", validators=[DataRequired(), Length(max=1024)])


class LogoutForm(FlaskForm):
    pass


class ReviewForm(FlaskForm):
    score = IntegerField("Оценка", validators=[DataRequired()])
    comment = TextAreaField("Комментарий", validators=[Optional(), Length(max=2000)])
