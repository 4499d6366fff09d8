"""FP-C019 is quiet for a variable in .env whose FLASK_-prefixed name is set where check runs or passed by a
deployment file: Production(app) loads FLASK_SECRET_KEY into SECRET_KEY, the key an app's
`SECRET_KEY = os.environ.get("SECRET_KEY")` reads .env's for, so the deployed app does not run without it (the quick
start exports FLASK_SECRET_KEY, and every built target passes it); it told the user to set SECRET_KEY there too."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a strong FLASK_SECRET_KEY

APP = """\
import os

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
app.config["SECRET_KEY"] = os.environ.get("SECRET_KEY")
app.config["MAIL_PASSWORD"] = os.environ.get("MAIL_PASSWORD")
Production(app)
"""
DOTENV = "SECRET_KEY=change-me\nMAIL_PASSWORD=m4il\n"
COMPOSE = "services:\n  app:\n    build: .\n    environment:\n      FLASK_MAIL_PASSWORD: ${MAIL_PASSWORD}\n"


def test_a_variable_whose_flask_name_the_app_gets_is_not_named(project: Path) -> None:
    found = audit(project, {"app.py": APP, ".env": DOTENV}).only("FP-C019")
    assert [m["obj"] for m in found] == [".env:2"]  # MAIL_PASSWORD: nothing gives the app FLASK_MAIL_PASSWORD
    assert audit(project, {"compose.yaml": COMPOSE}).only("FP-C019") == []


def test_without_production_the_flask_name_gives_the_app_nothing(project: Path) -> None:
    plain = APP.replace("from flaskprod import Production\n", "").replace("Production(app)\n", "")
    found = audit(project, {"app.py": plain, ".env": DOTENV}).only("FP-C019")
    assert [m["obj"] for m in found] == [".env:1", ".env:2"]
