"""FP-C019 is quiet for a variable whose .env value is the default the code itself falls back to
(`os.environ.get("DATABASE_URL", "sqlite:///app.db")` beside `DATABASE_URL=sqlite:///app.db`): the deployed app,
which loads no .env, runs with that same value, so nothing is lost; it told the user to set the variable there."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a strong FLASK_SECRET_KEY

APP = """\
import os

from flask import Flask

app = Flask(__name__)
app.config["DATABASE_URL"] = os.environ.get("DATABASE_URL", "sqlite:///app.db")
app.config["CACHE_URL"] = os.getenv("CACHE_URL") or "simple://"
app.config["MAIL_SERVER"] = os.environ.get("MAIL_SERVER", "localhost")
"""


def test_a_value_equal_to_the_codes_default_is_not_named(project: Path) -> None:
    dotenv = "DATABASE_URL=sqlite:///app.db\nCACHE_URL='simple://'\nMAIL_SERVER=smtp.example.com\n"
    found = audit(project, {"app.py": APP, ".env": dotenv}).only("FP-C019")
    # MAIL_SERVER's .env value is not the code's default: the deployed app would send through localhost.
    assert [m["obj"] for m in found] == [".env:3"]


def test_a_read_without_that_default_elsewhere_keeps_the_variable_named(project: Path) -> None:
    # A second read with no default (here in the config class the app may load) gets None in the deployment.
    config = "import os\n\n\nclass Config:\n    DATABASE_URL = os.environ.get('DATABASE_URL')\n"
    files = {"app.py": APP, "config.py": config, ".env": "DATABASE_URL=sqlite:///app.db\n"}
    assert [m["obj"] for m in audit(project, files).only("FP-C019")] == [".env:1"]
