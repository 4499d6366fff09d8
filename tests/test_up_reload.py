"""`flaskprod up` on SIGHUP reads flaskprod.toml again: nginx.conf follows it, a bad change is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from tests.support import BIN, free_port, wait_for
from tests.upstack import Loader, one_request, start_up, stop, summary, up_env, write_app

pytestmark = pytest.mark.integration


def post(stack_url: str, size: int) -> int:
    return requests.post(stack_url, data=b"x" * size, timeout=15).status_code


def test_sighup_applies_the_edited_config_and_keeps_the_running_one_on_a_bad_edit(tmp_path: Path) -> None:
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        upload = stack.url("/upload")
        assert post(upload, 200 * 1024) == 200

        config.write_text('[proxy]\nmax_body_size = "100k"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: post(upload, 200 * 1024) == 413, timeout=20, what="the new body limit in nginx")
        assert "client_max_body_size 102400;" in (stack.run_dir / "nginx.conf").read_text()

        # Raised again, the limit is the app's too: its reloaded workers read the project's file, not the
        # release's copy of it (nginx would pass 500k, and the app answer 413 by the limit it started with).
        config.write_text('[proxy]\nmax_body_size = "2M"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: post(upload, 1500 * 1024) == 200, timeout=20, what="the new body limit in nginx and the app")
        config.write_text('[proxy]\nmax_body_size = "100k"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: post(upload, 200 * 1024) == 413, timeout=20, what="the body limit back at 100k")

        # A mistake in the file is reported; nginx and its config stay as they were.
        config.write_text('[proxy]\nmax_body_size = "lots"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "invalid value 'lots' for proxy.max_body_size" in stack.stderr(), timeout=20, what="the error")
        assert "nginx not reloaded, the running config stays" in stack.stderr()
        assert "client_max_body_size 102400;" in (stack.run_dir / "nginx.conf").read_text()
        assert post(upload, 50 * 1024) == 200

        # What decides the processes needs a restart, and says so.
        config.write_text('[proxy]\nmax_body_size = "100k"\nhost = "127.0.0.2"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "restart `flaskprod up` to apply" in stack.stderr(), timeout=20, what="the restart hint")
        assert stack.get("/api/ping").status_code == 200
        assert stack.proc.poll() is None
    finally:
        stop(stack)


def test_sighup_under_uwsgi_holds_no_request_behind_a_slow_one(tmp_path: Path) -> None:
    # uWSGI's own reload waits for every request in hand before its master loads the app again, queueing the
    # rest: `up` starts a new app server of the release beside it instead, and drains the old one.
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "uwsgi", free_port(), "--workers", "1", "--threads", "4")
    try:
        stack.wait_ready()
        old_pids = stack.worker_pids()
        slow: list[int | None] = []
        holder = threading.Thread(target=lambda: slow.append(one_request(stack.port, "/slow?s=5").status))
        holder.start()
        time.sleep(0.5)
        config.write_text('[proxy]\nmax_body_size = "2M"\n')
        loader = Loader(stack.port, threads=2, max_requests=20000, max_seconds=30).start()
        os.kill(stack.proc.pid, signal.SIGHUP)
        # The new limit is the app's too: the new app server read the edited file.
        wait_for(lambda: post(stack.url("/upload"), 1500 * 1024) == 200, timeout=20, what="the reloaded app")
        holder.join(30)
        outcomes = loader.stop()

        assert slow == [200]
        assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)
        waited = max(o.ended - o.started for o in outcomes)
        assert waited < 2.0, f"a request waited {waited:.1f}s through the reload"
        assert not stack.worker_pids() & old_pids
        wait_for(lambda: "app server of release 1 reloaded" in stack.stderr(), timeout=20, what="the reload's end")
        assert stack.get("/readyz").status_code == 200
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == ["app-1.1.sock"]
    finally:
        stop(stack)


def test_a_sighup_while_a_deploy_waits_for_its_release_is_applied_after_it(tmp_path: Path) -> None:
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        upload = stack.url("/upload")
        # Release 2 takes 3 s to load: the SIGHUP comes while `up` waits for it to get ready.
        (tmp_path / "app.py").write_text("import time\ntime.sleep(3)\n" + (tmp_path / "app.py").read_text())
        deploy = subprocess.Popen(
            [str(BIN / "flaskprod"), "deploy"], cwd=tmp_path, env=up_env(), stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(1.5)
        config.write_text('[proxy]\nmax_body_size = "100k"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        out, err = deploy.communicate(timeout=60)
        assert deploy.returncode == 0, err
        assert out == "release 2 serves every request; `flaskprod rollback` returns to 1\n"
        wait_for(lambda: post(upload, 200 * 1024) == 413, timeout=20, what="the SIGHUP's body limit")
        assert stack.stderr().count("reloading nginx and the app server") == 1
    finally:
        stop(stack)


def test_sighup_gives_the_app_server_the_edited_timeout_as_nginx_and_the_app(tmp_path: Path) -> None:
    # Single-threaded workers: Gunicorn kills one busy server.timeout + 5 s. Its own reload kept the timeout it
    # started with (2 s, so 7 s), and a request the edit allowed 10 s for was killed at 7 s.
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text("[server]\ntimeout = 2\n")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--threads", "1")
    try:
        stack.wait_ready()
        assert stack.get("/slow?s=3").status_code == 504
        before = stack.worker_pids(3)
        config.write_text("[server]\ntimeout = 10\n")
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: not stack.worker_pids(3) & before, timeout=30, what="new workers after SIGHUP")
        answer = stack.get("/slow?s=8", timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        assert answer.json()["slept"] == 8.0
    finally:
        stop(stack)
