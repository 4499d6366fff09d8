"""FP-R001's hint when the project already runs its own release step: Flasky's boot.sh runs `flask deploy` (which
upgrades the database and more) before gunicorn, and a Heroku Procfile's `release: flask db upgrade` runs before each
release. The hint suggested `flask db upgrade` whatever the project runs; it now names the project's own command, and
where it runs it, as the value for deploy.release_command."""

from __future__ import annotations

from pathlib import Path

from flaskprod.checks.registry import REGISTRY
from tests import test_check
from tests.test_check import MIGRATE, PROD, audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

FLASKY_BOOT = """\
#!/bin/bash
source venv/bin/activate
while true; do
    flask deploy
    if [[ "$?" == "0" ]]; then
        break
    fi
    echo Deploy command failed, retrying in 5 secs...
    sleep 5
done
exec gunicorn -b :5000 --access-logfile - --error-logfile - flasky:app
"""
HEROKU_PROCFILE = "web: gunicorn flasky:app\nrelease: flask db upgrade\n"


def _hints(project: Path, files: dict[str, str]) -> list[str]:
    return [m["hint"] for m in audit(project, {"app.py": PROD + MIGRATE, **files}).only("FP-R001")]


def test_flaskys_boot_script_command_is_the_release_command(project: Path) -> None:
    assert _hints(project, {"boot.sh": FLASKY_BOOT}) == [
        "set deploy.release_command = \"flask deploy\" in flaskprod.toml's [deploy], the release step the project "
        "already runs (boot.sh:4): each deploy runs it once, before the new release takes requests"
    ]


def test_a_procfiles_release_process_is_the_release_command(project: Path) -> None:
    files = {"Procfile": HEROKU_PROCFILE, "docker/entrypoint.sh": "#!/bin/sh\nflask deploy\nexec gunicorn app:app\n"}
    assert _hints(project, files) == [
        "set deploy.release_command = \"flask db upgrade\" in flaskprod.toml's [deploy], the release step the project "
        "already runs (Procfile:2): each deploy runs it once, before the new release takes requests"
    ]


def test_a_script_that_only_serves_keeps_the_checks_hint(project: Path) -> None:
    boot = "#!/bin/sh\n# flask deploy runs by hand\nexec flask run --host 0.0.0.0\n"
    assert _hints(project, {"boot.sh": boot}) == [REGISTRY["FP-R001"].hint]
