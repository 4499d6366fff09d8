"""A user's mistakes, tried on the real command line: each is one line naming the problem and its fix, the exit status
the README gives, and nothing half-written."""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import copy_taskboard, run_flaskprod

KEY = {"FLASK_SECRET_KEY": secrets.token_hex(32)}


def digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under folder, hidden ones (build's record) too."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def immutable() -> Iterator[list[Path]]:
    """Paths a test marks immutable (chattr +i: not even root may replace them), made mutable again at teardown."""
    marked: list[Path] = []
    yield marked
    for path in marked:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_build_that_cannot_replace_a_file_leaves_every_file_as_it_was(tmp_path: Path, immutable: list[Path]) -> None:
    """A file build cannot replace (immutable here; on a read-only mount, another owner's) was found only as the files
    were moved into place: a traceback with exit 1, the files before it already replaced and the record not, so the
    next build called them changed by hand."""
    project = copy_taskboard(tmp_path / "shop")
    first = run_flaskprod("build", "-t", "compose", cwd=project, env=KEY)
    assert first.returncode == 0, first.stderr
    out = project / "deploy" / "compose"
    before = digests(out)
    locked = out / "compose.yaml"
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    immutable.append(locked)

    result = run_flaskprod("build", "-t", "compose", "--set", "deploy.cpus=2", cwd=project, env=KEY)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: cannot write {locked}") and "nothing was written" in lines[0], lines[0]
    assert digests(out) == before  # no file replaced, no temporary left beside them


def test_build_that_cannot_remove_a_file_it_no_longer_writes_changes_nothing(
    tmp_path: Path, immutable: list[Path]
) -> None:
    """Removing the files a build no longer writes (monitoring's, once --with monitoring is left out) came after the
    record was rewritten: one it could not remove was a traceback, exit 1, and the rest of them, out of the record,
    were left for ever with nothing to say they were flaskprod's."""
    project = copy_taskboard(tmp_path / "shop")
    first = run_flaskprod("build", "-t", "compose", "--with", "monitoring", cwd=project, env=KEY)
    assert first.returncode == 0, first.stderr
    out = project / "deploy" / "compose"
    before = digests(out)
    locked = out / "monitoring" / "prometheus" / "prometheus.yml"
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    immutable.append(locked)

    result = run_flaskprod("build", "-t", "compose", cwd=project, env=KEY)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Error: cannot remove {locked}") and "nothing was written" in lines[0], lines[0]
    assert digests(out) == before


@pytest.mark.parametrize(("source", "said"), [("app = None\n", "is None"), ("import sqlite3\napp = 42\n", "is an int")])
def test_an_app_name_bound_to_no_flask_app_says_what_it_is_and_the_fix(tmp_path: Path, source: str, said: str) -> None:
    """Flask's own line, 'A valid Flask application was not obtained from 'web:app'.', named neither what the name
    held nor what to pass instead."""
    (tmp_path / "web.py").write_text(source)

    result = run_flaskprod("check", "web:app", cwd=tmp_path, env=KEY)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: 'web:app' {said}, not a Flask app: name the module's Flask app or factory instead, as in "
        "'web:create_app()'"
    ]


def test_init_in_a_folder_it_may_not_write_names_flaskprod_toml_and_no_out_flag(
    tmp_path: Path, immutable: list[Path]
) -> None:
    """init named the temporary file it could not create (/srv/app/.flaskprod.toml.4c0mw5bi) and told the user to
    write elsewhere with --out, a flag init does not have."""
    project = copy_taskboard(tmp_path / "shop")
    (project / "flaskprod.toml").unlink()
    (project / "instance").mkdir()  # which the app makes as it loads
    subprocess.run(["chattr", "+i", str(project)], check=True)
    immutable.append(project)

    result = run_flaskprod("init", "wsgi:app", cwd=project, env=KEY)

    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot write {project / 'flaskprod.toml'}: Operation not permitted; nothing was written: fix that "
        "path (a file where a folder goes, its permissions)"
    ]
    assert not (project / "flaskprod.toml").exists()


def test_settings_in_pyproject_beside_a_flaskprod_toml_are_said_to_be_unread(tmp_path: Path) -> None:
    """With both files, flaskprod.toml alone is read: pyproject.toml's server.workers = 5 lost to its 3 in silence."""
    project = copy_taskboard(tmp_path / "shop")
    with (project / "flaskprod.toml").open("a") as toml:
        toml.write("\n[server]\nworkers = 3\n")
    (project / "pyproject.toml").write_text('[project]\nname = "shop"\n\n[tool.flaskprod.server]\nworkers = 5\n')

    result = run_flaskprod("config", "--format", "json", cwd=project)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["server.workers"]["value"] == 3
    assert result.stderr.strip().splitlines() == [
        "Warning: pyproject.toml's [tool.flaskprod] is not read, since flaskprod.toml is: move its settings into "
        "flaskprod.toml and delete the table"
    ]
    (project / "pyproject.toml").write_text('[project]\nname = "shop"\n')  # no settings there: nothing to say
    assert run_flaskprod("config", cwd=project).stderr == ""
