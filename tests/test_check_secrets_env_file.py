"""`flaskprod check` reads the env files a Compose file's env_file: names, whatever their name (config/prod.env), for
the secrets it finds in a tracked .env (FP-S011): when git tracks them. Quiet when the file is ignored."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import PROD, audit
from tests.test_check_committed import committed, found

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

COMPOSE = """\
services:
  web:
    build: .
    env_file:
      - config/prod.env
      - path: config/extra.env
        required: false
"""
PROD_ENV = (
    "FLASK_APP=app\n"
    "DATABASE_URL=postgresql://shop:hunter2-db@db.internal/shop\n"
    "MAIL_USERNAME=shop@example.com\n"
    "MAIL_PASSWORD=m4il-Pa55\n"
    "STRIPE_API_KEY=${STRIPE_API_KEY}\n"
)
WHERE = "config/prod.env, an env file the deployment reads (env_file:, EnvironmentFile=) that git tracks"
WHOEVER = "whoever can read the repository, or its history, has it"
HINT = (
    "take it out of the repository: `git rm --cached config/prod.env` and add `config/prod.env` to .gitignore; the "
    "secret stays in the repository's history, so change it (a new password, token or key) and keep the new one in "
    "the untracked file or the environment"
)


def test_a_tracked_env_file_compose_names_is_read_for_secrets(project: Path) -> None:
    committed(project, {"app.py": PROD, "compose.yaml": COMPOSE, "config/prod.env": PROD_ENV})
    assert found(audit(project, {}).only("FP-S011")) == [
        ("config/prod.env:2", f"DATABASE_URL has a password written in {WHERE}: {WHOEVER}", HINT),
        ("config/prod.env:4", f"MAIL_PASSWORD is a string written in {WHERE}: {WHOEVER}", HINT),
    ]


def test_an_ignored_env_file_compose_names_is_quiet(project: Path) -> None:
    files = {"app.py": PROD, "compose.yaml": COMPOSE, "config/prod.env": PROD_ENV, ".gitignore": "config/*.env\n"}
    committed(project, files)
    assert audit(project, {}).only("FP-S011") == []


def test_placeholders_in_a_tracked_env_file_are_quiet(project: Path) -> None:
    placeholders = (
        "MAIL_PASSWORD=changeme\n"
        "API_TOKEN=<your-api-token>\n"
        "DATABASE_URL=postgresql://app:${DB_PASSWORD}@db/app\n"
        "REDIS_PASSWORD=\n"
        "GITHUB_TOKEN=xxxxxxxxxxxxxxxx\n"
    )
    committed(project, {"app.py": PROD, "compose.yaml": COMPOSE, "config/prod.env": placeholders, ".env": placeholders})
    assert audit(project, {}).only("FP-S011") == []
