"""`flaskprod check` reports a database in the instance folder that git tracks (FP-S012): users' data in the
repository, and a deploy of the code that puts the committed copy over production's. Quiet when the folder is
ignored, outside a git repository, and without git, with no traceback."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PROD, audit, write
from tests.test_check_committed import found, git

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

APP = PROD.replace("Flask(__name__)", "Flask(__name__, instance_relative_config=True)")
HINT = (
    "take the instance folder out of the repository: `git rm --cached -r instance/` and add `instance/` to "
    ".gitignore (the file stays on disk); create the production database where the app runs (the app's init-db "
    "command, migrations), and purge the file from the history (git filter-repo --invert-paths --path {file}) "
    "if it holds real users' data"
)
TEXT = (
    "{file}, a database in the instance folder, is tracked by git: its users' data is in the repository, and a "
    "deploy of the code puts the committed copy over the production database"
)


def instance_database(root: Path, name: str = "instance/flaskr.sqlite") -> None:
    """The Flask tutorial's database, as its init-db command makes it."""
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(root / name)
    with connection:
        connection.execute("CREATE TABLE user (id INTEGER PRIMARY KEY, username TEXT, password TEXT)")
        # A row that reads as a setting: the database is FP-S012's, not a config file FP-S011 reads.
        connection.execute("INSERT INTO user (username) VALUES ('\nGITHUB_TOKEN = \"ghp_0123456789abcdef\"\n')")
    connection.close()


def test_a_tracked_database_in_the_instance_folder_is_found(project: Path) -> None:
    write(project, {"app.py": APP, "instance/config.py": "MAIL_SERVER = 'smtp.example.com'\n"})
    instance_database(project)
    instance_database(project, "instance/data")  # no suffix: known by SQLite's header
    git(project, "init", "-q")
    git(project, "add", "--all")
    files = ("instance/data", "instance/flaskr.sqlite")
    result = audit(project, {})
    assert found(result.only("FP-S012")) == [(file, TEXT.format(file=file), HINT.format(file=file)) for file in files]
    assert result.only("FP-S011") == []


def test_an_ignored_instance_database_is_quiet(project: Path) -> None:
    write(project, {"app.py": APP, ".gitignore": "instance/\n"})
    instance_database(project)
    git(project, "init", "-q")
    git(project, "add", "--all")
    result = audit(project, {})
    assert "FP-S012" not in result.ids(), result.messages


def test_no_repository_or_no_git_is_quiet(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    write(project, {"app.py": APP})
    instance_database(project)
    assert "FP-S012" not in audit(project, {}).ids()
    git(project, "init", "-q")
    git(project, "add", "--all")
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("no-git-bin")))  # git missing from PATH
    result = audit(project, {})
    assert result.exit_code in (0, 1)
    assert "FP-S012" not in result.ids(), result.messages
