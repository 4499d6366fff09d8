"""`flaskprod check` warns of a SQLite database file in the project outside Flask's instance folder (FP-C020): the
built containers and the VM's unit let the app write that folder alone, so the release command that creates the
tables, and every write, fail there. The shape is Flasky's config.py: "sqlite:///" + a path beside it."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

CONFIG = """\
import os

basedir = os.path.abspath(os.path.dirname(__file__))


class Config:
    SQLALCHEMY_DATABASE_URI = os.environ.get("DATABASE_URL") or {uri}


class DevelopmentConfig(Config):
    DEBUG = True
    SQLALCHEMY_DATABASE_URI = "sqlite:///" + os.path.join(basedir, "data-dev.sqlite")
"""
BESIDE_CODE = '"sqlite:///" + os.path.join(basedir, "data.sqlite")'
APP = """\
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from config import Config
from flaskprod import Production

db = SQLAlchemy()


def create_app():
    app = Flask(__name__)
    app.config.from_object(Config)
    app.config["SQLALCHEMY_BINDS"] = {binds}
    Production(app)
    db.init_app(app)
    return app
"""


def _files(uri: str, binds: str = "{}") -> dict[str, str]:
    return {"config.py": CONFIG.format(uri=uri), "app.py": APP.format(binds=binds), "requirements.txt": "flask\n"}


def test_a_sqlite_file_beside_the_code_is_named_where_the_config_builds_it(project: Path) -> None:
    found = audit(project, _files(BESIDE_CODE), "app:create_app()").only("FP-C020")
    assert [(m["obj"], m["level"], m["text"], m["hint"]) for m in found] == [
        (
            "config.py:7",
            "WARNING",
            "the app's SQLite database data.sqlite is the fallback of DATABASE_URL (read at config.py:7), which is "
            "unset where check runs and set by no deployment file: a file in the project outside Flask's instance "
            "folder (instance), the one folder the built containers and the VM's unit let the app write (its code is "
            "read-only there, owned by root; Kubernetes' pods write neither): the release command that creates the "
            "tables, and every write, fail there with 'unable to open database file'",
            "set DATABASE_URL to a database server's URL wherever the app runs (`flaskprod build --with postgres` "
            "sets it in every target), so that the file is never opened there; or make the fallback a file in the "
            "instance folder, which the images and the VM keep as a volume: 'sqlite:///name.sqlite' "
            "(Flask-SQLAlchemy 3 puts a relative path there) or os.path.join(app.instance_path, 'name.sqlite')",
        )
    ]


def test_a_bind_beside_the_code_is_named_by_its_key(project: Path) -> None:
    binds = '{"reports": "sqlite:///" + os.path.join(app.root_path, "reports.db")}'
    found = audit(project, _files('"sqlite://"', binds), "app:create_app()").only("FP-C020")
    assert [(m["obj"], m["text"].split(" is a file")[0]) for m in found] == [
        ("app.py:15", "the app's SQLite database reports.db (bind 'reports')")
    ]


def test_databases_the_deployments_can_write_pass(project: Path) -> None:
    # In the instance folder (Flask-SQLAlchemy 3 puts a relative path there), in memory, or not SQLite.
    for uri in ('"sqlite:///shop.sqlite"', '"sqlite://"', '"sqlite:///:memory:"', '"postgresql://shop@db/shop"'):
        assert audit(project, _files(uri), "app:create_app()").only("FP-C020") == [], uri
    # A file outside the project is a path the deployment chose (a volume), not the code's copy.
    outside = f'"sqlite:///{project.parent / "elsewhere.sqlite"}"'
    assert audit(project, _files(outside), "app:create_app()").only("FP-C020") == []
