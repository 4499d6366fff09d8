"""`flaskprod check` trusts a key in the instance folder (FP-S004, FP-S010) only while the folder is out of the
repository: a file of it that git tracks is in the repository's history, and is reported with the fix. Without git,
or outside a git repository, the folder is trusted as before, with no traceback."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PLAIN, PROD, audit, write

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

WRITTEN_KEY = secrets.token_hex(32)
# Flask's tutorial: the key in instance/config.py, which the app reads with from_pyfile.
LOADS_INSTANCE = 'app.config.from_pyfile("config.py", silent=True)\n'
PROD_APP = PROD.replace("Flask(__name__)", "Flask(__name__, instance_relative_config=True)").replace(
    "Production(app)", LOADS_INSTANCE + "Production(app)"
)
INSTANCE = {"instance/config.py": f"SECRET_KEY = {WRITTEN_KEY!r}\n"}
HINT = (
    "take the instance folder out of the repository: `git rm --cached -r instance/` and add `instance/` to "
    ".gitignore; the key stays in the repository's history, so give the app a new random key in the untracked file "
    "(or FLASK_SECRET_KEY / FLASK_SECRET_KEY_FILE)"
)


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, timeout=30)


def found(messages: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(m["obj"], m["text"], m["hint"]) for m in messages]


def test_a_key_in_an_instance_folder_git_tracks_is_found(project: Path) -> None:
    write(project, {"app.py": PROD_APP, **INSTANCE})
    git(project, "init", "-q")
    git(project, "add", "app.py", "instance/config.py")
    result = audit(project, {})
    assert found(result.only("FP-S004")) == [
        (
            "instance/config.py:1",
            "SECRET_KEY is a string written in instance/config.py, a file of the instance folder that git tracks: "
            "anyone who can read the code can sign sessions",
            HINT,
        )
    ]


def test_a_key_in_effect_from_a_tracked_instance_folder_names_the_fix(project: Path) -> None:
    # Without Production(app), FLASK_SECRET_KEY does not reach the app: it runs with the committed key.
    source = PLAIN.replace("Flask(__name__)", "Flask(__name__, instance_relative_config=True)") + LOADS_INSTANCE
    write(project, {"app.py": source, **INSTANCE})
    git(project, "init", "-q")
    git(project, "add", "--all")
    result = audit(project, {})
    assert [(m["obj"], m["hint"]) for m in result.only("FP-S010")] == [("instance/config.py:1", HINT)]
    assert "instance/config.py, a file of the instance folder that git tracks" in result.only("FP-S010")[0]["text"]


def test_an_ignored_instance_folder_is_trusted(project: Path) -> None:
    # The tutorial's project: instance/ in .gitignore, the rest committed.
    write(project, {"app.py": PROD_APP, ".gitignore": "instance/\n", **INSTANCE})
    git(project, "init", "-q")
    git(project, "add", "--all")
    result = audit(project, {})
    assert {"FP-S004", "FP-S010"} & set(result.ids()) == set(), result.messages


def test_no_repository_or_no_git_trusts_the_folder(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert {"FP-S004", "FP-S010"} & set(audit(project, {"app.py": PROD_APP, **INSTANCE}).ids()) == set()
    git(project, "init", "-q")
    git(project, "add", "--all")
    # git missing from PATH: the folder is trusted as without a repository, and check does not fail.
    empty = tmp_path_factory.mktemp("no-git-bin")  # not beside project: the parent is every test's
    monkeypatch.setenv("PATH", str(empty))
    result = audit(project, {})
    assert result.exit_code in (0, 1)
    assert {"FP-S004", "FP-S010"} & set(result.ids()) == set(), result.messages
