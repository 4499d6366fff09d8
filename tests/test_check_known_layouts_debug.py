"""FP-S001's hint when debug comes from a .env the app's own code loads: Flasky's flasky.py (load_dotenv of .env
holding FLASK_DEBUG=1), cookiecutter-flask's settings.py (environs' env.read_env(); DEBUG = ENV == "development"
from .env's FLASK_ENV), pydantic-settings' env_file (debug: bool from .env's DEBUG=true). `flaskprod up` links .env
into its release, so debug is on there too; the built targets leave .env out. The fix is in .env, not a
`DEBUG = True` the code does not hold."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# Flasky: python-dotenv is not installed here, so its load is in a module the app does not import, and the
# environment check runs in holds what the load put there (FLASK_DEBUG=1, which Flask reads into DEBUG).
FLASKY_LOADER = """\
import os
from dotenv import load_dotenv

dotenv_path = os.path.join(os.path.dirname(__file__), '.env')
if os.path.exists(dotenv_path):
    load_dotenv(dotenv_path)
"""
PLAIN_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
# cookiecutter-flask: environs is not installed here either; a stand-in reads .env as its Env does (not into
# os.environ, as environs 11+ does not).
ENVIRONS = """\
from pathlib import Path


class Env:
    def __init__(self):
        self.values = {}

    def read_env(self):
        for line in Path(".env").read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                name, value = line.split("=", 1)
                self.values[name] = value

    def str(self, name, default=None):
        return self.values.get(name, default)
"""
COOKIECUTTER_SETTINGS = """\
from environs import Env

env = Env()
env.read_env()

ENV = env.str("FLASK_ENV", default="production")
DEBUG = ENV == "development"
"""
COOKIECUTTER_APP = """\
from flask import Flask


def create_app(config_object="settings"):
    app = Flask(__name__.split(".")[0])
    app.config.from_object(config_object)
    return app


app = create_app()
"""
COOKIECUTTER_DOTENV = "# Environment variable overrides for local development\nFLASK_APP=app.py\nFLASK_DEBUG=1\n" \
    "FLASK_ENV=development\nLOG_LEVEL=debug\n"


def _hint(project: Path, files: dict[str, str], env: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    found = audit(project, {**files, "requirements.txt": "flask\n"}, "app:app", env=env).only("FP-S001")
    return [(m["obj"], m["hint"]) for m in found]


def test_flaskys_flask_debug_from_the_dotenv_its_code_loads(project: Path) -> None:
    files = {"app.py": PLAIN_APP, "flasky.py": FLASKY_LOADER, ".env": "FLASK_APP=flasky.py\nFLASK_DEBUG=1\n"}
    assert _hint(project, files, env={"FLASK_DEBUG": "1"}) == [
        (
            "app:app",
            ".env sets FLASK_DEBUG (.env:2), and the app's own code loads .env (flasky.py:6): `flaskprod up` links "
            "it into its release, so debug is on there too (the built targets leave .env out); remove it from .env "
            "and use `flask run --debug` for local development",
        )
    ]
    # Exported in the shell with another value than .env's, it is the shell's: the check's own hint.
    assert _hint(project, files, env={"FLASK_DEBUG": "true"})[0][1].startswith("unset FLASK_DEBUG")


def test_cookiecutters_flask_env_from_the_dotenv_environs_reads(project: Path) -> None:
    files = {
        "app.py": COOKIECUTTER_APP,
        "settings.py": COOKIECUTTER_SETTINGS,
        "environs/__init__.py": ENVIRONS,
        ".env": COOKIECUTTER_DOTENV,
    }
    assert _hint(project, files) == [
        (
            "app:app",
            ".env sets FLASK_DEBUG, FLASK_ENV (.env:3, .env:4), and the app's own code loads .env (settings.py:4): "
            "`flaskprod up` links it into its release, so debug is on there too (the built targets leave .env out); "
            "remove them from .env and use `flask run --debug` for local development",
        )
    ]
