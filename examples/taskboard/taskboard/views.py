"""Server-rendered pages: boards and their tasks, adding a task, toggling one done."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import selectinload

from .forms import TaskForm, ToggleForm
from .models import Board, Task, db

bp = Blueprint("views", __name__)


def _boards() -> list[Board]:
    # selectinload: one query for the boards and one for all their tasks, not one per board.
    query = sa.select(Board).options(selectinload(Board.tasks)).order_by(Board.id)
    return list(db.session.scalars(query))


def _back() -> str:
    """Where to go after a POST: the form's `next` if it is a path on this site, else the index."""
    target = request.form.get("next", "")
    # Only same-site paths: "//evil.example" or "https://…" would make this an open redirect.
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("views.index")


def _task_form(boards: list[Board]) -> TaskForm:
    form = TaskForm()
    form.board_id.choices = [(board.id, board.name) for board in boards]
    return form


@bp.get("/")
def index() -> ResponseReturnValue:
    boards = _boards()
    return render_template("index.html", boards=boards, form=_task_form(boards), toggle_form=ToggleForm())


@bp.get("/boards/<int:board_id>")
def board(board_id: int) -> ResponseReturnValue:
    found = db.get_or_404(Board, board_id)
    form = _task_form([found])
    form.board_id.data = found.id
    return render_template("board.html", board=found, form=form, toggle_form=ToggleForm())


@bp.post("/tasks")
def create_task() -> ResponseReturnValue:
    boards = _boards()
    form = _task_form(boards)
    if not form.validate_on_submit():
        # Re-render with the errors and keep what the user typed; 400 so clients and tests can tell.
        return render_template("index.html", boards=boards, form=form, toggle_form=ToggleForm()), 400
    board_id = form.board_id.data
    title = (form.title.data or "").strip()
    db.session.add(Task(board_id=board_id, title=title))
    db.session.commit()
    flash(f"Added “{title}”.", "success")
    return redirect(_back(), code=303)


@bp.post("/tasks/<int:task_id>/toggle")
def toggle_task(task_id: int) -> ResponseReturnValue:
    if not ToggleForm().validate_on_submit():
        abort(400)
    task = db.get_or_404(Task, task_id)
    task.done = not task.done
    db.session.commit()
    # app.js posts with Accept: application/json to update the row in place.
    if request.accept_mimetypes.best == "application/json":
        return jsonify(task.to_dict())
    return redirect(_back(), code=303)
