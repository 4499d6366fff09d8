"""`flaskprod check` on an app that reads a variable with os.environ["NAME"] as it loads, where check runs without
it: a finding at the read, and the project's files are still checked (as for from_envvar's FP-C017)."""

from __future__ import annotations

from pathlib import Path

from flaskprod.checks import REGISTRY
from tests import test_check
from tests.test_check import audit, run_cli

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

FACTORY = """\
import os

from flask import Flask


def create_app():
    app = Flask(__name__)
    app.config["DATABASE_URL"] = os.environ["SHOP_DATABASE_URL"]
    return app
"""
DOCKERFILE = 'FROM python:3.12-slim\nCOPY . .\nCMD ["flask", "run", "--host=0.0.0.0"]\n'


def test_a_variable_the_app_needs_is_a_finding_and_the_files_are_still_checked(project: Path) -> None:
    files = {"shop/__init__.py": FACTORY, "Dockerfile": DOCKERFILE}
    result = audit(project, files, "shop:create_app()", env={"SHOP_DATABASE_URL": None})
    assert (result.exit_code, [(m["id"], m["obj"]) for m in result.messages]) == (
        1,
        [("FP-C018", "shop/__init__.py:8"), ("FP-P004", "Dockerfile:3"), ("FP-P022", "Dockerfile:3")],  # no USER
    )
    [found] = result.only("FP-C018")
    assert found["level"] == "CRITICAL"
    assert found["text"] == (
        "the app fails at start: it reads os.environ['SHOP_DATABASE_URL'], and SHOP_DATABASE_URL is not set where "
        "check runs (the app's other checks did not run)"
    )
    assert found["hint"] == REGISTRY["FP-C018"].hint
    # Set, the app loads and its own checks run.
    loaded = audit(project, {}, "shop:create_app()", env={"SHOP_DATABASE_URL": "postgresql://db/shop"})
    assert "FP-C018" not in loaded.ids() and "FP-C002" in loaded.ids()


def test_the_command_prints_no_traceback_for_it(project: Path) -> None:
    source = 'import os\n\nfrom flask import Flask\n\nKEY = os.environ["SHOP_KEY"]\napp = Flask(__name__)\n'
    (project / "app.py").write_text(source)
    result = run_cli(cwd=project, env={"SHOP_KEY": None})
    assert (result.returncode, result.stderr) == (1, "")
    assert "FP-C018  CRITICAL  app.py:5: the app fails at start: it reads os.environ['SHOP_KEY']" in result.stdout


def test_any_other_key_error_is_still_the_apps_bug(project: Path) -> None:
    (project / "app.py").write_text("from flask import Flask\n\napp = Flask(__name__)\n{}['missing']\n")
    result = run_cli("--format", "json", cwd=project)
    assert result.returncode == 2 and "KeyError: 'missing'" in result.stdout
