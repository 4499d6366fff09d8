"""FP-S013 beyond the Python code: a password in a tracked alembic.ini's sqlalchemy.url, and passwords written in a
tracked Compose file's environment: (list and map form). References (${DB_PASSWORD}), placeholders, a URL to
localhost, development files and profiles stay quiet, and a secret key stays FP-S009's."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import PROD, audit, write
from tests.test_check_committed import committed, found, git

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

WHOEVER = "whoever can read the repository, or its history, has it"
ALEMBIC = """\
[alembic]
script_location = migrations
sqlalchemy.url = postgresql://u:pw@db/app
"""
ALEMBIC_HINT = (
    'leave sqlalchemy.url out of alembic.ini and set it in migrations\' env.py from the environment, '
    'config.set_main_option("sqlalchemy.url", os.environ["DATABASE_URL"]) (Flask-Migrate\'s env.py takes the '
    "app's own), then change the password: the old one stays in the repository's history"
)
COMPOSE = """\
services:
  app:
    build: .
    environment:
      - DATABASE_URL=postgresql://app:s3cret@db/app
      - FLASK_SECRET_KEY=${FLASK_SECRET_KEY}
      - REDIS_URL=redis://:${REDIS_PASSWORD}@cache:6379/0
      - MAIL_PASSWORD
  db:
    image: postgres:16
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: s3cret
      POSTGRES_PASSWORD_FILE: /run/secrets/db
  worker:
    image: app
    environment:
      API_TOKEN: "${API_TOKEN:?set API_TOKEN}"
      MAIL_PASSWORD: changeme
      LOCAL_URL: postgresql://dev:devpass@localhost/app
  debugger:
    image: app
    profiles: [dev]
    environment:
      MAIL_PASSWORD: m4il-Pa55
"""


def compose_hint(name: str) -> str:
    return (
        f"pass it in from where Compose runs: {name}: ${{{name}}} (from the shell, or a .env git does not track), a "
        "reference inside a URL (postgresql://app:${DB_PASSWORD}@db/app), or a Compose secret read through a *_FILE "
        "variable; then change the secret: the old one stays in the repository's history"
    )


def test_a_password_in_a_tracked_alembic_ini_is_found(project: Path) -> None:
    committed(project, {"app.py": PROD, "alembic.ini": ALEMBIC})
    messages = audit(project, {}).only("FP-S013")
    assert found(messages) == [
        ("alembic.ini:3", f"sqlalchemy.url has a password written in alembic.ini, which git tracks: {WHOEVER}",
         ALEMBIC_HINT),
    ]
    assert "pw@" not in str(messages)


def test_alembic_placeholders_and_untracked_files_are_quiet(project: Path) -> None:
    template = "[alembic]\nsqlalchemy.url = driver://user:pass@localhost/dbname\n"
    interpolated = "[alembic]\nsqlalchemy.url = postgresql://app:%(DB_PASSWORD)s@db/app\n"
    committed(project, {"app.py": PROD, "alembic.ini": template, "migrations/alembic.ini": interpolated})
    write(project, {"ops/alembic.ini": ALEMBIC})  # written, never added
    assert audit(project, {}).only("FP-S013") == []


def test_passwords_in_a_tracked_compose_files_environment_are_found(project: Path) -> None:
    committed(project, {"app.py": PROD, "compose.yaml": COMPOSE, "docker-compose.yml": COMPOSE})
    messages = audit(project, {}).only("FP-S013")
    expected = []
    for file in ("compose.yaml", "docker-compose.yml"):
        expected += [
            (f"{file}:5", f"DATABASE_URL has a password written in {file}, which git tracks: {WHOEVER}",
             compose_hint("DATABASE_URL")),
            (f"{file}:13", f"POSTGRES_PASSWORD is a string written in {file}, which git tracks: {WHOEVER}",
             compose_hint("POSTGRES_PASSWORD")),
        ]
    assert sorted(found(messages)) == sorted(expected)
    assert "s3cret" not in str(messages) and "m4il-Pa55" not in str(messages)


def test_a_compose_secret_key_stays_fp_s009s_and_development_files_are_quiet(project: Path) -> None:
    keyed = "services:\n  app:\n    environment:\n      FLASK_SECRET_KEY: 9f8e7d6c5b4a39281706f5e4d3c2b1a0\n"
    committed(
        project,
        {
            "app.py": PROD,
            "compose.yaml": keyed,
            "docker-compose.override.yml": COMPOSE,
            "compose.dev.yaml": COMPOSE,
            "docs/compose.yaml": COMPOSE,
            ".gitlab-ci.yml": "services:\n  ci:\n    environment:\n      POSTGRES_PASSWORD: s3cret\n",
        },
    )
    result = audit(project, {})
    assert result.only("FP-S013") == []
    assert [m["obj"] for m in result.only("FP-S009")] == ["compose.yaml:4"]


def test_an_untracked_compose_file_is_quiet(project: Path) -> None:
    committed(project, {"app.py": PROD})
    write(project, {"compose.yaml": COMPOSE})
    git(project, "status")  # a repository, with compose.yaml untracked
    assert audit(project, {}).only("FP-S013") == []
