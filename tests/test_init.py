"""`flaskprod init`: the app found and named exactly, a config the other commands read, nothing overwritten."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

from tests.support import BIN
from tests.test_serve import clean_env

FLASKPROD = str(BIN / "flaskprod")
MIGRATED = Path(__file__).parent / "apps" / "migrated"
MODULE_APP = "from flask import Flask\n\napp = Flask(__name__)\n"
FACTORY_APP = "from flask import Flask\n\n\ndef create_app():\n    return Flask(__name__)\n"
PRODUCTION_APP = MODULE_APP.replace("\n\n", "\n\nfrom flaskprod import Production\n\n", 1) + "Production(app)\n"
BROKEN_CONFIGS = ["[app\ntarget = wsgi:app\n", '[app]\ntargte = "wsgi:app"\n', '[server]\nworkers = "many"\n']


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
    assert result.stdout.splitlines()[0] == f"flaskprod init: created flaskprod.toml for {target} (shop 0.0.0)"
    written = tomllib.loads((project / "flaskprod.toml").read_text())
    assert written["app"] == {"target": target, "name": "shop", "version": "0.0.0"}
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


@pytest.mark.parametrize(
    "mine",
    ['[app]\ntarget = "wsgi:app"\nname = "mine"\n', *BROKEN_CONFIGS],
    ids=["valid", "not-toml", "unknown-key", "bad-value"],
)
def test_an_existing_config_is_kept_unless_forced(tmp_path: Path, mine: str) -> None:
    # A broken one too: init does not read the file it replaces.
    (tmp_path / "wsgi.py").write_text(PRODUCTION_APP)
    (tmp_path / "flaskprod.toml").write_text(mine)
    result = flaskprod(tmp_path, "init")
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: {tmp_path / 'flaskprod.toml'} differs from what flaskprod writes: nothing was written; "
        "edit it, or pass --force to replace it\n"
    )
    assert (tmp_path / "flaskprod.toml").read_text() == mine
    assert flaskprod(tmp_path, "init", "--force").returncode == 0
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["name"] != "mine"


def test_dry_run_prints_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    result = flaskprod(tmp_path, "init", "--dry-run")
    assert result.returncode == 0
    assert 'target = "wsgi:app"' in result.stdout
    assert not (tmp_path / "flaskprod.toml").exists()


@pytest.mark.parametrize(
    ("files", "args", "message"),
    [
        ({}, [], "no Flask app found: tried FLASK_APP, wsgi.py, app.py"),
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


ARG_FACTORY_APP = "from flask import Flask\n\n\ndef create_app(where='here'):\n    return Flask(__name__)\n"


@pytest.mark.parametrize(
    "target",
    ['mypkg:create_app("prod")', "mypkg:create_app('prod')", 'mypkg:create_app("C:\\\\srv\\\\shop")'],
    ids=["double-quotes", "single-quotes", "backslashes"],
)
def test_the_target_is_written_as_toml_and_read_back_exactly(tmp_path: Path, target: str) -> None:
    (tmp_path / "mypkg.py").write_text(ARG_FACTORY_APP)
    result = flaskprod(tmp_path, "init", target)
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["target"] == target
    shown = flaskprod(tmp_path, "config")
    assert shown.returncode == 0, shown.stderr


def test_a_version_with_quotes_is_written_as_toml(tmp_path: Path) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "shop"\nversion = "1.0 \\"rc\\" \\\\ 2\\n"\n')
    result = flaskprod(tmp_path, "init")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["version"] == '1.0 "rc" \\ 2\n'


def test_toml_string_escapes_every_control_character() -> None:
    from flaskprod.initconfig import toml_string

    text = "".join(chr(code) for code in range(0x80)) + "é\u2028"
    assert tomllib.loads(f"value = {toml_string(text)}\n")["value"] == text




@pytest.mark.parametrize("broken", BROKEN_CONFIGS, ids=["not-toml", "unknown-key", "bad-value"])
def test_force_replaces_a_broken_config(tmp_path: Path, broken: str) -> None:
    # Production(app) reads the spec while the app loads: the probe must not read the file either.
    (tmp_path / "wsgi.py").write_text(PRODUCTION_APP)
    (tmp_path / "flaskprod.toml").write_text(broken)
    result = flaskprod(tmp_path, "init", "--force")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("flaskprod init: updated flaskprod.toml for wsgi:app")
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["target"] == "wsgi:app"


def test_flaskprod_variables_take_no_part_in_init(tmp_path: Path) -> None:
    # A bad variable is not the app's fault: init writes the file, the variable is reported by the
    # commands it would change.
    (tmp_path / "wsgi.py").write_text(PRODUCTION_APP)
    (tmp_path / "elsewhere.toml").write_text("not toml [\n")
    env = clean_env(FLASKPROD_SERVER__WORKERS="many", FLASKPROD_CONFIG=str(tmp_path / "elsewhere.toml"))
    result = subprocess.run([FLASKPROD, "init"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "FLASKPROD_SERVER__WORKERS" not in result.stderr
    written = tomllib.loads((tmp_path / "flaskprod.toml").read_text())
    assert written["app"]["target"] == "wsgi:app"
    assert "workers" not in written["server"]


@pytest.mark.parametrize("existing", ['[app]\ntarget = "wsgi:app"\nname = "mine"\n', "not toml [\n"])
def test_dry_run_prints_over_an_existing_config_and_keeps_it(tmp_path: Path, existing: str) -> None:
    (tmp_path / "wsgi.py").write_text(MODULE_APP)
    (tmp_path / "flaskprod.toml").write_text(existing)
    result = flaskprod(tmp_path, "init", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads(result.stdout)["app"]["target"] == "wsgi:app"
    assert (tmp_path / "flaskprod.toml").read_text() == existing


PYPROJECT_WITH_SETTINGS = '[project]\nname = "shop"\nversion = "1.0"\n\n[tool.flaskprod.server]\nthreads = 4\n'


def refused_init(root: Path, pyproject: str) -> str:
    """What `flaskprod init` says, refusing, in a project with this pyproject.toml; it writes nothing."""
    (root / "wsgi.py").write_text(MODULE_APP)
    (root / "pyproject.toml").write_text(pyproject)
    result = flaskprod(root, "init")
    assert result.returncode == 2
    assert not (root / "flaskprod.toml").exists()
    return result.stderr


def test_a_pyproject_that_does_not_parse_is_named_as_such_not_as_settings_to_keep(tmp_path: Path) -> None:
    assert refused_init(tmp_path, "[tool.flaskprod\nthreads = 4\n") == (
        f"Error: {tmp_path / 'pyproject.toml'}: not valid TOML: Expected ']' at the end of a table declaration "
        "(at line 1, column 16); fix the file\n"
    )


def test_settings_in_pyproject_are_not_replaced_unless_forced(tmp_path: Path) -> None:
    assert refused_init(tmp_path, PYPROJECT_WITH_SETTINGS) == (
        f"Error: {tmp_path / 'pyproject.toml'} already holds flaskprod's settings ([tool.flaskprod]): nothing was "
        "written; keep them there, or pass --force to write flaskprod.toml, which then replaces them\n"
    )
    assert flaskprod(tmp_path, "init", "--dry-run").returncode == 0
    assert not (tmp_path / "flaskprod.toml").exists()

    forced = flaskprod(tmp_path, "init", "--force")
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.splitlines()[:2] == [
        "flaskprod init: created flaskprod.toml for wsgi:app (shop 1.0)",
        "  pyproject.toml's [tool.flaskprod] is no longer read: flaskprod.toml replaces it",
    ]
    assert (tmp_path / "pyproject.toml").read_text() == PYPROJECT_WITH_SETTINGS


def test_a_factory_named_without_parentheses_is_written_as_given_and_served_alike(tmp_path: Path) -> None:
    # Flask calls a function named by the import string, with or without "()": init keeps the user's words.
    (tmp_path / "shop.py").write_text(
        "from flask import Flask\n\nfrom flaskprod import Production\n\n\n"
        "def create_app():\n    app = Flask(__name__)\n    Production(app)\n    return app\n"
    )
    (tmp_path / "requirements.txt").write_text("flask\nflaskprod\n")
    result = flaskprod(tmp_path, "init", "shop:create_app")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((tmp_path / "flaskprod.toml").read_text())["app"]["target"] == "shop:create_app"
    # check loads the app the file names: a clean report means the factory was called and its app found.
    checked = flaskprod(tmp_path, "check")
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize(
    ("migrate_args", "command"), [("", "flask db upgrade"), (', command="schema"', "flask schema upgrade")]
)
def test_a_flask_migrate_app_gets_its_upgrade_as_the_release_command(
    tmp_path: Path, migrate_args: str, command: str
) -> None:
    """Without it `up` never turns ready (/readyz: the schema is behind) and every target starts the code on the old
    schema: init sets what check's FP-R001 asks for, in the group the app registered."""
    project = tmp_path / "notes"
    shutil.copytree(MIGRATED, project, ignore=shutil.ignore_patterns("__pycache__"))
    app = project / "app.py"
    app.write_text(app.read_text().replace('"migrations"))', f'"migrations"){migrate_args})', 1))
    (project / "requirements.txt").write_text("flask-migrate\nflaskprod\n")
    result = flaskprod(project, "init")
    assert result.returncode == 0, result.stderr
    assert tomllib.loads((project / "flaskprod.toml").read_text())["deploy"] == {"release_command": command}
    checked = flaskprod(project, "check")
    assert checked.returncode == 0 and "FP-R001" not in checked.stdout, checked.stdout + checked.stderr
    # An app without Flask-Migrate gets the setting as a comment only.
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "wsgi.py").write_text(MODULE_APP)
    assert flaskprod(tmp_path / "plain", "init").returncode == 0
    written = (tmp_path / "plain" / "flaskprod.toml").read_text()
    assert tomllib.loads(written)["deploy"] == {} and '\n# release_command = "flask db upgrade"' in written
