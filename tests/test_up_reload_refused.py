"""SIGHUP with a flaskprod.toml that cannot apply reloads nothing: neither nginx nor the app server, said once."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.support import BIN, free_port, wait_for
from tests.upstack import start_up, stop, up_env, write_app

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[server]\nthreads = 0\n", "invalid value 0 for server.threads: expected integer >= 1"),
        ("[server\nthreads = 2\n", "not valid TOML"),
    ],
    ids=["invalid-value", "invalid-toml"],
)
def test_sighup_with_an_invalid_config_reloads_nothing(tmp_path: Path, text: str, error: str) -> None:
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text("[server]\nthreads = 2\n")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        pids = stack.worker_pids(4)
        config.write_text(text)
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(
            lambda: "reloading the app server, and nginx if its config changed" in stack.stderr(),
            timeout=20,
            what="the reload",
        )
        # The main loop takes a request once the SIGHUP is handled: a rollback with nothing to return to is the
        # barrier after which a reload of the app server would have been logged.
        # The project's file cannot be read: the client is given one that only its run dir comes from.
        (tmp_path / "client.toml").write_text("")
        barrier = subprocess.run([str(BIN / "flaskprod"), "rollback", "--config", "client.toml"], cwd=tmp_path,
                                 env=up_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
        assert barrier.returncode == 1, barrier.stderr
        lines = [line for line in stack.stderr().splitlines() if "reload" in line]
        assert not [line for line in lines if "app server of release 1" in line], lines
        refusals = [line for line in lines if "not reloaded" in line]
        assert len(refusals) == 1 and error in refusals[0], lines
        assert "nginx and the app server not reloaded, the running config stays: " in refusals[0]
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == ["app-1.sock"]
        assert stack.worker_pids(4) == pids
        assert stack.get("/api/ping").status_code == 200
    finally:
        stop(stack)
