"""deploy.release_command: `flask db upgrade` run once per release before the new code takes a request, under
`up` (SQLite and --with postgres) and `deploy` (a failing one leaves the running release serving), and in the
files every target builds, judged by the tools that run them."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import requests

from flaskprod.errors import SpecError
from flaskprod.spec import load_spec
from tests.support import BIN, free_port
from tests.test_up_postgres import local_dir, visits  # noqa: F401 (fixtures)
from tests.upstack import Loader, UpStack, processes_under, start_up, stop, summary, up_env

FIXTURE = Path(__file__).parent / "apps" / "migrated"
UPGRADE = 'release_command = "flask db upgrade"\n'
# A second migration, and one that fails as a migration can (a column the table already has).
ADD_COLUMN = '''
"""A column.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade():
    op.add_column("notes", sa.Column("{column}", sa.String(20), nullable=True))


def downgrade():
    op.drop_column("notes", "{column}")
'''


def project(root: Path, toml: str = f"[deploy]\n{UPGRADE}") -> Path:
    """The fixture app copied to root, with toml as its flaskprod.toml."""
    shutil.copytree(FIXTURE, root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    (root / "flaskprod.toml").write_text(toml)
    return root


def flaskprod(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=up_env(), capture_output=True, text=True, timeout=120
    )


def run_up(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`flaskprod up` that is expected to stop on its own."""
    return flaskprod(root, "up", "app:app", "--port", str(free_port()), "--workers", "1", *args)


def start(root: Path, *extra: str) -> UpStack:
    stack = start_up(root, "gunicorn", free_port(), "--workers", "1", "--threads", "4", *extra)
    try:
        stack.wait_ready()
    except BaseException:
        stop(stack)
        raise
    return stack


def post_note(stack: UpStack, text: str) -> requests.Response:
    return requests.post(stack.url("/notes"), data=text, timeout=15)


# --- the setting ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"flask db upgrade && flask seed"', "one command, run without a shell, so && would reach it"),
        ("'flask db \"upgrade'", "a command such as `flask db upgrade`, its quotes closed (unset for none)"),
    ],
)
def test_a_command_that_would_need_a_shell_is_refused_in_one_line(tmp_path: Path, value: str, expected: str) -> None:
    (tmp_path / "flaskprod.toml").write_text(f"[deploy]\nrelease_command = {value}\n")
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path, config=None, environ={})
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_the_command_is_split_as_a_shell_would_and_unset_by_default(tmp_path: Path) -> None:
    assert load_spec(tmp_path, config=None, environ={}).deploy.release_argv == ()
    spec = load_spec(
        tmp_path, config=None, environ={"FLASKPROD_DEPLOY__RELEASE_COMMAND": "sh -c 'flask db upgrade && flask seed'"}
    )
    assert spec.deploy.release_argv == ("sh", "-c", "flask db upgrade && flask seed")


# --- up and deploy ---------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_up_migrates_before_the_first_request_and_a_fresh_app_without_it_fails(tmp_path: Path) -> None:
    with_command = project(tmp_path / "with")
    stack = start(with_command)
    try:
        assert post_note(stack, "first").status_code == 201
        assert stack.get("/notes").json() == ["first"]
        err = stack.stderr()
        assert "running the release command `flask db upgrade` in release 1" in err
        assert "Running upgrade  -> 0001, The notes table." in (stack.run_dir / "logs" / "release-1.log").read_text()
        assert '"message": "the release command `flask db upgrade` ran in ' in err and '"duration": ' in err
    finally:
        stop(stack)
    # The table is in the project's instance folder, which every release links: the next release sees it.
    assert (with_command / "instance" / "notes.db").is_file()

    # The same app without the setting: ready by /readyz, and every request to its table a 500.
    without = project(tmp_path / "without", toml="")
    stack = start(without)
    try:
        assert stack.get("/readyz").status_code == 200
        assert post_note(stack, "lost").status_code == 500
        assert "no such table: notes" in stack.stdout() + stack.stderr()
    finally:
        stop(stack)


@pytest.mark.integration
def test_up_with_postgres_migrates_the_database_up_starts(request: pytest.FixtureRequest) -> None:
    # PostgreSQL's directory, where its user may enter, and a project whose path leaves room for the sockets.
    pg_dir, root = request.getfixturevalue("local_dir"), project(request.getfixturevalue("visits"))
    stack = start(root, "--with", "postgres", "--set", f"database.local_dir={pg_dir}")
    try:
        assert post_note(stack, "in postgres").status_code == 201
        assert stack.get("/notes").json() == ["in postgres"]
        log = (stack.run_dir / "logs" / "release-1.log").read_text()
        assert "Context impl PostgresqlImpl." in log and "Running upgrade  -> 0001" in log
    finally:
        stop(stack)
    assert stack.proc.returncode == 0, stack.output()
    assert not (root / "instance" / "notes.db").exists()  # the migration went where the app's DATABASE_URL points


@pytest.mark.integration
def test_a_failing_release_command_leaves_the_running_release_serving(tmp_path: Path) -> None:
    root = project(tmp_path)
    stack = start(root)
    try:
        assert post_note(stack, "before").status_code == 201
        versions = root / "migrations" / "versions"
        # "text" is a column the table has: the migration fails as the database refuses it.
        (versions / "0002_column.py").write_text(ADD_COLUMN.replace("{column}", "text"))
        loader = Loader(stack.port, path="/notes", threads=2, max_requests=20000, max_seconds=60).start()
        failed = flaskprod(root, "deploy")
        outcomes = loader.stop()
        assert failed.returncode == 1, failed.stderr
        error = failed.stderr.splitlines()[-1]
        assert error.startswith(
            "Error: the release command `flask db upgrade` exited with status 1 after "
        ), error
        assert "so release 2 does not start; its last lines: " in error
        assert "duplicate column name: text" in error
        assert error.endswith(f"(all of it: {stack.run_dir}/logs/release-2.log); release 1 still serves")
        assert loader.count("ok") == len(outcomes) > 10, summary(outcomes)
        assert stack.get("/notes").json() == ["before"]
        assert not any((stack.run_dir / "releases" / "2").iterdir())  # it never served: no rollback goes to it

        (versions / "0002_column.py").write_text(ADD_COLUMN.replace("{column}", "tag"))
        fixed = flaskprod(root, "deploy")
        assert fixed.returncode == 0, fixed.stderr
        assert "flaskprod deploy: the release command `flask db upgrade` ran in " in fixed.stderr
        assert "Running upgrade 0001 -> 0002" in (stack.run_dir / "logs" / "release-3.log").read_text()
        assert post_note(stack, "after").status_code == 201
        assert stack.get("/notes").json() == ["before", "after"]
    finally:
        stop(stack)


@pytest.mark.integration
def test_up_refuses_to_start_a_release_whose_command_fails_or_outlives_its_timeout(tmp_path: Path) -> None:
    failing = project(tmp_path / "failing", toml='[deploy]\nrelease_command = "flask db upgrade --sql-typo"\n')
    done = run_up(failing)
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: the release command `flask db upgrade --sql-typo` exited with status 2 after ")
    assert (
        "its last lines: Usage: flask db upgrade [OPTIONS] [REVISION] | Try 'flask db upgrade --help' for help. | "
        "Error: No such option '--sql-typo'."
    ) in error
    assert processes_under(failing) == {}
    assert not any((failing / ".flaskprod" / "run" / "releases" / "1").iterdir())

    slow = project(
        tmp_path / "slow",
        toml=textwrap.dedent("""\
            [deploy]
            release_command = "python -c 'import time; print(\\"migrating\\", flush=True); time.sleep(60)'"
            release_timeout = 1
            """),
    )
    done = run_up(slow)
    assert done.returncode == 2, done.stderr
    error = done.stderr.splitlines()[-1]
    assert error.startswith("Error: the release command `python -c ")
    assert "did not finish within deploy.release_timeout = 1s and was stopped" in error
    assert "its last lines: migrating (all of it: " in error
    assert processes_under(slow) == {}


@pytest.mark.integration
def test_a_program_that_is_not_installed_is_named(tmp_path: Path) -> None:
    root = project(tmp_path, toml='[deploy]\nrelease_command = "no-such-migrator up"\n')
    done = run_up(root)
    assert done.returncode == 2
    assert done.stderr.splitlines()[-1] == (
        f"Error: deploy.release_command: 'no-such-migrator' is not found in {BIN} or on PATH: install it into the "
        "app's virtualenv (`flask db upgrade` needs flask-migrate) or give its full path"
    )
