"""Flask-WTF forms; each carries a CSRF token checked on submit."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectField, StringField
from wtforms.validators import DataRequired, Length

from .models import TITLE_MAX


class TaskForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    title = StringField("Task", validators=[DataRequired(), Length(max=TITLE_MAX)])
    board_id = SelectField("Board", coerce=int, validators=[DataRequired()])


class ToggleForm(FlaskForm):  # type: ignore[misc]  # flask_wtf ships no type hints
    """No fields: it exists so that the toggle button's POST carries a CSRF token."""
