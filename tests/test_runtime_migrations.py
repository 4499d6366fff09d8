"""The schema readiness check: /readyz of a Flask-Migrate app is 503 while its database is behind the migration
scripts, naming `flask db upgrade`, and 200 once migrated or migrated ahead by a newer release; against SQLite and
the real PostgreSQL, with the real Alembic, Flask-Migrate and `flask db` commands, and under `flaskprod up`."""

from __future__ import annotations

import logging
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask_migrate
import flask_sqlalchemy
import pytest
import sqlalchemy as sa
from flask import Flask

from flaskprod import Production
from flaskprod.runtime.migrations import Scripts, compare
from flaskprod.spec import Spec
from tests.support import BIN, free_port
from tests.test_release_command import ADD_COLUMN, project
from tests.upstack import processes_under, start_up, stop, up_env

FIX = "run flask db upgrade (deploy.release_command)"
NEVER_MIGRATED = f"SchemaBehind: the database has no alembic_version table, the code needs 0001: {FIX}"


# --- the comparison ---------------------------------------------------------------------------------------------

SCRIPTS = Scripts(heads=frozenset({"0002"}), known=frozenset({"0001", "0002"}), command="db")


@pytest.mark.parametrize(
    ("revisions", "behind", "message"),
    [
        (None, True, f"the database has no alembic_version table, the code needs 0002: {FIX}"),
        ((), True, f"database schema at no revision, the code needs 0002: {FIX}"),
        (("0001",), True, f"database schema at 0001, the code needs 0002: {FIX}"),
        (("0002",), False, ""),
        (("0003",), False, "database schema at 0003, unknown to this code: a newer release's"),
    ],
    ids=["no-table", "empty-table", "behind", "at-head", "ahead"],
)
def test_the_database_is_behind_only_at_a_revision_the_scripts_lead_on_from(
    revisions: tuple[str, ...] | None, behind: bool, message: str
) -> None:
    verdict = compare(revisions, SCRIPTS)
    assert (verdict.behind, verdict.message) == (behind, message)


def test_branches_are_behind_until_every_head_is_reached_and_no_scripts_need_nothing() -> None:
    branched = Scripts(heads=frozenset({"b1", "c1"}), known=frozenset({"a", "b1", "c1"}), command="migrations")
    verdict = compare(("b1",), branched)
    assert verdict.behind and verdict.message.endswith(
        "the code needs b1, c1: run flask migrations upgrade heads (deploy.release_command)"
    )
    assert not compare(("c1", "b1"), branched).behind
    assert not compare(None, Scripts(heads=frozenset(), known=frozenset(), command="db")).behind


# --- an app on a real database -----------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'notes.db'}"
    return str(request.getfixturevalue("fresh_pg_database"))


def execute(url: str, statement: str) -> None:
    """One statement on the database at url, committed, outside any app."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(statement))
    finally:
        engine.dispose()


class Migrated:
    """The fixture app's project under tmp_path on one database: its `flask db` commands, and apps like it made
    in this process (each one new, as a new release's process is)."""

    def __init__(self, root: Path, url: str) -> None:
        self.root, self.url = project(root, toml=""), url
        self._engines: list[Any] = []

    def flask_db(self, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / "flask"), "db", *args], cwd=self.root, env=up_env(FLASK_APP="app:app", DATABASE_URL=self.url),
            capture_output=True, text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr

    def add_migration(self) -> None:
        (self.root / "migrations" / "versions" / "0002_column.py").write_text(ADD_COLUMN.replace("{column}", "tag"))

    def app(self, spec: Spec | None = None, directory: Path | None = None, **engine_options: Any) -> Flask:
        app = Flask(__name__)
        app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI=self.url)
        if engine_options:
            app.config["SQLALCHEMY_ENGINE_OPTIONS"] = engine_options
        Production(app, spec=spec or Spec())
        db = flask_sqlalchemy.SQLAlchemy(app)
        flask_migrate.Migrate(app, db, directory=str(directory or self.root / "migrations"))
        with app.app_context():
            self._engines.append(db.engine)
        return app

    def execute(self, statement: str) -> None:
        execute(self.url, statement)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()


@pytest.fixture
def migrated(tmp_path: Path, database_url: str) -> Iterator[Migrated]:
    made = Migrated(tmp_path / "project", database_url)
    try:
        yield made
    finally:
        made.close()


def readyz(app: Flask) -> tuple[int, dict[str, Any]]:
    answer = app.test_client().get("/readyz")
    return answer.status_code, answer.get_json()


def schema(app: Flask) -> dict[str, Any]:
    """The schema check's result on a probe of app, without its time."""
    status, body = readyz(app)
    check = body["checks"]["migrations"]
    assert (status == 200) == (check["status"] == "ok"), body
    assert body["checks"]["database"]["status"] == "ok", body
    return {key: value for key, value in check.items() if key != "time_ms"}


