"""An app that makes its tables in a request hook (or a view) never turns ready: /readyz runs no hook and stays 503
while the tables are missing, so `up` gives up after proxy.ready_timeout when no request comes first, and `deploy` or
an orchestrator sends none to a release that is not ready. `flaskprod check` names the hook (FP-R002) with the fix:
create the tables as the app starts, or a release command."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flaskprod.checks.registry import REGISTRY
from tests import test_check
from tests.conftest import StartServer
from tests.test_check import audit
from tests.test_check_release_tables import CREATE, MODELS
from tests.test_runtime_ready_tables import ready_within

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# The shape tutorials show: tables made on the way to the first request, behind a flag.
FIRST_REQUEST_HOOK = """

@app.before_request
def create_tables():
    if not getattr(app, "_tables_made", False):
        db.create_all()
        app._tables_made = True
"""
BLUEPRINT_HOOK = """
admin = Blueprint("admin", __name__)


@admin.before_app_request
def make_tables():
    make()


def make():
    db.create_all()


app.register_blueprint(admin)
"""
SETUP_VIEW = '\n\n@app.post("/setup")\ndef setup():\n    db.create_all()\n    return "", 204\n'


def tables_messages(project: Path, files: dict[str, str]) -> list[dict[str, str]]:
    return audit(project, files).only("FP-R002")


def test_a_before_request_hook_that_creates_the_tables_is_named_with_the_fix(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS + FIRST_REQUEST_HOOK})
    assert found["obj"] == "app.py:17"
    assert found["text"].startswith(
        "`create_tables` (a before_request hook) calls db.create_all(), so the app's tables are made only as it "
        "serves a request: /readyz answers 503 until they exist (it runs no hook or view), so `flaskprod up` stops "
        "after proxy.ready_timeout unless a request happens to come first"
    )
    assert found["text"].endswith("send no request to a release that is not ready: it never turns ready")
    assert found["hint"].startswith(
        "create the tables as the app starts instead: `with app.app_context(): db.create_all()`"
    )
    assert "or set deploy.release_command to a command that calls db.create_all() in" in found["hint"]


def test_a_blueprints_app_hook_through_a_helper_and_a_view_are_named(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS + BLUEPRINT_HOOK})
    assert found["text"].startswith("`make_tables` (a before_request hook) calls db.create_all()")
    [found] = tables_messages(project, {"app.py": MODELS + SETUP_VIEW})
    assert found["obj"] == "app.py:17"
    assert found["text"].startswith("`setup` (a view) calls db.create_all()")


def test_the_apps_command_that_creates_only_is_offered_beside_the_hook(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS + CREATE + FIRST_REQUEST_HOOK})
    assert found["text"].startswith("`create_tables` (a before_request hook)")
    assert 'or set deploy.release_command = "flask init-db" in flaskprod.toml\'s [deploy]' in found["hint"]


def test_quiet_when_the_app_also_makes_its_tables_as_it_starts_or_has_a_release_command(project: Path) -> None:
    starts = MODELS + FIRST_REQUEST_HOOK + "\n\nwith app.app_context():\n    db.create_all()\n"
    assert tables_messages(project, {"app.py": starts}) == []
    released = {"app.py": MODELS + FIRST_REQUEST_HOOK, "flaskprod.toml": '[deploy]\nrelease_command = "x"\n'}
    assert tables_messages(project, released) == []


HOOK_APP = """
import os

from flask import Flask
from flask_sqlalchemy import SQLAlchemy

from flaskprod import Production

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
Production(app)
db = SQLAlchemy(app)


class Post(db.Model):
    id = db.Column(db.Integer, primary_key=True)


@app.before_request
def create_tables():
    db.create_all()


@app.get("/")
def index():
    return {"posts": db.session.scalar(db.select(db.func.count()).select_from(Post))}
"""


@pytest.mark.integration
def test_served_readyz_stays_503_until_a_request_the_proxy_holds_back_runs_the_hook(
    serve_app: StartServer, tmp_path: Path
) -> None:
    """What FP-R002 warns of, on the real server: probes never run the hook, only a request to the app does."""
    server = serve_app(HOOK_APP, env={"DATABASE_URL": f"sqlite:///{tmp_path / 'blog.db'}"})
    for _ in range(5):  # a load balancer probing: each answer the same, the tables never made
        answer = server.get("/readyz")
        assert answer.status_code == 503, answer.text
        assert answer.json()["checks"]["tables"]["error"].startswith("MissingTables: post not in the database")
        time.sleep(0.2)
    assert server.get("/").json() == {"posts": 0}  # what nginx would not have sent: the hook makes the tables
    status, body = ready_within(server)
    assert status == 200, body


# A manage.py's FlaskGroup: its commands are not on app.cli, so only the source shows them; run by hand, not at start.
MANAGE = """\
from flask.cli import FlaskGroup

