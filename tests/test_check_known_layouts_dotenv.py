"""FP-C019 on the shapes of well-known Flask projects whose own code loads .env: microblog's config.py
(load_dotenv(os.path.join(basedir, '.env'))), Flasky's flasky.py, cookiecutter-flask's environs env.read_env(),
pydantic-settings' env_file=".env". `flaskprod up` links .env into its release, but every built target leaves it
out (the images' .dockerignore, which the VM's copy follows): there the app runs without what only .env sets."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# microblog's config.py: python-dotenv is not installed here, so the loader sits in a module the app does not import
# (as test_check_dotenv's does), and the app reads the variables as microblog's Config does.
MICROBLOG_LOADER = """\
import os
from dotenv import load_dotenv

basedir = os.path.abspath(os.path.dirname(__file__))
load_dotenv(os.path.join(basedir, '.env'))
"""
APP = """\
import os

from flask import Flask

app = Flask(__name__)
app.config['MAIL_SERVER'] = os.environ.get('MAIL_SERVER')
app.config['MS_TRANSLATOR_KEY'] = os.environ.get('MS_TRANSLATOR_KEY')
"""
DOTENV = "MAIL_SERVER=localhost\nMS_TRANSLATOR_KEY=b7a3f2c9d1e84a6f9c2b5d8e1f4a7c3b\n"
FLASKENV = "FLASK_APP=app\nFLASK_ITEMS_PER_PAGE=20\n"
COOKIECUTTER_SETTINGS = """\
from environs import Env

env = Env()
env.read_env()

SECRET_KEY = env.str("SECRET_KEY")
"""
PYDANTIC_SETTINGS = """\
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env")
    mail_server: str = "localhost"
"""


def _c019(project: Path, files: dict[str, str], env: dict[str, str | None] | None = None) -> list[tuple[str, str]]:
    found = audit(project, {"app.py": APP, ".env": DOTENV, **files}, env=env).only("FP-C019")
    return [(m["obj"], m["text"]) for m in found]


def test_a_dotenv_file_the_code_loads_is_left_out_of_the_built_targets(project: Path) -> None:
    found = _c019(project, {"config.py": MICROBLOG_LOADER})
    assert [obj for obj, _ in found] == [".env:1", ".env:2"]
    assert found[1][1] == (
        "MS_TRANSLATOR_KEY is set in .env, which the app's own code loads (config.py:5) and `flaskprod up` links into "
        "its release, but every built target leaves out of what it ships (the images' .dockerignore, the VM's copy), "
        "and no deployment file passes it: the built targets run the app without it"
    )
    # The app's import of microblog's config.py puts the file's values in the environment check runs in: still
    # the file's. Another value there is the shell's, which check takes as the deployment's, as for any .env.
    same = {"MAIL_SERVER": "localhost", "MS_TRANSLATOR_KEY": "b7a3f2c9d1e84a6f9c2b5d8e1f4a7c3b"}
    assert [obj for obj, _ in _c019(project, {"config.py": MICROBLOG_LOADER}, env=same)] == [".env:1", ".env:2"]
    shell = {"MAIL_SERVER": "smtp.example.com"}
    assert [obj for obj, _ in _c019(project, {"config.py": MICROBLOG_LOADER}, env=shell)] == [".env:2"]


def test_environs_and_pydantic_settings_loaders_alike(project: Path) -> None:
    for loader in (COOKIECUTTER_SETTINGS, PYDANTIC_SETTINGS):
        assert [obj for obj, _ in _c019(project, {"settings.py": loader})] == [".env:1", ".env:2"], loader
    # A development .env's DEBUG=true (pydantic-settings' debug: bool) is not to be set in a deployment.
    files = {"settings.py": PYDANTIC_SETTINGS, ".env": DOTENV + "DEBUG=true\n"}
    assert [obj for obj, _ in _c019(project, files)] == [".env:1", ".env:2"]


def test_a_code_loaded_file_the_builds_ship_and_a_passed_variable_stay_quiet(project: Path) -> None:
    # flask.cli.load_dotenv() loads .flaskenv too, which the images keep: its variables reach the built app.
    flask_loads = "from flask.cli import load_dotenv\n\nload_dotenv()\n"
    compose = "services:\n  web:\n    build: .\n    environment:\n      - MAIL_SERVER\n      - MS_TRANSLATOR_KEY\n"
    files = {"settings.py": flask_loads, ".flaskenv": FLASKENV, "compose.yaml": compose}
    assert _c019(project, files) == []
