"""A probe path that takes over a path the app redirected to its own view (werkzeug's strict slashes) is told."""

from __future__ import annotations

import secrets

import pytest
from flask import Blueprint, Flask

from flaskprod import Production
from flaskprod.spec import Spec


def make_app() -> Flask:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)
    Production(app, spec=Spec().replace(**{"logging.format": "text", "monitoring.check_timeout": 0.3}))
    return app


def warnings_in(out: str) -> list[str]:
    return [line for line in out.splitlines() if " WARNING " in line]


def test_a_blueprint_at_the_metrics_prefix_is_told_where_it_is_still_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app()
    stats = Blueprint("stats", __name__, url_prefix="/metrics")

    @stats.get("/")
    def dashboard() -> str:
        return "the app's dashboard"

    app.register_blueprint(stats)  # after Production(app), as views are
    client = app.test_client()
    # Plain Flask redirected /metrics to /metrics/; flaskprod's probe answers it now.
    assert client.get("/metrics").headers["Content-Type"].startswith("text/plain")
    assert client.get("/metrics/").text == "the app's dashboard"
    client.get("/metrics")
    [warning] = warnings_in(capsys.readouterr().out)
    assert "the app's own view at /metrics/ is no longer reached through /metrics" in warning
    assert "which redirected to it" in warning
    assert "still reached at /metrics/" in warning
    assert "monitoring.metrics_path" in warning


def test_a_view_without_strict_slashes_is_not_redirected_to_and_not_told(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app()

    @app.get("/healthz/", strict_slashes=False)  # Flask answers /healthz/ alone: no redirect from /healthz
    def own_health() -> str:
        return "own"

    @app.get("/readyz/extra")  # a path below a probe's is no view at the probe's path
    def below() -> str:
        return "below"

    client = app.test_client()
    assert client.get("/healthz").json == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    assert warnings_in(capsys.readouterr().out) == []


def test_a_view_at_the_probe_path_itself_is_still_told_as_never_reached(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app = make_app()

    @app.get("/healthz")
    def own_health() -> str:
        return "own"

    assert app.test_client().get("/healthz").json == {"status": "ok"}
    [warning] = warnings_in(capsys.readouterr().out)
    assert "own view at /healthz is never reached" in warning
