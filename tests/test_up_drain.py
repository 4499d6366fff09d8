"""`flaskprod up` on SIGTERM with a drain delay: readiness answers 503 first while requests are still served."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.upstack import processes_under, start_up, stop, write_app

pytestmark = pytest.mark.integration

DRAIN_DELAY = 2


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_readiness_fails_before_anything_stops(tmp_path: Path, kind: str) -> None:
    write_app(tmp_path)
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", f"server.drain_delay={DRAIN_DELAY}")
    try:
        stack.wait_ready()
        assert stack.get("/readyz").status_code == 200
        signalled = time.monotonic()
        os.kill(stack.proc.pid, signal.SIGTERM)
        wait_for(lambda: stack.get("/readyz").status_code == 503, timeout=DRAIN_DELAY, what="readiness 503")
        # Draining, not stopped: the app still answers everything else through nginx.
        assert stack.get("/api/ping").status_code == 200
        assert stack.get("/readyz").json()["status"] == "draining"
        assert stack.proc.wait(30) == 0, stack.output()
        assert time.monotonic() - signalled >= DRAIN_DELAY
        assert processes_under(tmp_path) == {}
        assert not (stack.run_dir / "draining").exists()
    finally:
        stop(stack)
