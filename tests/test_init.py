"""`flaskprod init`: the app found and named exactly, a config the other commands read, nothing overwritten."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support import BIN
from tests.test_serve import clean_env

FLASKPROD = str(BIN / "flaskprod")
MODULE_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
FACTORY_APP = "from flask import Flask\n\n\ndef create_app():\n    return Flask(__name__)\n"


def flaskprod(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLASKPROD, *args], cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("filename", "source", "target"),
    [("wsgi.py", MODULE_APP, "wsgi:app"), ("app.py", FACTORY_APP, "app:create_app()")],
)
def test_init_names_the_app_exactly_and_config_reads_it(
    tmp_path: Path, filename: str, source: str, target: str
) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / filename).write_text(source)
    (project / "requirements.txt").write_text("flask\nflaskprod\n")
    result = flaskprod(project, "init")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == f"flaskprod init: created flaskprod.toml for {target} (shop 0.1.0)"
    written = tomllib.loads((project / "flaskprod.toml").read_text())
    assert written["app"] == {"target": target, "name": "shop", "version": "0.1.0"}
    shown = flaskprod(project, "config")
    assert shown.returncode == 0, shown.stderr
    line = next(line for line in shown.stdout.splitlines() if line.startswith("app.target"))
    assert f'"{target}"' in line
    assert line.endswith(str(project / "flaskprod.toml"))


def test_name_and_version_come_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "inventory"\nversion = "2.4.0"\n')
    result = flaskprod(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["version"] == "2.4.0"
    assert "(inventory 2.4.0)" in result.stdout
    # The image can install the app from pyproject.toml: init does not ask for a requirements.txt.
    assert "requirements.txt" not in result.stdout


def test_init_without_requirements_says_what_build_will_need(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    result = flaskprod(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert "  no requirements.txt: `flaskprod build` needs one (pip freeze > requirements.txt)" in result.stdout
    assert "# No requirements.txt was found" in (tmp_path / "flaskprod.toml").read_text()


def test_flask_prod_init_takes_the_app_flask_names(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(FACTORY_APP)
    (tmp_path / "other.py").write_text(MODULE_APP)
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "other:app", "prod", "init"],
        cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["target"] == "other:app"


def test_an_existing_config_is_kept_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    mine = '[app]\ntarget = "wsgi:app"\nname = "mine"\n'
    (tmp_path / "flaskprod.toml").write_text(mine)
    result = flaskprod(tmp_path, "init")
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {tmp_path / 'flaskprod.toml'} differs from what flaskprod writes: nothing was written; "
        "edit it, or pass --force to replace it\n"
    )
    assert (tmp_path / "flaskprod.toml").read_text() == mine
    assert flaskprod(tmp_path, "init", "--force").returncode == 0
    assert 'name = "mine"' not in (tmp_path / "flaskprod.toml").read_text()


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    result = flaskprod(tmp_path, "init", "--dry-run")
    assert result.returncode == 0
    assert 'target = "wsgi:app"' in result.stdout
    assert not (tmp_path / "flaskprod.toml").exists()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, [], "no Flask app found: tried wsgi.py, app.py"),
        ({"wsgi.py": "import nosuchpackage\n"}, [], "No module named 'nosuchpackage'"),
        ({"wsgi.py": MODULE_APP}, ["wsgi:nothere"], "module 'wsgi' has no attribute 'nothere'"),
    ],
)
def test_no_app_is_one_line_and_nothing_written(
    tmp_path: Path, files: dict[str, str], args: list[str], message: str
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = flaskprod(tmp_path, "init", *args)
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "flaskprod.toml").exists()
