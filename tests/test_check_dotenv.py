"""`flaskprod check` names each variable .env or .flaskenv sets (as `flask run` loads them through python-dotenv)
that the deployed app will not get (FP-C019): production servers load neither file, so an app configured with
app.config.from_prefixed_env() or os.environ.get() runs without it, silently. Quiet for what the environment check
runs in sets, what a deployment file passes (Compose, a Dockerfile's ENV, Kubernetes, systemd), what the app's own
code loads from a file the built targets ship (.flaskenv, not .env), and what only development needs (FLASK_APP,
FLASK_DEBUG)."""

from __future__ import annotations

import json
from pathlib import Path

from tests import test_check
from tests.test_check import audit, run_cli, write

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

APP = """\
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
app.config.from_prefixed_env()
Production(app)
"""
FLASKENV = """\
FLASK_APP=app
FLASK_DEBUG=1
# how many items a page lists
FLASK_ITEMS_PER_PAGE=20
FLASK_RUN_PORT=5001
"""
DOTENV = """\
export FLASK_UPLOAD_DIR="uploads"   # relative to the instance folder
FLASK_MAIL_PASSWORD='m4il-Pa55 w0rd'
NOTE="two
LINES=inside a quoted value"
BARE_NAME
EMPTY=
"""
COMPOSE = """\
services:
  app:
    build: .
    environment:
      FLASK_SECRET_KEY: ${FLASK_SECRET_KEY}
"""
SERVERS = "production servers do not (Gunicorn, uWSGI, `flaskprod up` and `serve`, every built target)"


def text(name: str, file: str) -> str:
    return (
        f"{name} is set in {file}, which `flask run` loads and {SERVERS}: it is not set where check runs and no "
        "deployment file passes it, so the deployed app runs without it"
    )


def test_variables_flask_run_loads_and_the_deployment_lacks_are_named_by_the_cli(project: Path) -> None:
    write(project, {"app.py": APP, ".flaskenv": FLASKENV, ".env": DOTENV, "compose.yaml": COMPOSE})
    done = run_cli("--format", "json", cwd=project)
    assert done.returncode == 0, done.stderr
    found = [(m["obj"], m["text"]) for m in json.loads(done.stdout)["messages"] if m["id"] == "FP-C019"]
    assert found == [
        (".env:1", text("FLASK_UPLOAD_DIR", ".env")),
        (".env:2", text("FLASK_MAIL_PASSWORD", ".env")),
        (".env:3", text("NOTE", ".env")),
        (".flaskenv:4", text("FLASK_ITEMS_PER_PAGE", ".flaskenv")),
    ]
    hint = next(m["hint"] for m in json.loads(done.stdout)["messages"] if m["obj"] == ".env:2")
    assert hint.startswith("set FLASK_MAIL_PASSWORD in the deployment's environment: environment: in Compose")
    assert "never copy it in" in hint
    assert "m4il-Pa55" not in done.stdout and "uploads" not in done.stdout and "20" not in str(found)


def test_the_first_file_setting_a_variable_is_named_once(project: Path) -> None:
    files = {"app.py": APP, ".env": "FLASK_ITEMS_PER_PAGE=50\n", ".flaskenv": "FLASK_ITEMS_PER_PAGE=20\n"}
    assert [m["obj"] for m in audit(project, files).only("FP-C019")] == [".env:1"]


DEPLOYMENTS = {
    "compose.yaml": """\
        services:
          app:
            build: .
            env_file: config/app.env
            environment:
              - FLASK_UPLOAD_DIR=/srv/uploads
              - DATABASE_URL=postgresql://app:${DB_PASSWORD}@db/app
              - MAIL_SERVER
          worker:
            image: app
            environment:
              FLASK_ITEMS_PER_PAGE: "20"
        """,
    "config/app.env": "export SENTRY_DSN=https://key@sentry.example/1\n",
    "Dockerfile": "FROM python:3.12-slim\nENV FLASK_THEME=dark LOG_FORMAT=json\nCMD [\"flaskprod\", \"serve\"]\n",
    "k8s/deployment.yaml": """\
        apiVersion: apps/v1
        kind: Deployment
        spec:
          template:
            spec:
              containers:
                - name: app
                  env:
                    - name: CACHE_URL
                      valueFrom: {secretKeyRef: {name: app, key: cache}}
                  envFrom:
                    - configMapRef: {name: app-config}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: app-config}
        data:
          FEATURE_FLAGS: "beta"
        """,
    "deploy/app.service": """\
        [Service]
        Environment="TZ=UTC" PAGE_TITLE=Shop
        EnvironmentFile=/srv/app/deploy/app.env
        ExecStart=/srv/app/.venv/bin/flaskprod serve
        """,
    "deploy/app.env": "SMTP_PASSWORD=from-the-unit\n",
}
PASSED = """\
FLASK_UPLOAD_DIR=uploads
DB_PASSWORD=s3cret
MAIL_SERVER=localhost
FLASK_ITEMS_PER_PAGE=20
SENTRY_DSN=https://k@sentry.example/2
FLASK_THEME=light
LOG_FORMAT=text
CACHE_URL=redis://localhost
FEATURE_FLAGS=all
TZ=Europe/Paris
PAGE_TITLE=Dev shop
SMTP_PASSWORD=dev
FROM_THE_SHELL=yes
"""


def test_variables_a_deployment_file_or_the_environment_passes_are_quiet(project: Path) -> None:
    files = {"app.py": APP, ".env": PASSED + "LEFT_OUT=1\n", **DEPLOYMENTS}
    found = audit(project, files, env={"FROM_THE_SHELL": "yes"}).only("FP-C019")
    assert [m["obj"] for m in found] == [".env:14"]
    assert found[0]["text"] == text("LEFT_OUT", ".env")


def test_a_development_profiles_service_passes_nothing(project: Path) -> None:
    compose = "services:\n  app:\n    profiles: [dev]\n    environment:\n      FLASK_ITEMS_PER_PAGE: 20\n"
    files = {"app.py": APP, ".flaskenv": FLASKENV, "compose.yaml": compose}
    assert [m["obj"] for m in audit(project, files).only("FP-C019")] == [".flaskenv:4"]


def test_a_dotenv_file_the_apps_code_loads_is_quiet_where_the_builds_ship_it(project: Path) -> None:
    # In a module the app does not import here, as python-dotenv is not installed.
    loads = "from dotenv import load_dotenv\n\nload_dotenv()\n"
    files = {"app.py": APP, "settings.py": loads, ".env": DOTENV, ".flaskenv": FLASKENV}
    # python-dotenv's load_dotenv() finds .env alone: .flaskenv's variables still go missing; and the built targets
    # leave .env out (tests/test_check_known_layouts_dotenv.py), so its variables go missing there too.
    found = audit(project, files).only("FP-C019")
    assert [m["obj"] for m in found] == [".env:1", ".env:2", ".env:3", ".flaskenv:4"]
    assert "which the app's own code loads (settings.py:3)" in found[0]["text"]
    flask_loads = "from flask.cli import load_dotenv\n\nload_dotenv()\n"
    found = audit(project, {"settings.py": flask_loads}).only("FP-C019")
    assert [m["obj"] for m in found] == [".env:1", ".env:2", ".env:3"]  # .flaskenv, which the builds ship, is quiet


def test_flask_app_debug_and_run_options_alone_are_quiet(project: Path) -> None:
    flaskenv = "FLASK_APP=app\nFLASK_DEBUG=1\nFLASK_ENV=development\nFLASK_RUN_PORT=5001\n"
    assert audit(project, {"app.py": APP, ".flaskenv": flaskenv}).only("FP-C019") == []
