"""FP-C019 counts a file Compose's env_file: names as passed to the app only when a service that runs the app reads
it, as it counts environment:: a variable only the database's (or the cache's) env_file sets still reaches no app."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check_dotenv_services import unpassed

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

COMPOSE = """\
services:
  app:
    build: .
    env_file: [config/app.env]
  worker:
    image: shop
    command: celery -A shop.jobs worker
    env_file:
      - path: config/worker.env
        required: false
  db:
    image: postgres:16
    env_file: config/db.env
  cache:
    image: redis:7
    env_file: [config/cache.env, config/shared.env]
  debugger:
    build: .
    profiles: [debug]
    env_file: config/debug.env
"""
FILES = {
    "compose.yaml": COMPOSE,
    "Dockerfile": 'FROM python:3.12-slim\nCMD ["flaskprod", "serve"]\n',
    "config/app.env": "FLASK_ITEMS_PER_PAGE=20\n",
    "config/worker.env": "FLASK_MAIL_SERVER=smtp.example.com\n",
    "config/db.env": "POSTGRES_PASSWORD=s3cret\nFLASK_DATABASE_URL=postgresql://shop:s3cret@db/shop\n",
    "config/cache.env": "REDIS_PASSWORD=s3cret\n",
    "config/shared.env": "FLASK_UPLOAD_DIR=uploads\n",
    "config/debug.env": "FLASK_DEBUG_TOOLBAR=1\n",
}
DOTENV = """\
FLASK_ITEMS_PER_PAGE=50
FLASK_MAIL_SERVER=localhost
FLASK_DATABASE_URL=postgresql://dev:dev@localhost/shop
POSTGRES_PASSWORD=dev
REDIS_PASSWORD=dev
FLASK_UPLOAD_DIR=/tmp/uploads
FLASK_DEBUG_TOOLBAR=1
"""


def test_what_only_another_services_env_file_sets_is_not_passed_to_the_app(project: Path) -> None:
    # The app's and the worker's env_file reach the app; the db's, the cache's and a debug profile's do not.
    expected = ["FLASK_DATABASE_URL", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLASK_UPLOAD_DIR", "FLASK_DEBUG_TOOLBAR"]
    assert unpassed(project, {**FILES, ".env": DOTENV}) == expected


def test_a_file_the_app_and_the_database_both_read_is_passed(project: Path) -> None:
    shared = COMPOSE.replace("env_file: [config/app.env]", "env_file: [config/app.env, config/db.env]")
    dotenv = "FLASK_DATABASE_URL=postgresql://dev:dev@localhost/shop\nPOSTGRES_PASSWORD=dev\n"
    assert unpassed(project, {**FILES, "compose.yaml": shared, ".env": dotenv}) == []
