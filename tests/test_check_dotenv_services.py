"""FP-C019 counts a variable as passed to the app only when a Compose service that runs the app gets it: one built
from the project's Dockerfile, running the image such a service builds, or a command that serves the app; not what
only the database's, the cache's or nginx's environment sets (the deployed app still runs without it)."""

from __future__ import annotations

from pathlib import Path

from tests import test_check
from tests.test_check import audit
from tests.test_check_dotenv import APP

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment


def unpassed(project: Path, files: dict[str, str]) -> list[str]:
    """The variables FP-C019 names, by the start of its text."""
    return [m["text"].split(" ", 1)[0] for m in audit(project, {"app.py": APP, **files}).only("FP-C019")]


BUILT = """\
    services:
      app:
        build: .
        image: shop:${TAG}
        environment:
          FLASK_SECRET_KEY: ${FLASK_SECRET_KEY}
          FLASK_ITEMS_PER_PAGE: "20"
      worker:
        image: shop:${TAG}
        command: ["python", "-m", "shop.jobs"]
        environment: [FLASK_MAIL_SERVER=smtp.example.com]
      db:
        image: postgres:${PG_VERSION}
        environment:
          POSTGRES_DB: shop
          POSTGRES_PASSWORD: ${POSTGRES_PASSWORD}
      nginx:
        build: ./nginx
        environment: [NGINX_HOST=shop.example.com]
    """
DOTENV = """\
FLASK_ITEMS_PER_PAGE=50
FLASK_MAIL_SERVER=localhost
TAG=dev
PG_VERSION=16
POSTGRES_DB=shop_dev
POSTGRES_PASSWORD=dev
NGINX_HOST=localhost
"""


def test_what_only_the_database_and_nginx_get_is_not_passed_to_the_app(project: Path) -> None:
    files = {
        "compose.yaml": BUILT,
        ".env": DOTENV,
        "Dockerfile": 'FROM python:3.12-slim\nCMD ["flaskprod", "serve"]\n',
        "nginx/Dockerfile": "FROM nginx:1.27-alpine\nCOPY default.conf /etc/nginx/conf.d/\n",
    }
    # TAG and PG_VERSION are Compose's own (image tags): the app needs neither.
    assert unpassed(project, files) == ["POSTGRES_DB", "POSTGRES_PASSWORD", "NGINX_HOST"]


def test_an_app_from_a_registry_is_found_by_its_command_or_as_not_a_known_image(project: Path) -> None:
    served = """\
        services:
          web:
            image: registry.example.com/team/shop:1.2
            command: gunicorn --bind 0.0.0.0:8000 app:app
            environment: [FLASK_ITEMS_PER_PAGE=20]
          cache:
            image: redis:7
            environment: [REDIS_PASSWORD=dev]
        """
    dotenv = "FLASK_ITEMS_PER_PAGE=50\nREDIS_PASSWORD=dev\n"
    assert unpassed(project, {"compose.yaml": served, ".env": dotenv}) == ["REDIS_PASSWORD"]
    # With nothing that says which service is the app, every one but a known image of something else is.
    image_only = served.replace("            command: gunicorn --bind 0.0.0.0:8000 app:app\n", "")
    assert unpassed(project, {"compose.yaml": image_only, ".env": dotenv}) == ["REDIS_PASSWORD"]
