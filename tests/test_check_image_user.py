"""`flaskprod check` knows which base images run as root (FP-P022) from what their makers publish, not from the
registry's name alone: Docker Hardened Images' runtime variants run as nonroot, their -dev (build-time) ones as root;
Chainguard's wolfi-base and chainguard-base run as root, its python:latest-dev as nonroot (run-as 65532);
distroless's :debug as root, :debug-nonroot as nonroot; Red Hat's UBI Python as 1001; bitnami/python and python:*
as root."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check_audit2_images import found

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

STEPS = "WORKDIR /app\nCOPY . .\n"
GUNICORN = 'CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app:app"]\n'

RUNS_AS_A_USER = [
    "dhi.io/python:3.13",
    "dhi.io/python:3.13-debian13",
    "dhi.io/python:3-alpine3.22@sha256:" + "0" * 64,
    "cgr.dev/chainguard/python:latest",
    "cgr.dev/chainguard/python:latest-dev",
    "gcr.io/distroless/python3-debian12:nonroot",
    "gcr.io/distroless/python3-debian12:debug-nonroot",
    "registry.access.redhat.com/ubi9/python-311",
    "registry.access.redhat.com/ubi8/python-39:latest",
]
RUNS_AS_ROOT = [
    "dhi.io/python:3.13-dev",
    "dhi.io/python:3-dev",
    "dhi.io/python:3.14.5-debian13-dev@sha256:" + "0" * 64,
    "dhi.io/python:3-alpine-dev",
    "cgr.dev/chainguard/wolfi-base",
    "cgr.dev/chainguard/wolfi-base:latest",
    "cgr.dev/chainguard/chainguard-base:latest",
    "gcr.io/distroless/python3-debian12:debug",
    "registry.access.redhat.com/ubi9/ubi-minimal",
    "bitnami/python:3.11",
    "python:3.13-slim",
]


@pytest.mark.parametrize("base", RUNS_AS_A_USER)
def test_a_base_that_runs_as_a_user_is_no_finding(project: Path, base: str) -> None:
    assert found({"Dockerfile": f"FROM {base}\n" + STEPS + GUNICORN}, "FP-P022") == []


@pytest.mark.parametrize("base", RUNS_AS_ROOT)
def test_a_base_that_runs_as_root_is_found(project: Path, base: str) -> None:
    assert found({"Dockerfile": f"FROM {base}\n" + STEPS + GUNICORN}, "FP-P022") == ["Dockerfile:4"]


def test_a_root_dev_stage_built_on_carries_root_over(project: Path) -> None:
    # The build stage on dhi.io/python:3.13-dev is root; a last stage FROM it is too, while one on the runtime
    # variant is not.
    build = "FROM dhi.io/python:3.13-dev AS build\nRUN pip wheel .\n"
    assert found({"Dockerfile": build + "FROM build\n" + GUNICORN}, "FP-P022") == ["Dockerfile:4"]
    runtime = build + "FROM dhi.io/python:3.13\nCOPY --from=build /app /app\n" + GUNICORN
    assert found({"Dockerfile": runtime}, "FP-P022") == []
