"""SIGHUP's log says what was reloaded: nginx only when its config changed (else the serving link moved alone)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from flaskprod.stack.deploy import nginx_workers
from tests.support import free_port, wait_for
from tests.upstack import UpStack, start_up, stop, write_app

pytestmark = pytest.mark.integration


def hup(stack: UpStack, times: int) -> list[str]:
    """SIGHUP up and wait for its reload's end (the times-th); up's lines about reloading since the last."""
    os.kill(stack.proc.pid, signal.SIGHUP)
    wait_for(lambda: stack.stderr().count("app server of release 1 reloaded") == times, timeout=60, what="reload")
    lines = [line for line in stack.stderr().splitlines() if "reload" in line]
    start = max(i for i, line in enumerate(lines) if "reloading" in line)
    return lines[start:]


def test_sighup_says_whether_nginx_was_reloaded(tmp_path: Path) -> None:
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        master = int((stack.run_dir / "nginx.pid").read_text())
        workers = nginx_workers(master)

        unchanged = hup(stack, 1)  # nginx.conf is the same: the serving link moved to the new app server alone
        assert nginx_workers(master) == workers
        assert not [line for line in unchanged if "reloading nginx" in line], unchanged
        assert "reloading the app server, and nginx if its config changed" in unchanged[0], unchanged
        assert "; nginx not reloaded: its config is unchanged" in unchanged[-1], unchanged

        config.write_text('[proxy]\nmax_body_size = "2M"\n')  # nginx's client_max_body_size with it
        changed = hup(stack, 2)
        assert not nginx_workers(master) & workers  # its old workers are gone once the reload is done
        assert "; nginx reloaded onto its changed config" in changed[-1], changed
    finally:
        stop(stack)
