"""`flaskprod check` tells a Flask-SQLAlchemy app without Flask-Migrate that /readyz answers 503 until its tables
exist (FP-R002), naming the app's own click command that calls db.create_all(), and whether that command is safe as
deploy.release_command (create_all only adds what is missing) or drops tables too and must run once by hand."""

from __future__ import annotations

from pathlib import Path

from flaskprod.checks.registry import REGISTRY
from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

MODELS = """\
import click
from flask import Blueprint, Flask
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
db = SQLAlchemy(app)
Production(app)


class Post(db.Model):
    id = db.Column(db.Integer, primary_key=True)
"""
CREATE = """

@app.cli.command("init-db")
def init_db_command():
    db.create_all()
    click.echo("Initialized the database.")
"""
# The Flask tutorial's shape: the command calls a helper, which runs schema.sql (DROP TABLE IF EXISTS ...).
HELPER = """

@app.cli.command("init-db")
def init_db_command():
    helpers.init_db()
"""
HELPERS = """\
from flask import current_app


def init_db():
    from app import db

    with current_app.open_resource("schema.sql") as f:
        db.session.execute(f.read().decode())
    reset()


def reset():
    from app import db

    db.create_all()
"""
SCHEMA = "DROP TABLE IF EXISTS post;\nCREATE TABLE post (id INTEGER PRIMARY KEY);\n"


def tables_messages(project: Path, files: dict[str, str]) -> list[dict[str, str]]:
    return audit(project, files).only("FP-R002")


def test_the_create_command_is_named_and_offered_as_the_release_command(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS + CREATE})
    assert found["obj"] == "app.py:17"
    assert found["text"].startswith("the app's tables are missing until `flask init-db` runs (it calls db.create_all")
    assert "/readyz answers 503" in found["text"] and "`flaskprod up` never turns ready" in found["text"]
    assert found["hint"].startswith('set deploy.release_command = "flask init-db" in flaskprod.toml\'s [deploy]')


def test_a_command_that_drops_tables_is_to_run_once_by_hand(project: Path) -> None:
    drop_all = CREATE.replace("    db.create_all()", "    db.drop_all()\n    db.create_all()")
    [found] = tables_messages(project, {"app.py": MODELS + drop_all})
    assert found["hint"].startswith("run `flask init-db` once by hand against the production database")
    assert "do not make it deploy.release_command: it drops tables too (drop_all())" in found["hint"]


def test_a_helper_in_another_module_and_its_sql_script_are_read(project: Path) -> None:
    files = {"app.py": "import helpers\n" + MODELS + HELPER, "helpers.py": HELPERS, "schema.sql": SCHEMA}
    [found] = tables_messages(project, files)
    assert found["obj"] == "app.py:18"
    assert "it drops tables too (DROP in schema.sql)" in found["hint"]
    # Without the DROP the same command is safe on every deploy.
    files["schema.sql"] = "CREATE TABLE IF NOT EXISTS post (id INTEGER PRIMARY KEY);\n"
    [found] = tables_messages(project, files)
    assert found["hint"].startswith('set deploy.release_command = "flask init-db"')


def test_a_blueprint_group_command_is_named_with_its_group(project: Path) -> None:
    blueprint = (
        '\nadmin = Blueprint("admin", __name__)\n\n\n@admin.cli.command("create-tables")\ndef create_tables():\n'
        "    db.create_all()\n\n\napp.register_blueprint(admin)\n"
    )
    [found] = tables_messages(project, {"app.py": MODELS + blueprint})
    assert "`flask admin create-tables` runs" in found["text"]


def test_without_a_command_found_the_app_is_told_in_general(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS})
    check = REGISTRY["FP-R002"]
    assert found == {"id": "FP-R002", "level": "WARNING", "text": check.text, "hint": check.hint, "obj": "app"}


def test_quiet_with_a_release_command_without_the_readiness_check_or_with_flask_migrate(project: Path) -> None:
    app = MODELS + CREATE
    released = {"app.py": app, "flaskprod.toml": '[deploy]\nrelease_command = "flask init-db"\n'}
    assert tables_messages(project, released) == []
    (project / "flaskprod.toml").unlink()
    off = {"app.py": app, "flaskprod.toml": "[database]\nmigration_check = false\n"}
    assert tables_messages(project, off) == []
    (project / "flaskprod.toml").unlink()
    migrated = app + "\nfrom flask_migrate import Migrate\n\nMigrate(app, db)\n"
    result = audit(project, {"app.py": migrated})
    assert result.only("FP-R002") == [] and len(result.only("FP-R001")) == 1
    # Models that map no table: readiness waits for none.
    assert tables_messages(project, {"app.py": MODELS.split("\n\nclass Post")[0] + "\n" + CREATE}) == []


def test_quiet_for_an_app_that_makes_its_tables_as_it_starts(project: Path) -> None:
    """The example taskboard's shape: create_all in a helper its factory calls, under the app context."""
    starts = MODELS + CREATE + "\n\ndef create_schema():\n    db.create_all()\n\n\nwith app.app_context():\n"
    assert tables_messages(project, {"app.py": starts + "    create_schema()\n"}) == []
    # A script's main guard is run by hand, not as the app starts: the command is still named.
    script = "from app import app, db\n\nif __name__ == '__main__':\n    with app.app_context():\n"
    script += "        db.create_all()\n"
    [found] = tables_messages(project, {"app.py": MODELS + CREATE, "make_tables.py": script})
    assert "`flask init-db` runs" in found["text"]
