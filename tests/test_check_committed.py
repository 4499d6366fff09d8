"""`flaskprod check` reports what git tracks that Flask keeps out of the repository: a password, token or key in
an instance-folder file or a dotenv file (FP-S011). Quiet when the files are ignored, outside a git repository, and
without git, with no traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import PROD, audit, write

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

LOADS_INSTANCE = 'app.config.from_pyfile("config.py", silent=True)\n'
PROD_APP = PROD.replace("Flask(__name__)", "Flask(__name__, instance_relative_config=True)").replace(
    "Production(app)", LOADS_INSTANCE + "Production(app)"
)
# Flask's tutorial keeps the production settings in instance/config.py: here with more than the key.
INSTANCE_CONFIG = (
    "import os\n"
    "SECRET_KEY = os.environ['FLASK_SECRET_KEY']\n"
    "SQLALCHEMY_DATABASE_URI = 'postgresql://shop:hunter2-db@db.internal/shop'\n"
    "MAIL_USERNAME = 'shop@example.com'\n"
    "MAIL_PASSWORD = os.environ.get('MAIL_PASSWORD', 'hunter2-mail')\n"
    "STRIPE_API_KEY = os.environ['STRIPE_API_KEY']\n"
    "REDIS_URL = 'redis://cache:6379/0'\n"
)
INSTANCE_HINT = (
    "take it out of the repository: `git rm --cached -r instance/` and add `instance/` to .gitignore; the secret "
    "stays in the repository's history, so change it (a new password, token or key) and keep the new one in the "
    "untracked file or the environment"
)
DOTENV = (
    "FLASK_APP=app\n"
    "FLASK_SECRET_KEY=8f1c2a9d4e7b6a5c3d2e1f0a9b8c7d6e\n"
    "# DATABASE_URL=postgresql://shop:old@db/shop\n"
    'export DATABASE_URL="postgresql://shop:hunter2-db@db.internal/shop"\n'
    "REDIS_URL=redis://:${REDIS_PASSWORD}@cache:6379/0\n"
    "FLASK_SECRET_KEY_FILE=/run/secrets/flask_key\n"
)
WHOEVER = "whoever can read the repository, or its history, has it"


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True, timeout=30)


def found(messages: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    return [(m["obj"], m["text"], m["hint"]) for m in messages]


def committed(root: Path, files: dict[str, str]) -> None:
    write(root, files)
    git(root, "init", "-q")
    git(root, "add", "--all")


def test_secrets_in_a_tracked_instance_file_are_found(project: Path) -> None:
    committed(project, {"app.py": PROD_APP, "instance/config.py": INSTANCE_CONFIG})
    where = "instance/config.py, a file of the instance folder that git tracks"
    assert found(audit(project, {}).only("FP-S011")) == [
        (
            "instance/config.py:3",
            f"SQLALCHEMY_DATABASE_URI has a password written in {where}: {WHOEVER}",
            INSTANCE_HINT,
        ),
        ("instance/config.py:5", f"MAIL_PASSWORD is a string written in {where}: {WHOEVER}", INSTANCE_HINT),
    ]


def test_a_secret_in_a_tracked_json_instance_file_is_found(project: Path) -> None:
    loads_json = PROD_APP.replace(LOADS_INSTANCE, 'import json\napp.config.from_file("config.json", load=json.load)\n')
    config = '{\n  "DEBUG": false,\n  "GITHUB_TOKEN": "ghp_0123456789abcdef",\n  "JWT_TOKEN_LOCATION": "headers"\n}\n'
    committed(project, {"app.py": loads_json, "instance/config.json": config})
    where = "instance/config.json, a file of the instance folder that git tracks"
    assert found(audit(project, {}).only("FP-S011")) == [
        ("instance/config.json:3", f"GITHUB_TOKEN is a string written in {where}: {WHOEVER}", INSTANCE_HINT)
    ]


# FP-S011's hint and place for a tracked .env.
DOTENV_HINT = (
    "take it out of the repository: `git rm --cached .env` and add `.env` to .gitignore (commit a .env.example "
    "with the names alone instead); the secret stays in the repository's history, so change it (a new "
    "password, token or key) and keep the new one in the untracked file or the environment"
)
DOTENV_WHERE = ".env, a dotenv file that git tracks"


def test_a_tracked_dotenv_file_with_secrets_is_found(project: Path) -> None:
    committed(project, {"app.py": PROD_APP, ".env": DOTENV, ".env.example": "FLASK_SECRET_KEY=change-me\n"})
    assert found(audit(project, {}).only("FP-S011")) == [
        (".env:2", f"FLASK_SECRET_KEY is a string written in {DOTENV_WHERE}: {WHOEVER}", DOTENV_HINT),
        (".env:4", f"DATABASE_URL has a password written in {DOTENV_WHERE}: {WHOEVER}", DOTENV_HINT),
    ]


def correct_project(root: Path) -> None:
    write(root, {"app.py": PROD_APP, "instance/config.py": INSTANCE_CONFIG, ".env": DOTENV})


def test_ignored_files_are_quiet(project: Path) -> None:
    correct_project(project)
    write(project, {".gitignore": "instance/\n.env\n", ".env.sample": "DATABASE_URL=postgresql://u:p@db/app\n"})
    git(project, "init", "-q")
    git(project, "add", "--all")
    result = audit(project, {})
    assert {"FP-S011"} & set(result.ids()) == set(), result.messages


def test_no_repository_or_no_git_is_quiet(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    correct_project(project)
    assert {"FP-S011"} & set(audit(project, {}).ids()) == set()
    git(project, "init", "-q")
    git(project, "add", "--all")
    empty = tmp_path_factory.mktemp("no-git-bin")  # git missing from PATH
    monkeypatch.setenv("PATH", str(empty))
    result = audit(project, {})
    assert result.exit_code in (0, 1)
    assert {"FP-S011"} & set(result.ids()) == set(), result.messages


# A random token may hold "xxx" or "todo" by chance; a fill-in word that is the value, or a word of it, is no secret.
CHANCE_DOTENV = (
    "API_TOKEN=Zk3p9QaL2xxxVb7Rt5Yw1Nc8Hd4\n"
    "GITHUB_TOKEN=ghp_" + "q7Zk3p9QaL2ToDoVb7Rt5Yw1Nc8Hd4Xe6Fm0" + "\n"
    "MAIL_PASSWORD=your-mail-password\n"
    "STRIPE_API_KEY=sk_live_xxxxxxxxxxxxxxxxxxxxxxxx\n"
    "SENTRY_TOKEN=todo\n"
    "DATABASE_URL=postgresql://shop:changeme@db.internal/shop\n"
    "AWS_ACCESS_KEY=AKIAIOSFODNN7EXAMPLE\n"
)


def test_a_fill_in_word_by_chance_in_a_tracked_dotenv_token_is_found(project: Path) -> None:
    committed(project, {"app.py": PROD_APP, ".env": CHANCE_DOTENV})
    assert found(audit(project, {}).only("FP-S011")) == [
        (".env:1", f"API_TOKEN is a string written in {DOTENV_WHERE}: {WHOEVER}", DOTENV_HINT),
        (".env:2", f"GITHUB_TOKEN is a string written in {DOTENV_WHERE}: {WHOEVER}", DOTENV_HINT),
    ]
