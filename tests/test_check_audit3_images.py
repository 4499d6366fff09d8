"""`flaskprod check` knows the base images that already run as a non-root user (FP-P022): distroless's :nonroot,
Chainguard's, Red Hat's UBI Python; a USER root of the Dockerfile's own over them is still found."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import test_check
from tests.test_check_audit2_images import found

project = test_check.project  # the fixture: tmp_path as the current directory, a clean environment

STEPS = "WORKDIR /app\nCOPY . .\n"
GUNICORN = 'CMD ["gunicorn", "--bind", "0.0.0.0:8000", "app:app"]\n'


@pytest.mark.parametrize(
    ("dockerfile", "where"),
    [
        ("FROM gcr.io/distroless/python3-debian12:nonroot\n" + STEPS + GUNICORN, []),
        ("FROM gcr.io/distroless/python3-debian12:debug-nonroot\n" + STEPS + GUNICORN, []),
        ("FROM cgr.dev/chainguard/python:latest\n" + STEPS + GUNICORN, []),
        ("FROM registry.access.redhat.com/ubi9/python-311\n" + STEPS + GUNICORN, []),
        # Built on in a later stage, the base's user carries over, as a USER would.
        ("FROM python:3.12-slim AS build\nRUN pip wheel .\nFROM cgr.dev/chainguard/python:latest-dev AS app\n"
         + STEPS + "FROM app\n" + GUNICORN, []),
        # distroless's default tag runs as root; a USER root over a non-root base is root again.
        ("FROM gcr.io/distroless/python3-debian12\n" + STEPS + GUNICORN, ["Dockerfile:4"]),
        ("FROM cgr.dev/chainguard/python:latest-dev\nUSER root\n" + STEPS + GUNICORN, ["Dockerfile:5"]),
    ],
    ids=["distroless-nonroot", "distroless-debug-nonroot", "chainguard", "ubi", "chainguard-stage",
         "distroless-root", "user-root-over-nonroot"],
)
def test_a_base_image_that_runs_as_a_user_is_no_finding(project: Path, dockerfile: str, where: list[str]) -> None:
    assert found({"Dockerfile": dockerfile}, "FP-P022") == where
