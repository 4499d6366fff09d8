"""`flaskprod check` on the image a Dockerfile makes: a server run as root (FP-P022), and a server that a shell-form
CMD leaves out of `docker stop`'s reach (FP-P023)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

BASE = "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nRUN pip install -r requirements.txt\n"


def found(files: dict[str, str], check_id: str) -> list[str]:
    return [m["obj"] for m in audit_files(files).only(check_id)]


def audit_files(files: dict[str, str]) -> test_check.Audit:
    return audit(Path.cwd(), {"app.py": PROD, **files})


@pytest.mark.parametrize(
    ("dockerfile", "where"),
    [
        (BASE + 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]\n', ["Dockerfile:5"]),
        (BASE + 'CMD ["flask", "run", "--host=0.0.0.0"]\n', ["Dockerfile:5"]),
        (BASE + "RUN useradd app\nUSER app\nUSER root\nCMD flaskprod serve app:app\n", ["Dockerfile:8"]),
        # The user set in a stage the last one is built on carries over; one set in a builder stage does not.
        ("FROM python:3.11-slim AS base\nUSER 1000\nFROM base\nCMD [\"gunicorn\", \"app:app\"]\n", []),
        ("FROM python:3.11 AS build\nUSER 1000\nFROM python:3.11-slim\nCMD [\"gunicorn\", \"app:app\"]\n",
         ["Dockerfile:4"]),
        (BASE + "RUN useradd app\nUSER app:app\nCMD [\"uwsgi\", \"--http\", \":8000\", \"-w\", \"app:app\"]\n", []),
        (BASE + 'CMD ["gunicorn", "--user", "nobody", "app:app"]\n', []),  # Gunicorn drops root itself
        (BASE + 'CMD ["uwsgi", "--uid", "www-data", "--http", ":8000", "-w", "app:app"]\n', []),
        (BASE + 'CMD ["python", "worker.py"]\n', []),  # no app server
        (BASE + "FROM python:3.11-slim AS development\nCMD flask run --debug\n", []),  # a development stage
    ],
    ids=["gunicorn", "flask-run", "user-root-last", "inherited", "builder-only", "user-group", "gunicorn-user",
         "uwsgi-uid", "no-server", "development"],
)
def test_an_image_that_runs_its_server_as_root_is_found(project: Path, dockerfile: str, where: list[str]) -> None:
    assert found({"Dockerfile": dockerfile}, "FP-P022") == where


@pytest.mark.parametrize(
    "files",
    [
        {"gunicorn.conf.py": 'workers = 4\nuser = "nobody"\n'},
        {"compose.yaml": "services:\n  web:\n    build: .\n    user: \"1000:1000\"\n"},
        {"k8s/deployment.yaml": "spec:\n  securityContext:\n    runAsNonRoot: true\n"},
        {"docker-entrypoint.sh": '#!/bin/sh\nset -e\nexec gosu app "$@"\n'},
    ],
    ids=["gunicorn-config-user", "compose-user", "kubernetes-non-root", "gosu"],
)
def test_root_dropped_elsewhere_in_the_deployment_is_no_finding(project: Path, files: dict[str, str]) -> None:
    dockerfile = BASE + 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]\n'
    assert found({"Dockerfile": dockerfile, **files}, "FP-P022") == []


@pytest.mark.parametrize(
    ("command", "where"),
    [
        ("CMD gunicorn --bind 0.0.0.0:8000 app:app", ["Dockerfile:7"]),
        ("CMD flask run --host 0.0.0.0", ["Dockerfile:7"]),
        ("ENTRYPOINT uwsgi --http :8000 -w app:app", ["Dockerfile:7"]),
        ("CMD flask db upgrade && gunicorn app:app", ["Dockerfile:7"]),
        ("CMD flaskprod serve app:app", ["Dockerfile:7"]),
        ("CMD ['gunicorn', 'app:app']", ["Dockerfile:7"]),  # not JSON: Docker runs it with /bin/sh -c
        ('CMD ["gunicorn", "app:app"]', []),
        ("CMD exec gunicorn app:app", []),
        ("CMD flask db upgrade && exec gunicorn app:app", []),
        ("CMD python worker.py", []),
    ],
    ids=["gunicorn", "flask-run", "entrypoint", "after-migrate", "flaskprod-serve", "single-quotes", "exec-form",
         "exec", "exec-after-migrate", "no-server"],
)
def test_a_server_started_in_shell_form_is_found(project: Path, command: str, where: list[str]) -> None:
    dockerfile = BASE + "USER 1000\nHEALTHCHECK CMD python -m flaskprod.servers.healthcheck\n" + command + "\n"
    result = audit_files({"Dockerfile": dockerfile})
    assert [m["obj"] for m in result.only("FP-P023")] == where
    if command.startswith("CMD ['"):
        text = result.only("FP-P023")[0]["text"]
        assert text.startswith("the image's CMD looks like exec form but is not valid JSON")