@pytest.mark.integration
def test_readyz_is_503_until_flask_db_upgrade_runs_and_200_after(migrated: Migrated) -> None:
    app = migrated.app()
    before = schema(app)
    assert (before["status"], before["error"]) == ("fail", NEVER_MIGRATED)
    assert schema(app)["error"] == NEVER_MIGRATED  # behind is asked again at each probe, not kept

    migrated.flask_db("upgrade")
    assert schema(app) == {"status": "ok"}  # the same process, no restart


@pytest.mark.integration
def test_a_release_with_a_new_migration_is_not_ready_until_it_ran(migrated: Migrated) -> None:
    migrated.flask_db("upgrade")
    migrated.add_migration()
    release = migrated.app()
    assert schema(release)["error"] == f"SchemaBehind: database schema at 0001, the code needs 0002: {FIX}"
    migrated.flask_db("upgrade")
    assert schema(release)["status"] == "ok"


AUDIT_BRANCH = '''
revision = "a001"
down_revision = None
branch_labels = ("audit",)
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
'''


@pytest.mark.integration
def test_a_head_another_revision_depends_on_is_reached_through_it(migrated: Migrated) -> None:
    # 0002 follows 0001 and depends on the audit branch's a001: the scripts have two heads, 0002 and a001, and
    # Alembic's alembic_version holds 0002 alone once both ran, a001 being among 0002's ancestors.
    versions = migrated.root / "migrations" / "versions"
    (versions / "a001_audit.py").write_text(AUDIT_BRANCH)
    (versions / "0002_column.py").write_text(
        ADD_COLUMN.replace("{column}", "tag").replace("depends_on = None", 'depends_on = "a001"')
    )
    app = migrated.app()
    behind = schema(app)["error"]
    assert behind.endswith("the code needs 0002, a001: run flask db upgrade heads (deploy.release_command)"), behind
    migrated.flask_db("upgrade", "heads")  # `flask db upgrade` refuses scripts with two heads
    assert schema(app) == {"status": "ok"}


@pytest.mark.integration
def test_a_database_migrated_ahead_by_a_newer_release_keeps_the_old_one_ready(migrated: Migrated) -> None:
    migrated.flask_db("upgrade")
    migrated.execute("UPDATE alembic_version SET version_num = 'a1b2c3d4e5f6'")  # a revision this code lacks
    check = schema(migrated.app())
    assert check["status"] == "ok"
    assert check["detail"] == "database schema at a1b2c3d4e5f6, unknown to this code: a newer release's"


@pytest.mark.integration
def test_once_caught_up_later_probes_ask_the_database_nothing(migrated: Migrated) -> None:
    migrated.flask_db("upgrade")
    app = migrated.app()
    assert schema(app)["status"] == "ok"
    migrated.execute("DROP TABLE alembic_version")
    # This process saw its schema: the check does not query again (a serving release stays in the balancer).
    assert schema(app)["status"] == "ok"
    # A new process, as the next release's is, sees it.
    assert schema(migrated.app())["error"] == NEVER_MIGRATED


@pytest.mark.integration
def test_the_setting_turns_it_off(migrated: Migrated) -> None:
    status, body = readyz(migrated.app(Spec().replace(**{"database.migration_check": False})))
    assert status == 200 and "migrations" not in body["checks"], body


def test_the_check_waits_for_no_connection_while_requests_hold_every_one(tmp_path: Path) -> None:
    migrated = Migrated(tmp_path / "project", f"sqlite:///{tmp_path / 'notes.db'}")
    try:
        # Two: the database ping takes one beside the schema check once the requests let go.
        app = migrated.app(poolclass=sa.pool.QueuePool, pool_size=2, max_overflow=0, pool_timeout=30)
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
        with engine.connect(), engine.connect():  # requests holding every connection of the pool
            assert schema(app) == {"status": "ok"}
        assert schema(app)["error"] == NEVER_MIGRATED
    finally:
        migrated.close()


