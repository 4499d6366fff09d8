"""`flaskprod up` refuses an endpoint under a static URL of the app, where nginx would answer it from disk."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_up_errors import run_up
from tests.upstack import processes_under, start_up, stop, write_app

pytestmark = pytest.mark.integration

REFUSAL = (
    "monitoring.ready_path /static/ready is under /static/, where nginx serves the app's static files from disk, so "
    "it never reaches the app; set monitoring.ready_path to a path outside it, such as /readyz"
)


def test_a_readiness_path_under_the_static_url_is_refused_at_start(tmp_path: Path) -> None:
    # nginx answered up's own readiness wait with the static folder's 404 until proxy.ready_timeout ran out.
    write_app(tmp_path)
    result = run_up(
        tmp_path, "gunicorn", str(free_port()), "--workers", "1",
        "--set", "monitoring.ready_path=/static/ready", "--set", "proxy.ready_timeout=8",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == f"Error: {REFUSAL}"
    assert processes_under(tmp_path) == {}
    assert not list((tmp_path / ".flaskprod/run/releases").glob("*/"))  # refused before the project was copied


def test_sighup_onto_a_readiness_path_under_the_static_url_reloads_nothing(tmp_path: Path) -> None:
    write_app(tmp_path)
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.ready_timeout=8")
    try:
        stack.wait_ready()
        (tmp_path / "flaskprod.toml").write_text('[monitoring]\nready_path = "/static/ready"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        refused = f"nginx and the app server not reloaded, the running config stays: {REFUSAL}"
        wait_for(lambda: refused in stack.stderr(), timeout=20, what="the refusal")
        assert stack.get("/readyz").status_code == 200
        assert stack.get("/static/css/plain.css").status_code == 200
    finally:
        stop(stack)
