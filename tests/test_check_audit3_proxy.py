"""`flaskprod check` names a proxy.trusted_hops set both in its own environment and in a deployment file once
(FP-C016), at the file's line."""

from __future__ import annotations

from pathlib import Path

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
