"""`flaskprod check` reads proxy.trusted_hops where the deployment sets it for the app (FLASKPROD_PROXY__TRUSTED_HOPS
in Compose's environment, a Dockerfile's ENV, Kubernetes env, a systemd unit), not only in check's own environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import audit

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

# A project done right: Production(app), nginx in front, and the hops set for the app's service in compose.yaml.
NOTES = {
    "notes/__init__.py": """
        import os

        from flask import Flask, jsonify

        from flaskprod import Production


        def create_app():
            app = Flask(__name__)
            app.config["SECRET_KEY"] = os.environ.get("FLASK_SECRET_KEY")
            Production(app)

            @app.route("/")
            def index():
                return jsonify(ok=True)

            return app
    """,
    "wsgi.py": "from notes import create_app\n\napp = create_app()\n",
    "Dockerfile": "FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nRUN useradd appuser\nUSER appuser\n"
    "HEALTHCHECK CMD python -m flaskprod.servers.healthcheck\n"
    'CMD ["flaskprod", "serve", "wsgi:app", "--bind", "0.0.0.0:8000"]\n',
    "nginx/nginx.conf": """
        server {
            listen 80;
            location / {
                proxy_pass http://web:8000;
                proxy_set_header Host $host;
                proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
                proxy_set_header X-Forwarded-Proto $scheme;
            }
        }
    """,
}
HOPS_1 = "FLASKPROD_PROXY__TRUSTED_HOPS=1"
COMPOSE = """
    services:
      web:
        build: .
        environment:
          FLASK_SECRET_KEY: ${{FLASK_SECRET_KEY:?set FLASK_SECRET_KEY}}
          {hops}
      nginx:
        image: nginx:1.27-alpine
        ports:
          - "80:80"
        volumes:
          - ./nginx/nginx.conf:/etc/nginx/conf.d/default.conf:ro
"""


@pytest.mark.parametrize(
    "files",
    [
        {"compose.yaml": COMPOSE.format(hops='FLASKPROD_PROXY__TRUSTED_HOPS: "1"')},
        {"docker-compose.yml": "services:\n  web:\n    environment:\n      - FLASKPROD_PROXY__TRUSTED_HOPS=1\n"},
        {"Dockerfile": NOTES["Dockerfile"].replace("USER appuser", "USER appuser\nENV " + HOPS_1)},
        {"k8s/deployment.yaml": "spec:\n  containers:\n    - env:\n        - name: FLASKPROD_PROXY__TRUSTED_HOPS\n"
         '          value: "1"\n'},
        {"deploy/notes.service": "[Service]\nEnvironment=FLASKPROD_PROXY__TRUSTED_HOPS=1\nExecStart=flaskprod serve\n"},
    ],
    ids=["compose-map", "compose-list", "dockerfile-env", "kubernetes", "systemd"],
)
def test_trusted_hops_set_where_the_app_is_deployed_count(project: Path, files: dict[str, str]) -> None:
    result = audit(project, {**NOTES, **files}, "wsgi:app")
    assert result.messages == [], result.messages


def test_nginx_without_trusted_hops_anywhere_is_still_found(project: Path) -> None:
    files = {**NOTES, "compose.yaml": COMPOSE.format(hops="FLASKPROD_LOGGING__LEVEL: info")}
    assert [m["obj"] for m in audit(project, files, "wsgi:app").only("FP-C005")] == ["nginx/nginx.conf:4"]
    # 0 trusts no header: the same as unset.
    zero = {**files, "compose.yaml": COMPOSE.format(hops='FLASKPROD_PROXY__TRUSTED_HOPS: "0"')}
    assert [m["obj"] for m in audit(project, zero, "wsgi:app").only("FP-C005")] == ["nginx/nginx.conf:4"]


def test_more_hops_deployed_than_proxies_in_front_are_found_where_they_are_set(project: Path) -> None:
    files = {**NOTES, "compose.yaml": COMPOSE.format(hops='FLASKPROD_PROXY__TRUSTED_HOPS: "3"')}
    result = audit(project, files, "wsgi:app")
    assert [(m["id"], m["obj"], m["text"]) for m in result.messages] == [
        (
            "FP-C016",
            "compose.yaml:6",
            "FLASKPROD_PROXY__TRUSTED_HOPS=3 sets proxy.trusted_hops where this file deploys the app, but 1 proxy is "
            "in front of the app, nginx (nginx/nginx.conf:4): a client sends its own X-Forwarded-For, nginx passes "
            "it on, and the app takes the address the client wrote for the client's; `flaskprod build` and `up` "
            "refuse it",
        )
    ]
