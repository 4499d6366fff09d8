"""Liveness and readiness endpoints: checks, time limits, draining, and Flask-SQLAlchemy pings."""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import flask_sqlalchemy
import pytest
from flask import Flask, current_app, redirect
from flask.testing import FlaskClient
from werkzeug.wrappers import Response

from flaskprod import Production
from flaskprod.runtime import draining
from flaskprod.runtime.health import in_check
from flaskprod.spec import Spec


@pytest.fixture(autouse=True)
def not_draining(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(draining.DRAIN_FILE_ENV, raising=False)
    draining.reset()
    yield
    draining.reset()


@pytest.fixture()
def app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    return app


def production(app: Flask, **settings: object) -> Production:
    return Production(app, spec=Spec().replace(**{"monitoring.check_timeout": 0.3, **settings}))


def client_of(app: Flask) -> FlaskClient:
    return app.test_client()


def test_liveness_has_no_dependencies(app: Flask) -> None:
    prod = production(app)

    @prod.readiness_check("broken")
    def broken() -> None:
        raise RuntimeError("down")

    response = client_of(app).get("/healthz")
    assert response.status_code == 200
    assert response.json == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_readiness_with_passing_checks(app: Flask) -> None:
    prod = production(app)
    prod.add_check("cache", lambda: None)
    response = client_of(app).get("/readyz")
    assert response.status_code == 200
    body = response.json
    assert body["status"] == "ok"
    assert body["checks"]["cache"]["status"] == "ok"
    assert isinstance(body["checks"]["cache"]["time_ms"], float)


def test_readiness_with_a_failing_check(app: Flask) -> None:
    prod = production(app)
    prod.add_check("ok", lambda: True)

    @prod.readiness_check("queue")
    def queue() -> None:
        raise ConnectionError("queue unreachable")

    prod.add_check("flag", lambda: False)
    response = client_of(app).get("/readyz")
    assert response.status_code == 503
    checks = response.json["checks"]
    assert response.json["status"] == "fail"
    assert checks["ok"]["status"] == "ok"
    assert checks["queue"] == {"status": "fail", "error": "ConnectionError: queue unreachable",
                               "time_ms": checks["queue"]["time_ms"]}
    assert checks["flag"]["status"] == "fail"



def test_only_operators_read_why_a_check_fails(app: Flask) -> None:
    prod = production(app)

    @prod.readiness_check("database")
    def database() -> None:
        raise ConnectionError('connection to server at "10.0.0.5", port 5432 failed')

    public = client_of(app).get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"})
    assert public.status_code == 503
    assert set(public.json["checks"]["database"]) == {"status", "time_ms"}
    assert b"10.0.0.5" not in public.data
    local = client_of(app).get("/readyz", environ_base={"REMOTE_ADDR": "127.0.0.1"})  # monitoring.metrics_allow
    assert "10.0.0.5" in local.json["checks"]["database"]["error"]


def test_a_failing_check_is_logged_when_it_fails_and_when_it_passes_again(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    prod = production(app)
    down = ["queue unreachable"]

    @prod.readiness_check("queue")
    def queue() -> None:
        if down:
            raise ConnectionError(down[0])

    client = client_of(app)
    for _ in range(3):  # probed every few seconds: logged once
        assert client.get("/readyz", environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 503
    down[0] = "queue refused the login"
    client.get("/readyz")
    down.clear()
    assert client.get("/readyz").status_code == 200
    client.get("/readyz")
    assert [r.getMessage() for r in caplog.records if "readiness check" in r.getMessage()] == [
        "readiness check queue fails: ConnectionError: queue unreachable",
        "readiness check queue fails: ConnectionError: queue refused the login",
        "readiness check queue passes again",
    ]

def test_slow_check_times_out_and_does_not_pile_up(app: Flask) -> None:
    prod = production(app)
    release = threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        release.wait(5)

    prod.add_check("slow", slow)
    client = client_of(app)
    t0 = time.perf_counter()
    response = client.get("/readyz")
    assert time.perf_counter() - t0 < 2
    assert response.status_code == 503
    assert "timed out after 0.3s" in response.json["checks"]["slow"]["error"]
    # While the first run still hangs, a second probe does not start another thread.
    again = client.get("/readyz")
    assert again.json["checks"]["slow"]["error"] == "previous run still in progress"
    assert len(calls) == 1
    release.set()


def test_checks_run_in_the_app_context(app: Flask) -> None:
    prod = production(app)
    app.config["MARKER"] = "here"
    prod.add_check("ctx", lambda: current_app.config["MARKER"] == "here")
    assert client_of(app).get("/readyz").status_code == 200


def test_checks_know_they_are_checks(app: Flask) -> None:
    # A pooled connection a check uses keeps the statement timeout requests set (runtime/db.limit_in_requests):
    # taken for a job's, it would be RESET at every probe and SET again by the next request.
    prod = production(app)
    prod.add_check("knows", in_check)
    assert client_of(app).get("/readyz").status_code == 200
    assert not in_check()


def test_duplicate_check_names_are_refused(app: Flask) -> None:
    prod = production(app)
    prod.add_check("x", lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        prod.add_check("x", lambda: None)


def test_draining_flag(app: Flask) -> None:
    production(app)
    client = client_of(app)
    assert client.get("/readyz").status_code == 200
    draining.begin()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json["status"] == "draining"
    # Liveness stays up, or the orchestrator would kill the process before it finishes.
    assert client.get("/healthz").status_code == 200


def test_draining_file(app: Flask, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    drain_file = tmp_path / "draining"
    monkeypatch.setenv(draining.DRAIN_FILE_ENV, str(drain_file))
    production(app)
    client = client_of(app)
    assert client.get("/readyz").status_code == 200
    drain_file.touch()
    assert client.get("/readyz").json["status"] == "draining"
    drain_file.unlink()
    assert client.get("/readyz").status_code == 200


def test_probes_bypass_the_apps_hooks(app: Flask) -> None:
    @app.before_request
    def login_required() -> Response:
        return redirect("/login")

    production(app)
    client = client_of(app)
    assert client.get("/somewhere").status_code == 302
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_an_apps_own_view_at_a_probe_path_is_reported_once(
    app: Flask, capsys: pytest.CaptureFixture[str]
) -> None:
    production(app, **{"logging.format": "text"})

    @app.get("/readyz")  # the app's own readiness, added after Production(app) as views are
    def own_readiness() -> str:
        return "redis ok"

    client = client_of(app)
    assert client.get("/readyz").json == {"status": "ok", "checks": {}}
    client.get("/readyz")
    client.get("/healthz")
    warnings = [line for line in capsys.readouterr().out.splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings
    assert "own view at /readyz is never reached" in warnings[0]
    assert "monitoring.ready_path" in warnings[0]


def test_probe_methods_and_paths(app: Flask) -> None:
    production(app, **{"monitoring.health_path": "/live", "monitoring.ready_path": "/ready"})
    client = client_of(app)
    assert client.get("/live").status_code == 200
    assert client.get("/ready").status_code == 200
    assert client.get("/healthz").status_code == 404
    head = client.head("/live")
    assert head.status_code == 200 and head.data == b""
    post = client.post("/live")
    assert post.status_code == 405
    assert post.headers["Allow"] == "GET, HEAD"


def test_probes_can_be_switched_off(app: Flask) -> None:
    production(app, **{"monitoring.health": False})
    assert client_of(app).get("/healthz").status_code == 404


def _sqlalchemy_app(app: Flask, uri: str) -> None:
    production(app)  # before db.init_app, as apps do
    app.config["SQLALCHEMY_DATABASE_URI"] = uri
    db = flask_sqlalchemy.SQLAlchemy()
    db.init_app(app)


def test_sqlalchemy_engine_is_pinged(app: Flask) -> None:
    _sqlalchemy_app(app, "sqlite://")
    response = client_of(app).get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"]["database"]["status"] == "ok"


def test_unreachable_database_fails_readiness(app: Flask) -> None:
    # Nothing listens on port 1: the connection is refused at once, as with a stopped server.
    _sqlalchemy_app(app, "postgresql+psycopg2://user:pw@127.0.0.1:1/app")
    response = client_of(app).get("/readyz")
    assert response.status_code == 503
    database = response.json["checks"]["database"]
    assert database["status"] == "fail"
    assert "OperationalError" in database["error"]
