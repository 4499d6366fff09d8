"""FP-C004 and FP-S001 on an app configured by dynaconf's FlaskDynaconf, which picks its settings environment
([development], [production] of settings.toml) by FLASK_ENV (its ENVVAR_PREFIX's _ENV, or ENV_SWITCHER): the app
reads FLASK_ENV through it, so 'remove it' would load [development] in production, and debug on while it is unset
comes from that switch, not a `DEBUG = True` in the code."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# dynaconf is not installed here: a stand-in with dynaconf's own default, [development] while FLASK_ENV is unset.
STAND_IN = """\
import os


class FlaskDynaconf:
    def __init__(self, app, **kwargs):
        switch = kwargs.get("ENV_SWITCHER", f"{kwargs.get('ENVVAR_PREFIX', 'FLASK')}_ENV")
        env = os.environ.get(switch, "development").lower()
        app.config["DEBUG"] = env == "development"
"""
APP = """\
from dynaconf import FlaskDynaconf
from flask import Flask

app = Flask(__name__)
FlaskDynaconf(app, settings_files=["settings.toml", ".secrets.toml"], environments=True)
"""
SETTINGS = '[development]\nDEBUG = true\n\n[production]\nDEBUG = false\n'


def _files(app: str = APP) -> dict[str, str]:
    return {"app.py": app, "dynaconf/__init__.py": STAND_IN, "settings.toml": SETTINGS, "requirements.txt": "flask\n"}


def test_flask_env_picking_dynaconfs_environment_is_not_to_be_removed(project: Path) -> None:
    found = audit(project, _files(), env={"FLASK_ENV": "production"}).only("FP-C004")
    assert [(m["obj"], m["hint"]) for m in found] == [
        (
            "environment",
            "FlaskDynaconf (app.py:5) picks its settings environment by FLASK_ENV: keep it set to production "
            "wherever the app runs, or give dynaconf a switch of its own (FlaskDynaconf(app, "
            "ENV_SWITCHER=\"APP_ENV\")) and set that instead",
        )
    ]
    assert "only the app's own code reads it now" in found[0]["text"]
    # With a switch of its own, FLASK_ENV is Flask's removed variable again.
    own = APP.replace("environments=True", 'environments=True, ENV_SWITCHER="APP_ENV"')
    found = audit(project, _files(own), env={"FLASK_ENV": "production"}).only("FP-C004")
    assert [m["text"] for m in found] == ["FLASK_ENV is set in the environment, but Flask 2.3 removed it"]


def test_debug_on_from_dynaconfs_development_default_names_the_switch(project: Path) -> None:
    found = audit(project, _files()).only("FP-S001")
    assert [(m["obj"], m["hint"]) for m in found] == [
        (
            "app",
            "FlaskDynaconf (app.py:5) picks its settings environment by FLASK_ENV, unset where check runs, so it "
            "loaded [development], which turns debug on: set FLASK_ENV=production wherever the app runs, and where "
            "check runs to audit that environment",
        )
    ]


def test_dynaconfs_own_dotenv_load_is_named(project: Path) -> None:
    # FlaskDynaconf loads .env itself (LOAD_DOTENV), which `up` links and the built targets leave out.
    found = audit(project, {**_files(), ".env": "FLASK_MAIL_SERVER=localhost\n"}).only("FP-C019")
    assert [(m["obj"], "which the app's own code loads (app.py:5)" in m["text"]) for m in found] == [(".env:1", True)]
