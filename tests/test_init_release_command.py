"""`flaskprod init` for a Flask-SQLAlchemy app without Flask-Migrate: the app's own command that creates its tables
(db.create_all()) and drops none becomes deploy.release_command, as check's FP-R002 asks; one that drops tables too
is only named, commented, since each deploy would empty the database."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.test_check_release_hooks import (
    IMPORTS_TABLES,
    MANAGE,
    MANAGE_DROPS_IN_HELPER,
    MANAGE_HELPER,
    TABLES_DROPS,
    TABLES_HELPER,
)
from tests.test_check_release_tables import CREATE, HELPER, HELPERS, MODELS, SCHEMA
from tests.test_init import flaskprod


def init(project: Path, files: dict[str, str]) -> str:
    """flaskprod.toml as `flaskprod init` wrote it for these files."""
    for name, text in {**files, "requirements.txt": "flask-sqlalchemy\nflaskprod\n"}.items():
        (project / name).write_text(text)
    result = flaskprod(project, "init")
    assert result.returncode == 0, result.stderr
    return (project / "flaskprod.toml").read_text()


def test_the_apps_create_only_command_is_set_and_check_is_then_quiet(tmp_path: Path) -> None:
    written = init(tmp_path, {"app.py": MODELS + CREATE})
    assert tomllib.loads(written)["deploy"] == {"release_command": "flask init-db"}
    assert 'release_command = "flask init-db"  # db.create_all(), which only adds missing tables' in written
    checked = flaskprod(tmp_path, "check")
    assert "FP-R002" not in checked.stdout, checked.stdout + checked.stderr


def test_a_command_that_drops_tables_is_named_but_left_commented(tmp_path: Path) -> None:
    drop_all = CREATE.replace("    db.create_all()", "    db.drop_all()\n    db.create_all()")
    written = init(tmp_path, {"app.py": MODELS + drop_all})
    assert tomllib.loads(written)["deploy"] == {}
    assert (
        '\n# release_command = "flask init-db"  # not set: it drops tables too (drop_all()), so each deploy would '
        "empty the database: run it once by hand\n"
    ) in written
    # The Flask tutorial's shape: a helper in another module runs schema.sql, which begins with DROP TABLE.
    (tmp_path / "flaskprod.toml").unlink()
    files = {"app.py": "import helpers\n" + MODELS + HELPER, "helpers.py": HELPERS, "schema.sql": SCHEMA}
    written = init(tmp_path, files)
    assert tomllib.loads(written)["deploy"] == {}
    assert "# not set: it drops tables too (DROP in schema.sql)" in written


def test_an_app_with_no_table_command_keeps_the_generic_comment(tmp_path: Path) -> None:
    written = init(tmp_path, {"app.py": MODELS})
    assert tomllib.loads(written)["deploy"] == {}
    assert '\n# release_command = "flask db upgrade"  # run once per release, before it takes requests\n' in written


def test_a_manage_py_flaskgroup_command_is_set_as_check_names_it(tmp_path: Path) -> None:
    """A manage.py's FlaskGroup commands are not on app.cli: the source shows them, and how the script runs them."""
    written = init(tmp_path, {"app.py": MODELS, "manage.py": MANAGE})
    assert tomllib.loads(written)["deploy"] == {"release_command": "python manage.py create_db"}
    checked = flaskprod(tmp_path, "check")
    assert "FP-R002" not in checked.stdout, checked.stdout + checked.stderr
    (tmp_path / "flaskprod.toml").unlink()
    reset_only = MANAGE.replace('@cli.command("create_db")\ndef create_db():\n    db.create_all()\n\n\n', "")
    written = init(tmp_path, {"app.py": MODELS, "manage.py": reset_only})
    assert tomllib.loads(written)["deploy"] == {}
    commented = '\n# release_command = "python manage.py reset-tables"  # not set: it drops tables too (drop_all())'
    assert commented in written


def test_a_scripts_command_whose_helper_drops_tables_is_not_set(tmp_path: Path) -> None:
    """The drop_all() one helper down (through a cycle of helpers) is read: each deploy would empty the database."""
    files = {"app.py": MODELS, "tables.py": TABLES_DROPS, "manage.py": MANAGE_DROPS_IN_HELPER}
    written = init(tmp_path, files)
    assert tomllib.loads(written)["deploy"] == {}
    commented = '\n# release_command = "python manage.py create_db"  # not set: it drops tables too (drop_all())'
    assert commented in written
    # A helper that only creates, called from the script's command alone, is the command's: set.
    (tmp_path / "flaskprod.toml").unlink()
    files = {"app.py": MODELS + IMPORTS_TABLES, "tables.py": TABLES_HELPER, "manage.py": MANAGE_HELPER}
    written = init(tmp_path, files)
    assert tomllib.loads(written)["deploy"] == {"release_command": "python manage.py create_db"}