def test_scripts_that_cannot_be_read_are_noted_and_leave_the_app_ready(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    migrated = Migrated(tmp_path / "project", f"sqlite:///{tmp_path / 'notes.db'}")
    missing = tmp_path / "left-out-of-the-image"
    try:
        app = migrated.app(directory=missing)
        with caplog.at_level(logging.WARNING):
            first, second = schema(app), schema(app)
        assert first["status"] == second["status"] == "ok"
        assert first == second == {
            "status": "ok",
            "detail": f"schema not compared, the migration scripts could not be read: CommandError: Path doesn't "
            f"exist: {missing}.  Please use the 'init' command to create a new scripts folder."[:200],
        }
        told = [r.getMessage() for r in caplog.records if "schema not compared" in r.getMessage()]
        assert len(told) == 1 and told[0].startswith(first["detail"])  # read once, told once
    finally:
        migrated.close()


# --- several databases --------------------------------------------------------------------------------------------

MULTIDB_CLI_APP = """
import os

from flask import Flask
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
app.config["SQLALCHEMY_BINDS"] = {"users": os.environ["USERS_URL"]}
Migrate(app, SQLAlchemy(app))
"""

# As `flask db migrate` writes one from the multidb template: upgrade(engine_name) runs each engine's part.
MULTIDB_REVISION = """
revision = "REV"
down_revision = DOWN
branch_labels = None
depends_on = None

import sqlalchemy as sa
from alembic import op


def upgrade(engine_name):
    globals()["upgrade_%s" % engine_name]()


def downgrade(engine_name):
    globals()["downgrade_%s" % engine_name]()


def upgrade_():
    op.create_table("notes_REV", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade_():
    op.drop_table("notes_REV")


def upgrade_users():
    op.create_table("users_REV", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade_users():
    op.drop_table("users_REV")
"""


class TwoDatabases:
    """A project on a default database and a bind (users), both SQLite, with `flask db init` (--multidb or not)."""

    def __init__(self, root: Path, *, multidb: bool) -> None:
        root.mkdir()
        (root / "app.py").write_text(MULTIDB_CLI_APP)
        self.root, self.urls = root, {"DATABASE_URL": f"sqlite:///{root / 'main.db'}",
                                      "USERS_URL": f"sqlite:///{root / 'users.db'}"}  # fmt: skip
        self._engines: list[Any] = []
        self.flask_db("init", *(["--multidb"] if multidb else []))

    def flask_db(self, *args: str) -> None:
        done = subprocess.run(
            [str(BIN / "flask"), "db", *args], cwd=self.root, env=up_env(FLASK_APP="app:app", **self.urls),
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr

    def add_revision(self, revision: str, down: str | None, text: str = MULTIDB_REVISION) -> None:
        body = text.replace("REV", revision).replace("DOWN", repr(down))
        (self.root / "migrations" / "versions" / f"{revision}.py").write_text(body)

    def app(self) -> Flask:
        app = Flask(__name__)
        app.config.update(SECRET_KEY=secrets.token_hex(32), SQLALCHEMY_DATABASE_URI=self.urls["DATABASE_URL"],
                          SQLALCHEMY_BINDS={"users": self.urls["USERS_URL"]})  # fmt: skip
        Production(app, spec=Spec())
        db = flask_sqlalchemy.SQLAlchemy(app)
        flask_migrate.Migrate(app, db, directory=str(self.root / "migrations"))
        with app.app_context():
            self._engines += db.engines.values()
        return app

    def execute(self, url_env: str, statement: str) -> None:
        execute(self.urls[url_env], statement)

    def close(self) -> None:
        for engine in self._engines:
            engine.dispose()


@pytest.mark.integration
def test_multidb_scripts_are_compared_with_every_binds_database(tmp_path: Path) -> None:
    """`flask db init --multidb` keeps an alembic_version in each database: a bind left behind is behind too."""
    project = TwoDatabases(tmp_path / "multidb", multidb=True)
    try:
        project.add_revision("0001", None)
        project.flask_db("upgrade")
        project.add_revision("0002", "0001")
        assert schema(project.app())["error"] == f"SchemaBehind: database schema at 0001, the code needs 0002: {FIX}"
        project.flask_db("upgrade")
        assert schema(project.app()) == {"status": "ok"}

        project.execute("USERS_URL", "UPDATE alembic_version SET version_num = '0001'")  # the bind alone behind
        assert schema(project.app())["error"] == (
            f"SchemaBehind: bind 'users': database schema at 0001, the code needs 0002: {FIX}"
        )
        project.execute("USERS_URL", "UPDATE alembic_version SET version_num = 'f00d'")  # a newer release's
        assert schema(project.app()) == {
            "status": "ok", "detail": "bind 'users': database schema at f00d, unknown to this code: a newer release's"
        }  # fmt: skip
    finally:
        project.close()


@pytest.mark.integration
def test_single_database_scripts_leave_the_binds_alone(tmp_path: Path) -> None:
    """Without --multidb the scripts migrate the default database alone: a bind's has no alembic_version at all."""
    project = TwoDatabases(tmp_path / "single", multidb=False)
    try:
        (project.root / "migrations" / "versions" / "0001.py").write_text(
            'revision = "0001"\ndown_revision = None\nbranch_labels = None\ndepends_on = None\n\n'
            "def upgrade():\n    pass\n\n\ndef downgrade():\n    pass\n"
        )
        project.flask_db("upgrade")
        assert schema(project.app()) == {"status": "ok"}
    finally:
        project.close()


# --- flaskprod up ------------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_up_without_the_release_command_is_never_ready_and_names_the_fix(tmp_path: Path) -> None:
    # 15 s: on a busy host the first migrations check outran its 2 s and still ran at 8 s ("previous run still in
    # progress" was the last answer); its run dir's sockets fit: no folder deeper.
    root = project(tmp_path, toml="[proxy]\nready_timeout = 15\n")
    stack = start_up(root, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.proc.wait(timeout=60)  # up gives up after ready_timeout
    finally:
        stop(stack)
    assert stack.proc.returncode != 0, stack.output()
    error = stack.stderr().splitlines()[-1]
    assert error.startswith("Error: the app was not ready within proxy.ready_timeout = 15s: /readyz through nginx "
                            "last answered: 503 "), error
    assert NEVER_MIGRATED in error
    assert processes_under(root) == {}
