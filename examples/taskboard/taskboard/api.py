"""JSON API under /api/: tasks CRUD plus the small endpoints the benchmarks and tests call."""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from .models import TITLE_MAX, Board, Task, db

bp = Blueprint("api", __name__, url_prefix="/api")

# /api/cpu: this many loop steps take roughly 1 ms of CPython time on a current core.
CPU_DEFAULT_N = 16_000
DB_SAMPLE = 5


class ApiError(Exception):
    """A client mistake reported as {"error": message} with the given status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@bp.errorhandler(ApiError)
def _api_error(error: ApiError) -> ResponseReturnValue:
    return jsonify(error=error.message), error.status


@bp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> ResponseReturnValue:
    # API clients get JSON for 404/405/413 too, never an HTML error page.
    return jsonify(error=error.description), error.code or 500


def _json_object() -> dict[str, Any]:
    if not request.is_json:
        raise ApiError("Send a JSON object with Content-Type: application/json.", 415)
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError("The body must be a JSON object.")
    return body


def _title(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ApiError("'title' must be a non-empty string.")
    title = value.strip()
    if len(title) > TITLE_MAX:
        raise ApiError(f"'title' must be at most {TITLE_MAX} characters.")
    return title


def _done(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError("'done' must be true or false.")
    return value


def _board_id(value: Any) -> int:
    # bool is an int subclass in Python; `true` is not a board id.
    if not isinstance(value, int) or isinstance(value, bool):
        raise ApiError("'board_id' must be an integer.")
    if db.session.get(Board, value) is None:
        raise ApiError(f"Board {value} does not exist.", 404)
    return value


def _int_arg(name: str, default: int, maximum: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"'{name}' must be an integer.") from None
    if value < 0:
        raise ApiError(f"'{name}' must not be negative.")
    return min(value, maximum)


def _task_or_404(task_id: int) -> Task:
    task = db.session.get(Task, task_id)
    if task is None:
        raise ApiError(f"Task {task_id} does not exist.", 404)
    return task


@bp.get("/boards")
def list_boards() -> ResponseReturnValue:
    boards = db.session.scalars(sa.select(Board).order_by(Board.id))
    return jsonify(boards=[board.to_dict() for board in boards])


@bp.get("/tasks")
def list_tasks() -> ResponseReturnValue:
    query = sa.select(Task).order_by(Task.id)
    if "board_id" in request.args:
        query = query.where(Task.board_id == _int_arg("board_id", 0, 2**31))
    if "done" in request.args:
        flag = request.args["done"].lower()
        if flag not in {"true", "false"}:
            raise ApiError("'done' must be true or false.")
        query = query.where(Task.done == (flag == "true"))
    return jsonify(tasks=[task.to_dict() for task in db.session.scalars(query)])


@bp.get("/tasks/<int:task_id>")
def get_task(task_id: int) -> ResponseReturnValue:
    return jsonify(_task_or_404(task_id).to_dict())


@bp.post("/tasks")
def create_task() -> ResponseReturnValue:
    body = _json_object()
    unknown = set(body) - {"title", "board_id", "done"}
    if unknown:
        raise ApiError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    title = _title(body.get("title"))
    done = _done(body.get("done", False))
    if "board_id" in body:
        board_id = _board_id(body["board_id"])
    else:
        first = db.session.scalar(sa.select(Board.id).order_by(Board.id).limit(1))
        if first is None:
            raise ApiError("There is no board yet; pass 'board_id'.", 409)
        board_id = first
    task = Task(title=title, board_id=board_id, done=done)
    db.session.add(task)
    db.session.commit()
    response = jsonify(task.to_dict())
    response.status_code = 201
    response.headers["Location"] = url_for("api.get_task", task_id=task.id)
    return response


@bp.patch("/tasks/<int:task_id>")
def update_task(task_id: int) -> ResponseReturnValue:
    task = _task_or_404(task_id)
    body = _json_object()
    unknown = set(body) - {"title", "done"}
    if unknown:
        raise ApiError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    if "title" in body:
        task.title = _title(body["title"])
    if "done" in body:
        task.done = _done(body["done"])
    db.session.commit()
    return jsonify(task.to_dict())


@bp.delete("/tasks/<int:task_id>")
def delete_task(task_id: int) -> ResponseReturnValue:
    db.session.delete(_task_or_404(task_id))
    db.session.commit()
    return "", 204


_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@bp.route("/<path:_rest>", methods=list(_METHODS))
def no_such_endpoint(_rest: str) -> ResponseReturnValue:
    """JSON for unknown API paths and methods, which routing would answer with HTML pages.

    Blueprint error handlers never see routing errors, so this catch-all takes them: a
    wrong method on a real path also lands here (rules that match the path but not the
    method are skipped) and gets its 405 back by asking the URL map which methods exist.
    """
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            endpoint, _ = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "api.no_such_endpoint":
            allowed.append(method)
    if not allowed:
        raise ApiError(f"No API endpoint at {request.path}.", 404)
    response = jsonify(error=f"{request.method} is not allowed here; use {', '.join(allowed)}.")
    response.status_code = 405
    response.headers["Allow"] = ", ".join(allowed)
    return response


@bp.get("/ping")
def ping() -> ResponseReturnValue:
    return jsonify(ok=True)


@bp.get("/slow")
def slow() -> ResponseReturnValue:
    """Hold the worker for ?ms= milliseconds: shows what a blocking call does to throughput."""
    ms = _int_arg("ms", 50, current_app.config["TASKBOARD_SLOW_MAX_MS"])
    time.sleep(ms / 1000)
    return jsonify(slept_ms=ms)


def spin(n: int) -> int:
    """Deterministic pure-Python busy work: n multiply-add-modulo steps, holding the GIL."""
    value = 0
    for i in range(n):
        value = (value * 31 + i) % 1_000_003
    return value


@bp.get("/cpu")
def cpu() -> ResponseReturnValue:
    n = _int_arg("n", CPU_DEFAULT_N, current_app.config["TASKBOARD_CPU_MAX_N"])
    return jsonify(n=n, result=spin(n))


@bp.get("/db")
def db_read() -> ResponseReturnValue:
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Task))
    first = db.session.scalars(sa.select(Task).order_by(Task.id).limit(DB_SAMPLE))
    return jsonify(count=count, tasks=[task.to_dict() for task in first])
