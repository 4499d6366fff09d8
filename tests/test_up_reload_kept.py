"""A SIGHUP whose new app server does not get ready changes nothing: nginx, its config, the config copy the
workers read and the app server all stay as they were, and the log says so."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import requests

from flaskprod.stack.deploy import nginx_workers
from tests.support import free_port, wait_for
from tests.upstack import APP, start_up, stop, write_app

pytestmark = pytest.mark.integration

# The app refuses to load while its instance folder (the project's, which every release links) holds "broken".
BREAKS = """
if os.path.exists(os.path.join(app.instance_path, "broken")):
    raise RuntimeError("the instance folder says broken")
"""
KEPT = "app server of release 1 not reloaded"


def post(url: str, size: int) -> int:
    return requests.post(url, data=b"x" * size, timeout=15).status_code


def test_a_sighup_whose_app_server_fails_leaves_nginx_and_its_config_as_they_were(tmp_path: Path) -> None:
    write_app(tmp_path, APP + BREAKS)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.ready_timeout=20")
    try:
        stack.wait_ready()
        upload = stack.url("/upload")
        assert post(upload, 200 * 1024) == 200
        master = int((stack.run_dir / "nginx.pid").read_text())
        workers = nginx_workers(master)
        running_conf = (stack.run_dir / "nginx.conf").read_text()
        app_pids = stack.worker_pids(4)

        (tmp_path / "instance" / "broken").write_text("")
        config.write_text('[proxy]\nmax_body_size = "100k"\n')  # nginx's client_max_body_size with it
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: KEPT in stack.stderr(), timeout=40, what="the failed reload")

        # Nothing of the edit reached nginx: neither its workers, nor the file a restarted nginx would read.
        assert nginx_workers(master) == workers, stack.output()
        assert (stack.run_dir / "nginx.conf").read_text() == running_conf
        assert post(upload, 200 * 1024) == 200
        # Nor the copy of the config a restarted worker of the running app server reads.
        assert (stack.run_dir / "flaskprod.toml").read_text() == '[proxy]\nmax_body_size = "1M"\n'
        assert stack.worker_pids(4) == app_pids
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == ["app-1.sock"]
        [line] = [line for line in stack.stderr().splitlines() if KEPT in line]
        assert "the instance folder says broken" in line, line
        assert "nginx, its config and the app server stay as they were" in line, line

        # Once the app loads again, the next SIGHUP applies the edit, nginx's part included.
        (tmp_path / "instance" / "broken").unlink()
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "app server of release 1 reloaded" in stack.stderr(), timeout=40, what="the reload")
        assert "; nginx reloaded onto its changed config" in stack.stderr()
        assert post(upload, 200 * 1024) == 413
        assert not stack.worker_pids(4) & app_pids
    finally:
        stop(stack)