from app import app, db

cli = FlaskGroup(create_app=lambda: app)


@cli.command("create_db")
def create_db():
    db.create_all()


@cli.command()
def reset_tables_command():
    db.drop_all()
    db.create_all()


if __name__ == "__main__":
    cli()
"""


def test_a_scripts_click_command_outside_app_cli_is_named_with_how_it_is_run(project: Path) -> None:
    create, reset = tables_messages(project, {"app.py": MODELS, "manage.py": MANAGE})
    assert create["obj"] == "manage.py:8"
    assert create["text"].startswith("the app's tables are missing until its command `create_db` runs")
    assert create["hint"].startswith('set deploy.release_command = "python manage.py create_db" in flaskprod.toml')
    assert reset["obj"] == "manage.py:13"
    assert reset["hint"].startswith("run `python manage.py reset-tables` once by hand against the production database")
    assert "it drops tables too (drop_all()), so each deploy would empty the database" in reset["hint"]
    # Without a main guard nothing says how it is run.
    [found] = tables_messages(project, {"manage.py": MANAGE.split("\n\n@cli.command()")[0] + "\n"})
    assert found["hint"].startswith("set deploy.release_command = the command line that runs it in")


# A helper the app calls as it starts and from a hook too: the tables are made at start, the hook only makes them again.
SHARED_HELPER = """

def make_tables():
    db.create_all()


@app.before_request
def create_tables():
    make_tables()
"""
AT_START = "\n\nwith app.app_context():\n    make_tables()\n"
FACTORY = """\
from flask import Flask
from flask_sqlalchemy import SQLAlchemy

import tables
from flaskprod import Production

db = SQLAlchemy()


class Post(db.Model):
    id = db.Column(db.Integer, primary_key=True)


def create_app():
    app = Flask(__name__)
    app.config["SQLALCHEMY_DATABASE_URI"] = "sqlite://"
    db.init_app(app)
    Production(app)
"""
FACTORY_SHARED = """
    @app.before_request
    def create_tables():
        tables.make()

    with app.app_context():
        tables.make()
    return app
"""
TABLES = "def make():\n    from app import db\n\n    db.create_all()\n"


def test_a_helper_the_app_also_calls_as_it_starts_makes_its_tables_at_start(project: Path) -> None:
    assert tables_messages(project, {"app.py": MODELS + SHARED_HELPER + AT_START}) == []
    [found] = tables_messages(project, {"app.py": MODELS + SHARED_HELPER})  # from the hook alone: named
    assert found["text"].startswith("`create_tables` (a before_request hook) calls db.create_all()")
    # The same for a helper the app's command calls: the tables are there before anyone runs the command.
    command = '\n\n@app.cli.command("init-db")\ndef init_db_command():\n    make_tables()\n'
    helper = "\n\ndef make_tables():\n    db.create_all()\n" + command
    assert tables_messages(project, {"app.py": MODELS + helper + AT_START}) == []
    [found] = tables_messages(project, {"app.py": MODELS + helper})
    assert found["text"].startswith("the app's tables are missing until `flask init-db` runs")
    # Only the project's own function is the one it names: random.seed() at import is not the command named seed.
    seed = "\n\n@app.cli.command()\ndef seed():\n    db.create_all()\n\n\nimport random\n\nrandom.seed(0)\n"
    [found] = tables_messages(project, {"app.py": MODELS + seed})
    assert found["text"].startswith("the app's tables are missing until `flask seed` runs")
    # A factory calling a helper of another module, which its nested hook calls too.
    assert tables_messages(project, {"app.py": FACTORY + FACTORY_SHARED, "tables.py": TABLES}) == []


def test_a_lambda_hook_and_one_appended_to_the_registry_are_named(project: Path) -> None:
    [found] = tables_messages(project, {"app.py": MODELS + "\n\napp.before_request(lambda: db.create_all())\n"})
    assert found["obj"] == "app.py:17"
    assert found["text"].startswith("`lambda: db.create_all()` (a before_request hook) calls db.create_all(), so")
    appended = "\n\napp.before_request_funcs.setdefault(None, []).append(lambda: db.create_all())\n"
    [found] = tables_messages(project, {"app.py": MODELS + appended})
    assert found["text"].startswith("`lambda: db.create_all()` (a before_request hook)")
    appended = "\n\ndef make():\n    db.create_all()\n\n\napp.before_request_funcs.setdefault(None, []).append(make)\n"
    [found] = tables_messages(project, {"app.py": MODELS + appended})
    assert found["text"].startswith("`make` (a before_request hook)")
    # Two lambdas on one line: the one that creates the tables is named, once.
    two = "\n\napp.before_request(lambda: None), app.teardown_request(lambda error: db.create_all())\n"
    [found] = tables_messages(project, {"app.py": MODELS + two})
    assert found["text"].startswith("`lambda error: db.create_all()` (a teardown_request hook)")
    # In a factory, a lambda registered there runs as the app serves, not as it starts.
    factory = FACTORY + "    app.before_request(lambda: tables.make())\n    return app\n"
    [found] = tables_messages(project, {"app.py": factory, "tables.py": TABLES})
    assert found["text"].startswith("`lambda: tables.make()` (a before_request hook)")


# A helper of a module the app imports, calling create_all(): where it is called decides, not where it is defined.
IMPORTS_TABLES = "\nimport tables  # noqa: E402  (after db: tables imports it)\n"
TABLES_HELPER = "from app import db\n\n\ndef init_db():\n    db.create_all()\n"
MANAGE_HELPER = """\
from flask.cli import FlaskGroup

