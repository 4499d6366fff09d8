"""FP-C004 on a cookiecutter-flask-like project: settings.py reads FLASK_ENV twice, .env and .flaskenv set it, and
docker-compose.yml passes it. That is one cause in the code (it reads the removed variable) and one in the files
(they set it), each reported once with every place named, not one finding per line; a FLASK_ENV exported where check
runs is a separate cause and keeps its own finding."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

SETTINGS = """\
import os

ENV = os.environ.get("FLASK_ENV", default="production")
DEBUG = ENV == "development"
TESTING = os.environ.get("FLASK_ENV") == "testing"
"""
COMPOSE = "services:\n  app:\n    environment:\n      FLASK_ENV: production\n"
READS = (
    "FLASK_ENV is used, but Flask 2.3 removed it: only the app's own code reads it now (settings.py:3, settings.py:5), "
    "so what it sets there (debug, say) and what Flask and its extensions see can differ"
)


def _files() -> dict[str, str]:
    return {
        "app.py": PROD,
        "settings.py": SETTINGS,
        ".env": "FLASK_APP=app.py\nFLASK_ENV=development\n",
        ".flaskenv": "FLASK_ENV=development\n",
        "docker-compose.yml": COMPOSE,
    }


def test_one_finding_for_the_files_that_set_it_and_one_for_the_code_that_reads_it(project: Path) -> None:
    found = audit(project, _files()).only("FP-C004")
    assert [(m["obj"], m["text"]) for m in found] == [
        (".env:2", f"{READS} (also at .flaskenv:1, docker-compose.yml:4)"),
        ("settings.py:3", READS),
    ]


def test_the_shells_flask_env_is_a_cause_of_its_own(project: Path) -> None:
    found = audit(project, _files(), env={"FLASK_ENV": "production"}).only("FP-C004")
    assert sorted(m["obj"] for m in found) == [".env:2", "environment", "settings.py:3"]


def test_files_setting_it_with_no_reader_are_named_in_one_finding(project: Path) -> None:
    files = {"app.py": PROD, ".flaskenv": "FLASK_ENV=development\n", "docker-compose.yml": COMPOSE}
    found = audit(project, files).only("FP-C004")
    assert [(m["obj"], m["text"]) for m in found] == [
        (
            ".flaskenv:1",
            "FLASK_ENV is used, but Flask 2.3 removed it: it no longer turns debug or production mode on or off "
            "(also at docker-compose.yml:4)",
        )
    ]
