"""The taskboard reference app: pages, CSRF forms, JSON API, benchmark endpoints, assets, start-up races."""

from __future__ import annotations

import os
import re
import secrets
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from tests.support import BIN, PYTHON, ROOT, free_port, stop_group, wait_for

TASKBOARD_DIR = ROOT / "examples" / "taskboard"
if str(TASKBOARD_DIR) not in sys.path:
    sys.path.insert(0, str(TASKBOARD_DIR))

from taskboard import create_app  # noqa: E402
from taskboard.config import (  # noqa: E402
    ProductionConfig,
    config_name_from_env,
    get_config,
)
from taskboard.models import DEMO_BOARD, DEMO_TASKS, Board, Task, create_schema, db  # noqa: E402

from flaskprod import ConfigurationError  # noqa: E402

STATIC = TASKBOARD_DIR / "taskboard" / "static"
# Variables that would point the app somewhere else than the tmp_path database.
_ENV_KNOBS = (
    "DATABASE_URL",
    "DATABASE_PASSWORD_FILE",
    "TASKBOARD_CONFIG",
    "FLASK_DEBUG",
    "FLASK_SECRET_KEY",
    "FLASK_TESTING",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV_KNOBS:
        monkeypatch.delenv(name, raising=False)


def make_app(tmp_path: Path, **overrides: Any) -> Flask:
    uri = "sqlite:///" + str(tmp_path / "taskboard.sqlite3")
    return create_app("testing", {"SQLALCHEMY_DATABASE_URI": uri, **overrides})


def dispose(app: Flask) -> None:
    # Close pooled SQLite connections now: a connection closed by the GC is a ResourceWarning.
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    app = make_app(tmp_path)
    yield app
    dispose(app)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def csrf_app(tmp_path: Path) -> Iterator[Flask]:
    app = make_app(tmp_path, WTF_CSRF_ENABLED=True)
    yield app
    dispose(app)


def task_titles(app: Flask) -> list[str]:
    with app.app_context():
        return list(db.session.scalars(sa.select(Task.title).order_by(Task.id)))


def demo_board_id(app: Flask) -> int:
    with app.app_context():
        board_id = db.session.scalar(sa.select(Board.id).where(Board.name == DEMO_BOARD))
    assert board_id is not None
    return board_id


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', html)
    assert match, "the add-task form carries no CSRF token"
    return match.group(1)


# --- pages ------------------------------------------------------------------------------


def test_index_lists_the_seeded_board_and_links_the_assets(client: FlaskClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert f">{DEMO_BOARD}</a>" in html
    for title in DEMO_TASKS:
        assert f'<span class="task-title">{title}</span>' in html
    assert "0 / 3 done" in html
    for asset in ("css/bundle.css", "css/app.css", "js/app.js", "img/logo.png"):
        assert f"/static/{asset}" in html


def test_board_page_shows_only_its_tasks_and_404s_for_a_missing_board(app: Flask, client: FlaskClient) -> None:
    with app.app_context():
        other = Board(name="Other", tasks=[Task(title="only on other")])
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    html = client.get(f"/boards/{other_id}").get_data(as_text=True)
    assert "only on other" in html
    assert DEMO_TASKS[0] not in html
    assert client.get("/boards/9999").status_code == 404


def test_form_post_creates_a_task_and_redirects_back(app: Flask, client: FlaskClient) -> None:
    response = client.post("/tasks", data={"title": "  Write the docs  ", "board_id": demo_board_id(app), "next": "/"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"
    assert task_titles(app)[-1] == "Write the docs"
    page = client.get("/").get_data(as_text=True)
    assert "Added “Write the docs”." in page
    assert "0 / 4 done" in page


def test_form_post_with_errors_rerenders_with_400_and_creates_nothing(app: Flask, client: FlaskClient) -> None:
    response = client.post("/tasks", data={"title": "", "board_id": demo_board_id(app)})
    assert response.status_code == 400
    assert "This field is required." in response.get_data(as_text=True)
    too_long = client.post("/tasks", data={"title": "x" * 201, "board_id": demo_board_id(app)})
    assert too_long.status_code == 400
    assert "Field cannot be longer than 200 characters." in too_long.get_data(as_text=True)
    unknown_board = client.post("/tasks", data={"title": "lost", "board_id": 9999})
    assert unknown_board.status_code == 400
    assert task_titles(app) == list(DEMO_TASKS)


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example"])
def test_form_redirect_stays_on_site(app: Flask, client: FlaskClient, target: str) -> None:
    response = client.post("/tasks", data={"title": "t", "board_id": demo_board_id(app), "next": target})
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_toggle_flips_done_with_a_redirect_or_json(app: Flask, client: FlaskClient) -> None:
    response = client.post("/tasks/1/toggle", data={"next": "/boards/1"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/boards/1"
    with app.app_context():
        assert db.session.get(Task, 1).done is True  # type: ignore[union-attr]
    as_json = client.post("/tasks/1/toggle", headers={"Accept": "application/json"})
    assert as_json.status_code == 200
    body = as_json.json
    assert body is not None
    assert (body["id"], body["title"], body["done"]) == (1, DEMO_TASKS[0], False)
    assert client.post("/tasks/9999/toggle").status_code == 404


def test_post_without_csrf_token_is_rejected(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    board_id = demo_board_id(csrf_app)
    response = client.post("/tasks", data={"title": "forged", "board_id": board_id})
    assert response.status_code == 400
    assert "CSRF" in response.get_data(as_text=True)
    assert client.post("/tasks/1/toggle").status_code == 400
    assert "forged" not in task_titles(csrf_app)
    with csrf_app.app_context():
        assert db.session.get(Task, 1).done is False  # type: ignore[union-attr]


def test_post_with_the_token_from_the_page_is_accepted(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    token = csrf_token_from(client.get("/").get_data(as_text=True))
    board_id = demo_board_id(csrf_app)
    response = client.post("/tasks", data={"title": "genuine", "board_id": board_id, "csrf_token": token})
    assert response.status_code == 303
    assert task_titles(csrf_app)[-1] == "genuine"
    # A token from another session (another client's cookie) is no good.
    stranger = csrf_app.test_client()
    stranger.get("/")
    forged = stranger.post("/tasks", data={"title": "replayed", "board_id": board_id, "csrf_token": token})
    assert forged.status_code == 400


# --- JSON API ---------------------------------------------------------------------------


def test_api_crud_round_trip(client: FlaskClient) -> None:
    listed = client.get("/api/tasks")
    assert listed.status_code == 200
    assert [task["title"] for task in listed.json["tasks"]] == list(DEMO_TASKS)  # type: ignore[index]

    created = client.post("/api/tasks", json={"title": "From the API", "board_id": 1})
    assert created.status_code == 201
    task = created.json
    assert task is not None
    assert task["title"] == "From the API"
    assert task["done"] is False
    assert task["created_at"].endswith("+00:00")
    assert created.headers["Location"] == f"/api/tasks/{task['id']}"
    assert client.get(created.headers["Location"]).json == task

    patched = client.patch(f"/api/tasks/{task['id']}", json={"done": True, "title": "Renamed"})
    assert patched.status_code == 200
    assert patched.json == {**task, "done": True, "title": "Renamed"}
    assert [t["id"] for t in client.get("/api/tasks?done=true").json["tasks"]] == [task["id"]]  # type: ignore[index]
    assert len(client.get("/api/tasks?done=false&board_id=1").json["tasks"]) == 3  # type: ignore[index]

    assert client.delete(f"/api/tasks/{task['id']}").status_code == 204
    missing = client.get(f"/api/tasks/{task['id']}")
    assert missing.status_code == 404
    assert missing.json == {"error": f"Task {task['id']} does not exist."}


def test_api_create_defaults_to_the_first_board(client: FlaskClient) -> None:
    created = client.post("/api/tasks", json={"title": "anywhere", "done": True})
    assert created.status_code == 201
    assert created.json is not None
    assert created.json["board_id"] == 1
    assert created.json["done"] is True
    assert client.get("/api/boards").json == {"boards": [{"id": 1, "name": DEMO_BOARD, "task_count": 4}]}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ([1, 2], 400, "The body must be a JSON object."),
        ({}, 400, "'title' must be a non-empty string."),
        ({"title": "   "}, 400, "'title' must be a non-empty string."),
        ({"title": 42}, 400, "'title' must be a non-empty string."),
        ({"title": "x" * 201}, 400, "'title' must be at most 200 characters."),
        ({"title": "t", "done": "yes"}, 400, "'done' must be true or false."),
        ({"title": "t", "board_id": "1"}, 400, "'board_id' must be an integer."),
        ({"title": "t", "board_id": True}, 400, "'board_id' must be an integer."),
        ({"title": "t", "board_id": 9999}, 404, "Board 9999 does not exist."),
        ({"title": "t", "priority": 1}, 400, "Unknown field(s): priority."),
    ],
)
def test_api_rejects_bad_input_with_a_json_error(
    app: Flask, client: FlaskClient, body: Any, status: int, message: str
) -> None:
    response = client.post("/api/tasks", json=body)
    assert response.status_code == status
    assert response.json == {"error": message}
    assert task_titles(app) == list(DEMO_TASKS)


def test_api_rejects_malformed_json_and_other_content_types(client: FlaskClient) -> None:
    broken = client.post("/api/tasks", data="{not json", content_type="application/json")
    assert broken.status_code == 400
    assert broken.json == {"error": "The body must be a JSON object."}
    form = client.post("/api/tasks", data={"title": "t"})
    assert form.status_code == 415
    assert form.json is not None
    assert "application/json" in form.json["error"]
    assert client.patch("/api/tasks/1", json={"board_id": 2}).json == {"error": "Unknown field(s): board_id."}


def test_api_errors_from_routing_are_json(client: FlaskClient) -> None:
    not_found = client.get("/api/nope")
    assert not_found.status_code == 404
    assert not_found.mimetype == "application/json"
    assert not_found.json == {"error": "No API endpoint at /api/nope."}
    wrong_method = client.put("/api/tasks/1", json={})
    assert wrong_method.status_code == 405
    assert wrong_method.json == {"error": "PUT is not allowed here; use GET, PATCH, DELETE."}
    assert wrong_method.headers["Allow"] == "GET, PATCH, DELETE"
    assert client.delete("/api/ping").status_code == 405
    # Pages outside /api/ keep the app's own error pages.
    assert client.get("/nope").mimetype == "text/html"
    assert client.get("/api/tasks?done=maybe").json == {"error": "'done' must be true or false."}


def test_api_posts_need_no_csrf_token(csrf_app: Flask) -> None:
    client = csrf_app.test_client()
    response = client.post("/api/tasks", json={"title": "scripted"})
    assert response.status_code == 201
    assert task_titles(csrf_app)[-1] == "scripted"


# --- benchmark endpoints ----------------------------------------------------------------


def test_ping(client: FlaskClient) -> None:
    response = client.get("/api/ping")
    assert response.status_code == 200
    assert response.json == {"ok": True}


def test_slow_sleeps_the_requested_time(client: FlaskClient) -> None:
    started = time.monotonic()
    response = client.get("/api/slow?ms=120")
    elapsed = time.monotonic() - started
    assert response.json == {"slept_ms": 120}
    assert 0.12 <= elapsed < 2.0
    assert client.get("/api/slow").json == {"slept_ms": 50}


def test_slow_is_capped_and_validates_its_argument(tmp_path: Path) -> None:
    app = make_app(tmp_path, TASKBOARD_SLOW_MAX_MS=30)
    try:
        client = app.test_client()
        started = time.monotonic()
        assert client.get("/api/slow?ms=600000").json == {"slept_ms": 30}
        assert time.monotonic() - started < 1.0
        for bad, message in (("abc", "'ms' must be an integer."), ("-5", "'ms' must not be negative.")):
            response = client.get(f"/api/slow?ms={bad}")
            assert response.status_code == 400
            assert response.json == {"error": message}
    finally:
        dispose(app)


def test_cpu_runs_the_loop_and_returns_its_result(client: FlaskClient) -> None:
    # Three steps by hand: 0 -> (0*31+0) = 0 -> (0*31+1) = 1 -> (1*31+2) = 33.
    assert client.get("/api/cpu?n=3").json == {"n": 3, "result": 33}
    default = client.get("/api/cpu").json
    assert default is not None
    assert default["n"] == 16_000
    assert 0 <= default["result"] < 1_000_003
    assert client.get("/api/cpu?n=999999999").json["n"] == 5_000_000  # type: ignore[index]


def test_db_endpoint_counts_and_samples_tasks(client: FlaskClient) -> None:
    first = client.get("/api/db").json
    assert first is not None
    assert first["count"] == 3
    assert [task["title"] for task in first["tasks"]] == list(DEMO_TASKS)
    for i in range(4):
        assert client.post("/api/tasks", json={"title": f"extra {i}"}).status_code == 201
    after = client.get("/api/db").json
    assert after is not None
    assert after["count"] == 7
    assert [task["id"] for task in after["tasks"]] == [1, 2, 3, 4, 5]


# --- static files -----------------------------------------------------------------------


def test_static_assets_are_served(client: FlaskClient) -> None:
    for path, mimetype in (
        ("css/app.css", "text/css"),
        ("css/bundle.css", "text/css"),
        ("js/app.js", "text/javascript"),
        ("img/logo.png", "image/png"),
    ):
        response = client.get(f"/static/{path}")
        assert response.status_code == 200, path
        assert response.mimetype == mimetype, path
        assert response.get_data() == (STATIC / path).read_bytes()
        response.close()


def test_bundle_css_is_a_20_kb_stylesheet() -> None:
    bundle = STATIC / "css" / "bundle.css"
    size = bundle.stat().st_size
    assert 18 * 1024 <= size <= 24 * 1024
    text = bundle.read_text(encoding="utf-8")
    assert text.count("{") == text.count("}")
    assert ".btn-primary {" in text


def test_logo_is_a_valid_png() -> None:
    data = (STATIC / "img" / "logo.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    offset = 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind = data[offset + 4 : offset + 8]
        body = data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert zlib.crc32(kind + body) == crc, kind
        chunks[kind] = chunks.get(kind, b"") + body
        offset += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, depth, colour_type) == (64, 64, 8, 6)
    # One filter byte plus four bytes per pixel on each row.
    assert len(zlib.decompress(chunks[b"IDAT"])) == height * (1 + 4 * width)
    assert b"IEND" in chunks


# --- configuration ----------------------------------------------------------------------


def test_config_is_chosen_by_argument_then_env_then_debug_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_name_from_env() == "production"
    monkeypatch.setenv("FLASK_DEBUG", "1")
    assert config_name_from_env() == "development"
    monkeypatch.setenv("TASKBOARD_CONFIG", "Testing")
    assert config_name_from_env() == "testing"
    assert get_config().TESTING is True  # type: ignore[attr-defined]
    assert get_config("development").DEBUG is True  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="Unknown taskboard config 'staging': use one of development, production"):
        get_config("staging")


def test_production_config_takes_the_secret_only_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not hasattr(ProductionConfig(), "SECRET_KEY")
    monkeypatch.setenv("FLASK_SECRET_KEY", "from-the-environment")
    assert ProductionConfig().SECRET_KEY == "from-the-environment"


def test_production_refuses_to_start_without_a_secret_key(tmp_path: Path) -> None:
    uri = "sqlite:///" + str(tmp_path / "prod.sqlite3")
    with pytest.raises(ConfigurationError, match="SECRET_KEY"):
        create_app("production", {"SQLALCHEMY_DATABASE_URI": uri})


def test_production_starts_with_a_strong_key_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = secrets.token_hex(32)
    monkeypatch.setenv("FLASK_SECRET_KEY", key)
    app = create_app("production", {"SQLALCHEMY_DATABASE_URI": "sqlite:///" + str(tmp_path / "prod.sqlite3")})
    try:
        assert app.config["SECRET_KEY"] == key
        assert app.debug is False
        assert app.test_client().get("/api/ping").json == {"ok": True}
    finally:
        dispose(app)


def test_health_endpoints_come_from_flaskprod_and_check_the_database(client: FlaskClient, app: Flask) -> None:
    own_rules = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint.startswith(("views.", "api."))}
    assert not own_rules & {"/healthz", "/readyz", "/metrics"}, "the app must leave these to flaskprod"
    assert "http_requests_total" in client.get("/metrics").get_data(as_text=True)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json is not None
    assert ready.json["checks"]["database"]["status"] == "ok"


def test_database_url_wins_over_the_default_and_explicit_settings_win_over_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_env = "sqlite:///" + str(tmp_path / "from-env.sqlite3")
    monkeypatch.setenv("DATABASE_URL", from_env)
    app = create_app("testing")
    try:
        assert app.config["SQLALCHEMY_DATABASE_URI"] == from_env
        assert (tmp_path / "from-env.sqlite3").is_file()
        assert Path(app.instance_path).is_dir()
    finally:
        dispose(app)
    explicit = make_app(tmp_path)
    try:
        assert explicit.config["SQLALCHEMY_DATABASE_URI"].endswith("/taskboard.sqlite3")
    finally:
        dispose(explicit)


def test_seeding_happens_once(tmp_path: Path) -> None:
    for _ in range(2):
        dispose(make_app(tmp_path))
    app = make_app(tmp_path)
    try:
        with app.app_context():
            assert db.session.scalar(sa.select(sa.func.count()).select_from(Board)) == 1
        assert task_titles(app) == list(DEMO_TASKS)
    finally:
        dispose(app)


def test_create_schema_survives_losing_the_race(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    real_create_all = db.create_all
    calls: list[int] = []

    def other_worker_won(*args: Any, **kwargs: Any) -> None:
        calls.append(1)
        if len(calls) == 1:
            raise sa.exc.OperationalError("CREATE TABLE boards", {}, Exception("table boards already exists"))
        real_create_all(*args, **kwargs)

    monkeypatch.setattr(db, "create_all", other_worker_won)
    with app.app_context():
        create_schema()
    assert len(calls) == 2


def test_create_schema_survives_losing_the_race_once_per_table(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen in CI: the other process made boards as this one checked, then tasks as it checked again."""
    real_create_all = db.create_all
    lost = ["boards", "tasks"]

    def other_worker_won_each(*args: Any, **kwargs: Any) -> None:
        if lost:
            table = lost.pop(0)
            raise sa.exc.OperationalError(f"CREATE TABLE {table}", {}, Exception(f"table {table} already exists"))
        real_create_all(*args, **kwargs)

    monkeypatch.setattr(db, "create_all", other_worker_won_each)
    with app.app_context():
        create_schema()
    assert not lost


def test_create_schema_raises_an_error_that_is_no_race(app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise sa.exc.OperationalError("CREATE TABLE boards", {}, Exception("disk I/O error"))

    monkeypatch.setattr(db, "create_all", broken)
    with app.app_context(), pytest.raises(sa.exc.OperationalError, match="disk I/O error"):
        create_schema()


# --- real servers -----------------------------------------------------------------------

# Inherited variables that would configure the app under test behind the test's back.
_INHERITED_PREFIXES = ("FLASK_", "FLASKPROD_", "GUNICORN_", "TASKBOARD_", "DATABASE_URL", "PROMETHEUS_MULTIPROC_DIR")


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a server under test: nothing inherited that configures it, a strong secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["FLASK_SECRET_KEY"] = secrets.token_hex(32)
    env.update(extra)
    return env


_BOOT_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from taskboard import create_app
    app = create_app("testing", {"SQLALCHEMY_DATABASE_URI": sys.argv[2]})
    from taskboard.models import db
    with app.app_context():
        db.engine.dispose()
    print("ok")
    """
)


def _boot_at_once(uri: str, count: int) -> None:
    """Start `count` processes that all create the schema and seed the same empty database."""
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", _BOOT_SCRIPT, str(TASKBOARD_DIR), uri],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for _ in range(count)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"


def _count_demo(uri: str) -> tuple[int, int]:
    engine = sa.create_engine(uri)
    try:
        with engine.connect() as conn:
            boards = conn.scalar(sa.text("SELECT count(*) FROM boards"))
            tasks = conn.scalar(sa.text("SELECT count(*) FROM tasks"))
    finally:
        engine.dispose()
    return int(boards or 0), int(tasks or 0)


@pytest.mark.integration
def test_workers_starting_together_on_sqlite_create_one_demo_board(tmp_path: Path) -> None:
    uri = "sqlite:///" + str(tmp_path / "shared.sqlite3")
    _boot_at_once(uri, 8)
    assert _count_demo(uri) == (1, len(DEMO_TASKS))


@pytest.mark.integration
def test_workers_starting_together_on_postgres_create_one_demo_board(fresh_pg_database: str) -> None:
    _boot_at_once(fresh_pg_database, 8)
    assert _count_demo(fresh_pg_database) == (1, len(DEMO_TASKS))


@pytest.mark.integration
def test_runs_under_gunicorn_with_several_workers(tmp_path: Path) -> None:
    port = free_port()
    # Plain HTTP here: a Secure session cookie would never come back, and with it the CSRF token.
    env = child_env(DATABASE_URL="sqlite:///" + str(tmp_path / "gunicorn.sqlite3"), FLASK_SESSION_COOKIE_SECURE="false")
    args = [str(BIN / "gunicorn"), "--chdir", str(TASKBOARD_DIR), "--bind", f"127.0.0.1:{port}", "--workers", "3"]
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*args, "wsgi:app"],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: requests.get(f"{base}/api/ping", timeout=2).ok, timeout=30, what="gunicorn to answer")
        index = requests.get(f"{base}/", timeout=5)
        assert index.status_code == 200
        assert DEMO_TASKS[0] in index.text
        created = requests.post(f"{base}/api/tasks", json={"title": "via gunicorn"}, timeout=5)
        assert created.status_code == 201
        # Every worker sees the same database, whichever one answers.
        for _ in range(6):
            assert requests.get(f"{base}/api/db", timeout=5).json()["count"] == len(DEMO_TASKS) + 1
        with requests.Session() as session:
            token = csrf_token_from(session.get(f"{base}/", timeout=5).text)
            form = {"title": "via the form", "board_id": "1", "csrf_token": token}
            assert session.post(f"{base}/tasks", data=form, timeout=5, allow_redirects=False).status_code == 303
        assert requests.post(f"{base}/tasks", data={"title": "no token", "board_id": "1"}, timeout=5).status_code == 400
    finally:
        stop_group(proc)
    assert proc.returncode == 0, log.read_text(errors="replace")
    assert _count_demo(env["DATABASE_URL"]) == (1, len(DEMO_TASKS) + 2)
