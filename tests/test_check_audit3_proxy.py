"""`flaskprod check` names a proxy.trusted_hops set both in its own environment and in a deployment file once
(FP-C016), at the file's line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check import audit
from tests.test_check_audit2_proxy import COMPOSE, NOTES

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

BEHIND = (
    "but 1 proxy is in front of the app, nginx (nginx/nginx.conf:4): a client sends its own X-Forwarded-For, nginx "
    "passes it on, and the app takes the address the client wrote for the client's; `flaskprod build` and `up` "
    "refuse it"
)


def test_hops_set_here_and_in_the_deployment_are_one_finding_at_the_files_line(project: Path) -> None:
    files = {**NOTES, "compose.yaml": COMPOSE.format(hops='FLASKPROD_PROXY__TRUSTED_HOPS: "3"')}
    result = audit(project, files, "wsgi:app", env={"FLASKPROD_PROXY__TRUSTED_HOPS": "3"})
    assert [(m["obj"], m["text"]) for m in result.only("FP-C016")] == [
        (
            "compose.yaml:6",
            "FLASKPROD_PROXY__TRUSTED_HOPS=3 sets proxy.trusted_hops where this file deploys the app, as "
            f"FLASKPROD_PROXY__TRUSTED_HOPS=3 does in the environment check runs in, {BEHIND}",
        )
    ]


def test_different_hops_here_and_in_the_deployment_are_each_named(project: Path) -> None:
    files = {**NOTES, "compose.yaml": COMPOSE.format(hops='FLASKPROD_PROXY__TRUSTED_HOPS: "3"')}
    result = audit(project, files, "wsgi:app", env={"FLASKPROD_PROXY__TRUSTED_HOPS": "2"})
    assert [(m["obj"], m["text"]) for m in result.only("FP-C016")] == [
        (
            "compose.yaml:6",
            f"FLASKPROD_PROXY__TRUSTED_HOPS=3 sets proxy.trusted_hops where this file deploys the app, {BEHIND}",
        ),
        ("wsgi:app", f"proxy.trusted_hops = 2, {BEHIND}"),
    ]


@pytest.mark.parametrize(
    "files",
    [
        # spec.py reads the section and name in any case: so does check.
        {"compose.yaml": COMPOSE.format(hops='FLASKPROD_proxy__trusted_hops: "1"')},
        {"deploy/notes.service": "[Service]\nEnvironment=FLASKPROD_Proxy__Trusted_Hops=1\nExecStart=flaskprod serve\n"},
        # Compose's env_file:, a name or a list of them (or of {path: ...}), relative to the Compose file.
        {"compose.yaml": COMPOSE.format(hops="FLASKPROD_LOGGING__LEVEL: info").replace(
            "build: .", "build: .\n        env_file: deploy/web.env"), "deploy/web.env": "# the web service\n"
         "export FLASKPROD_PROXY__TRUSTED_HOPS=1\n"},
        {"compose.yaml": COMPOSE.format(hops="FLASKPROD_LOGGING__LEVEL: info").replace(
            "build: .", "build: .\n        env_file:\n          - path: ./.env\n            required: false"),
         ".env": 'FLASKPROD_PROXY__TRUSTED_HOPS="1"\n'},
        # systemd's EnvironmentFile= names the file where the server has it: its tail is the project's.
        {"deploy/notes.service": "[Service]\nEnvironmentFile=-/srv/notes/current/deploy/notes.env\n"
         "ExecStart=flaskprod serve\n", "deploy/notes.env": "FLASKPROD_PROXY__TRUSTED_HOPS=1\n"},
    ],
    ids=["compose-any-case", "systemd-any-case", "compose-env-file", "compose-env-file-path", "systemd-env-file"],
)
def test_trusted_hops_the_deployment_gives_the_app_count(project: Path, files: dict[str, str]) -> None:
    result = audit(project, {**NOTES, **files}, "wsgi:app")
    assert result.messages == [], result.messages


def test_more_hops_in_an_env_file_are_found_at_its_line(project: Path) -> None:
    compose = COMPOSE.format(hops="FLASKPROD_LOGGING__LEVEL: info")
    compose = compose.replace("build: .", "build: .\n        env_file: .env")
    env = "FLASKPROD_LOGGING__LEVEL=info\nFLASKPROD_PROXY__TRUSTED_HOPS=2\n"
    files = {**NOTES, "compose.yaml": compose, ".env": env}
    assert [m["obj"] for m in audit(project, files, "wsgi:app").only("FP-C016")] == [".env:2"]
    # The same file given to a service only the dev profile starts is no deployment's.
    dev = compose.replace("env_file: .env", "env_file: .env\n        profiles: [dev]")
    assert audit(project, {**files, "compose.yaml": dev}, "wsgi:app").only("FP-C016") == []
