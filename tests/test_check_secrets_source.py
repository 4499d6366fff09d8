"""`flaskprod check` reports a password, token or key written in the project's code that git tracks (FP-S013): a
config module's database URL with a password, MAIL_PASSWORD, AWS_SECRET_ACCESS_KEY, app.config["API_TOKEN"], a
GitHub or Stripe token by its shape. Placeholders, environment lookups, a localhost development database,
development config classes, docs and tests stay quiet, and so does a project outside git."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import PROD, audit, write
from tests.test_check_committed import committed, found, git

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# Made up here, so this file holds no token of the shapes it tests.
GITHUB_TOKEN = "ghp_" + "a1B2c3D4e5F6" * 3
STRIPE_KEY = "sk_" + "live_" + "51Hx" * 6
APP = PROD.replace("Production(app)", 'app.config.from_object("config.ProductionConfig")\nProduction(app)')
CONFIG = f"""\
import os

class Config:
    SQLALCHEMY_DATABASE_URI = "postgresql://app:s3cretpw@db/app"
    MAIL_PASSWORD = "m4il-Pa55"
    AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI7MDENGbPxRfiCYz9a8b7c6d5")
    STRIPE = "{STRIPE_KEY}"

class ProductionConfig(Config):
    DEBUG = False

class DevelopmentConfig(Config):
    DEBUG = True
    SQLALCHEMY_DATABASE_URI = "postgresql://dev:devpass@db/dev"
"""
VIEWS = f"""\
from github import Github, Token

from app import app

app.config["API_TOKEN"] = "tk-9f8e7d6c5b4a"
client = Github(auth=Token("{GITHUB_TOKEN}"))
"""
WHOEVER = "whoever can read the repository, or its history, has it"


def hint(name: str) -> str:
    return (
        f'read it from the environment (os.environ["{name}"], failing when it is missing) or from a file kept out of '
        "the repository (the instance folder), then change the secret: the old one stays in the repository's history"
    )


def test_secrets_written_in_tracked_source_are_found_without_their_values(project: Path) -> None:
    committed(project, {"app.py": APP, "config.py": CONFIG, "views.py": VIEWS})
    messages = audit(project, {}).only("FP-S013")
    assert found(messages) == [
        (
            "config.py:4",
            f"SQLALCHEMY_DATABASE_URI has a password written in config.py, which git tracks: {WHOEVER}",
            hint("SQLALCHEMY_DATABASE_URI"),
        ),
        ("config.py:5", f"MAIL_PASSWORD is a string written in config.py, which git tracks: {WHOEVER}", hint(
            "MAIL_PASSWORD"
        )),
        (
            "config.py:6",
            f"AWS_SECRET_ACCESS_KEY is a string written in config.py, which git tracks: {WHOEVER}",
            hint("AWS_SECRET_ACCESS_KEY"),
        ),
        ("config.py:7", f"STRIPE is a Stripe live key written in config.py, which git tracks: {WHOEVER}", hint(
            "STRIPE"
        )),
        ("views.py:5", f"API_TOKEN is a string written in views.py, which git tracks: {WHOEVER}", hint("API_TOKEN")),
        ("views.py:6", f"A GitHub token is written in views.py, which git tracks: {WHOEVER}", hint("NAME")),
    ]
    shown = str(messages)
    for secret in ("s3cretpw", "m4il-Pa55", "wJalrXUtnFEMI", STRIPE_KEY, "tk-9f8e7d6c5b4a", GITHUB_TOKEN):
        assert secret not in shown


# Each line is what real projects write where no secret is: stays quiet.
PLACEHOLDERS = """\
import os

SQLALCHEMY_DATABASE_URI = os.environ["DATABASE_URL"]
DEV_DATABASE_URL = "postgresql://postgres:postgres@localhost:5432/app"
LOCAL_REDIS = "redis://:devpass@127.0.0.1:6379/0"
MAIL_PASSWORD = os.environ.get("MAIL_PASSWORD")
MAIL_PASSWORD_FALLBACK = os.environ.get("MAIL_PASSWORD", "")
API_TOKEN = "changeme"
STRIPE_API_KEY = "<your-stripe-key>"
GITHUB_TOKEN = "${GITHUB_TOKEN}"
SLACK_TOKEN = "xxxxxxxxxxxx"
DB_PASSWORD = "{{ db_password }}"
AUTH_TOKEN_URL = "https://auth.example.com/token"
PASSWORD_RESET_SALT_FIELD = "reset"
SECURITY_PASSWORD_HASH = "argon2"
JWT_TOKEN_LOCATION = "headers"
TEMPLATE_URI = "postgresql://user:%(password)s@db/app"
LABELS = {"password": "Your password", "token": "Token"}
AWS_EXAMPLE = "AKIAIOSFODNN7EXAMPLE"
STRIPE_TEST = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


class Kind:
    PASSWORD = "password"
    TOKEN = "token"
"""


def test_placeholders_lookups_and_local_development_databases_are_quiet(project: Path) -> None:
    committed(project, {"app.py": PROD, "settings.py": PLACEHOLDERS})
    assert audit(project, {}).only("FP-S013") == []


def test_development_config_docs_tests_and_untracked_files_are_quiet(project: Path) -> None:
    leaky = 'MAIL_PASSWORD = "m4il-Pa55"\n'
    committed(
        project,
        {
            "app.py": PROD,
            "config/dev.py": "DEBUG = True\n" + leaky,
            "docs/conf.py": leaky,
            "examples/demo.py": leaky,
            "tests/test_mail.py": leaky,
            "instance/config.py": leaky,  # FP-S011's
        },
    )
    write(project, {"local_config.py": leaky, "secrets_here.py": leaky, ".gitignore": "secrets_here.py\n"})
    git(project, "add", "--all")  # secrets_here.py is ignored, so untracked
    result = audit(project, {})
    assert result.only("FP-S013") == []
    assert [m["obj"] for m in result.only("FP-S011")] == ["instance/config.py:1"]


def test_a_project_outside_git_is_quiet(project: Path) -> None:
    assert audit(project, {"app.py": APP, "config.py": CONFIG, "views.py": VIEWS}).only("FP-S013") == []