import tables
from app import app

cli = FlaskGroup(create_app=lambda: app)


@cli.command("create_db")
def create_db():
    tables.init_db()


if __name__ == "__main__":
    cli()
"""


def test_a_helper_only_a_command_calls_is_the_commands_work_and_one_called_from_nowhere_is_not_start(
    project: Path,
) -> None:
    app = MODELS + IMPORTS_TABLES
    # Called only from a manage.py FlaskGroup command: the command is named, as the release command.
    [found] = tables_messages(project, {"app.py": app, "tables.py": TABLES_HELPER, "manage.py": MANAGE_HELPER})
    assert found["obj"] == "manage.py:9"
    assert found["text"].startswith("the app's tables are missing until its command `create_db` runs")
    assert found["hint"].startswith('set deploy.release_command = "python manage.py create_db" in flaskprod.toml')
    (project / "manage.py").unlink()
    # Called only from an app.cli command, through an import inside it (the loaded module's names do not show it).
    command = '\n\n@app.cli.command("init-db")\ndef init_db_command():\n    from tables import init_db\n\n'
    command += "    init_db()\n"
    [found] = tables_messages(project, {"app.py": app + command, "tables.py": TABLES_HELPER})
    assert found["text"].startswith("the app's tables are missing until `flask init-db` runs")
    # Called from nowhere: it makes no tables, so the app is told in general...
    [found] = tables_messages(project, {"app.py": app, "tables.py": TABLES_HELPER})
    assert found["obj"] == "app" and found["text"] == REGISTRY["FP-R002"].text
    # ... nor does it hide a hook that does.
    [found] = tables_messages(project, {"app.py": app + FIRST_REQUEST_HOOK, "tables.py": TABLES_HELPER})
    assert found["text"].startswith("`create_tables` (a before_request hook) calls db.create_all()")
    # Called as the app starts, at import: directly, or as a method of an object made there; quiet.
    at_import = "from app import app, db\n\n\ndef init_db():\n    db.create_all()\n\n\nwith app.app_context():\n"
    assert tables_messages(project, {"app.py": app, "tables.py": at_import + "    init_db()\n"}) == []
    method = "from app import app, db\n\n\nclass Store:\n    def make(self):\n        db.create_all()\n\n\n"
    method += "with app.app_context():\n    Store().make()\n"
    assert tables_messages(project, {"app.py": app, "tables.py": method}) == []


# A script command whose drop_all() sits in a helper (one that ends a cycle of helpers): its create_all() is its own.
MANAGE_DROPS_IN_HELPER = """\
from flask.cli import FlaskGroup

import tables
from app import app, db

cli = FlaskGroup(create_app=lambda: app)


@cli.command("create_db")
def create_db():
    tables.clear()
    db.create_all()


if __name__ == "__main__":
    cli()
"""
TABLES_DROPS = """\
from app import db


def clear(again=True):
    if again:
        clear_all()


def clear_all():
    clear(again=False)
    db.drop_all()
"""


def test_a_scripts_command_is_read_through_the_project_functions_it_calls(project: Path) -> None:
    files = {"app.py": MODELS, "tables.py": TABLES_DROPS, "manage.py": MANAGE_DROPS_IN_HELPER}
    [found] = tables_messages(project, files)
    assert found["obj"] == "manage.py:9"
    assert found["hint"].startswith("run `python manage.py create_db` once by hand against the production database")
    assert "it drops tables too (drop_all()), so each deploy would empty the database" in found["hint"]
