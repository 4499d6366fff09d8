"""`flaskprod up` on SIGHUP reads flaskprod.toml again: nginx.conf follows it, a bad change is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from flaskprod.stack.deploy import nginx_workers
from tests.support import BIN, free_port, wait_for
from tests.upstack import (
    PLAIN,
    Loader,
    UpStack,
    closed_unanswered,
    name_app,
    one_request,
    start_up,
    stop,
    summary,
    up_env,
    write_app,
)

pytestmark = pytest.mark.integration


def post(stack_url: str, size: int) -> int:
    return requests.post(stack_url, data=b"x" * size, timeout=15).status_code


RELOADED = "reloaded: the new one ready"


def reload(stack: UpStack) -> None:
    """SIGHUP, then wait for the reload to end: until it has, the generation it replaces may still answer (an
    old nginx worker, the draining app server), and `up` reads the file only when it comes to the signal."""
    done = stack.stderr().count(RELOADED)
    os.kill(stack.proc.pid, signal.SIGHUP)
    wait_for(lambda: stack.stderr().count(RELOADED) > done, timeout=30, what="the reload to end")


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
        reload(stack)
        assert post(upload, 200 * 1024) == 413
        assert "client_max_body_size 102400;" in (stack.run_dir / "nginx.conf").read_text()

        # Raised again, the limit is the app's too: its reloaded workers read the project's file, not the
        # release's copy of it (nginx would pass 500k, and the app answer 413 by the limit it started with).
        config.write_text('[proxy]\nmax_body_size = "2M"\n')
        reload(stack)
        assert post(upload, 1500 * 1024) == 200
        config.write_text('[proxy]\nmax_body_size = "100k"\n')
        reload(stack)
        assert post(upload, 200 * 1024) == 413

        # A mistake in the file is reported; nginx and its config stay as they were.
        config.write_text('[proxy]\nmax_body_size = "lots"\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "invalid value 'lots' for proxy.max_body_size" in stack.stderr(), timeout=20, what="the error")
        assert stack.stderr().count("nginx and the app server not reloaded, the running config stays") == 1
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


def test_after_a_sighup_nginx_answers_the_name_the_reloaded_app_calls_itself(tmp_path: Path) -> None:
    """nginx's names come from what the serving app server loaded, not from the app as up found it at start."""
    name_app(tmp_path, "shop.example.com")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.ready_timeout=15")
    try:
        stack.wait_ready()
        (tmp_path / "instance" / "site.cfg").write_text("SERVER_NAME = 'store.example.com'\n")
        os.kill(stack.proc.pid, signal.SIGHUP)
        wait_for(lambda: "app server of release 1 reloaded" in stack.stderr(), timeout=30, what="the reload")
        assert stack.get("/whoami", headers={"Host": "store.example.com"}).text == "store.example.com"
        assert closed_unanswered(stack.port, "shop.example.com")
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
        assert stack.stderr().count("reloading the app server, and nginx if its config changed") == 1
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


def refused_by(stack: UpStack, answer: requests.Response) -> str:
    """Who answered 413: the app, or nginx before it passed the request on (its access line names no upstream).
    Both answer with the same JSON error page, under the same request id."""
    assert answer.status_code == 413, answer.text[:300]
    request_id = answer.headers["X-Request-ID"]

    def line() -> dict[str, Any] | None:  # nginx writes its log every second
        return next((each for each in stack.nginx_access() if each["request_id"] == request_id), None)

    wait_for(lambda: line() is not None, timeout=10, what=f"nginx's access line of request {request_id}")
    found = line()
    assert found is not None
    return "nginx" if found["upstream_status"] in ("", "-") else "app"


@pytest.mark.parametrize("end", ["promote", "rollback"])
def test_a_sighup_during_a_canary_reloads_nginx_and_replaces_the_app_server_once_the_canary_ends(
    tmp_path: Path, end: str
) -> None:
    # Beside a canary a third app server would exceed the database connections counted for two releases: the
    # app servers keep their config (not reloaded in place, keeping Gunicorn's old settings) until it ends.
    write_app(tmp_path)
    config = tmp_path / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    body = b"x" * (1500 * 1024)
    try:
        stack.wait_ready()
        upload = stack.url("/upload")
        json_413 = {"Accept": "application/json"}
        canary = subprocess.run(
            [str(BIN / "flaskprod"), "deploy", "--canary", "50"], cwd=tmp_path, env=up_env(), capture_output=True,
            text=True, timeout=120,
        )  # fmt: skip
        assert canary.returncode == 0, canary.stderr
        before = stack.worker_pids(20)
        assert len(before) == 2  # release 1's worker and the canary's

        config.write_text('[proxy]\nmax_body_size = "2M"\nstatic_max_age = 123\n')
        os.kill(stack.proc.pid, signal.SIGHUP)
        # nginx takes the edited config at once (its own cache header), but its body limit stays the one the app
        # servers loaded with, which still refuse by it: nginx passing 1.5M would only get the app's 413.
        wait_for(
            lambda: stack.get(f"/static/{PLAIN}").headers.get("Cache-Control") == "public, max-age=123",
            timeout=20, what="nginx on the edited config",
        )  # fmt: skip
        assert "client_max_body_size 1048576;" in (stack.run_dir / "nginx.conf").read_text()
        assert refused_by(stack, requests.post(upload, data=body, headers=json_413, timeout=15)) == "nginx"
        wait_for(lambda: "the app servers keep the config they started with while canary release 2 runs" in
                 stack.stderr(), timeout=20, what="what the SIGHUP deferred")  # fmt: skip
        assert stack.worker_pids(20) == before
        assert "app server of release" not in stack.stderr()

        ended = subprocess.run(
            [str(BIN / "flaskprod"), "deploy", "--promote"] if end == "promote" else [str(BIN / "flaskprod"), end],
            cwd=tmp_path, env=up_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert ended.returncode == 0, ended.stderr
        left = 2 if end == "promote" else 1
        assert (
            f"a new app server of release {left} replaces the running one next: the SIGHUP that came during the "
            "canary is applied"
        ) in ended.stderr
        wait_for(lambda: f"app server of release {left} reloaded" in stack.stderr(), timeout=30, what="the reload")
        # The new app server loaded the 2M limit, and nginx's follows it.
        assert "client_max_body_size 2097152;" in (stack.run_dir / "nginx.conf").read_text()
        answer = requests.post(upload, data=body, timeout=15)
        assert (answer.status_code, answer.json()) == (200, {"size": len(body)})
        assert not stack.worker_pids(20) & before
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == [f"app-{left}.1.sock"]
    finally:
        stop(stack)


def test_a_src_layout_on_the_import_path_runs_the_releases_copy_not_the_working_tree(tmp_path: Path) -> None:
    """`pip install -e .` of a src layout puts the working tree's src/ on sys.path (here: PYTHONPATH, as its .pth
    does): the app server runs the release's copy, so code edited but not deployed is not served after a reload."""
    write_app(tmp_path, "from shop import create_app\n\napp = create_app()\n")
    package = tmp_path / "src" / "shop"
    package.mkdir(parents=True)
    source = (
        "from flask import Flask\n\nfrom flaskprod import Production\n\nVERSION = {!r}\n\n\n"
        "def create_app():\n    app = Flask(__name__)\n    Production(app)\n"
        "    app.add_url_rule('/version', 'version', lambda: VERSION)\n    return app\n"
    )
    (package / "__init__.py").write_text(source.format("shipped"))
    env = up_env(PYTHONPATH=str(tmp_path / "src"))
    stack = start_up(tmp_path, "uwsgi", free_port(), "--workers", "1", env=env)
    try:
        stack.wait_ready()
        assert stack.get("/version").text == "shipped"
        (package / "__init__.py").write_text(source.format("edited, not deployed"))
        reload(stack)
        assert stack.get("/version").text == "shipped", stack.output()
    finally:
        stop(stack)


def reload_lines(stack: UpStack) -> list[str]:
    """reload(stack), then up's lines about it: from its "reloading" line to its end."""
    reload(stack)
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

        unchanged = reload_lines(stack)  # nginx.conf is the same: the serving link moved to the new app server alone
        assert nginx_workers(master) == workers
        assert not [line for line in unchanged if "reloading nginx" in line], unchanged
        assert "reloading the app server, and nginx if its config changed" in unchanged[0], unchanged
        assert "; nginx not reloaded: its config is unchanged" in unchanged[-1], unchanged

        config.write_text('[proxy]\nmax_body_size = "2M"\n')  # nginx's client_max_body_size with it
        changed = reload_lines(stack)
        assert not nginx_workers(master) & workers  # its old workers are gone once the reload is done
        assert "; nginx reloaded onto its changed config" in changed[-1], changed
    finally:
        stop(stack)


# The app answers with the version of a library outside the project (as one installed in the virtualenv): what a
# new app server imports afresh, and the running one has in memory.
LIBRARY_APP = """
import os

import shoplib
from flask import Flask, jsonify

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/version")
def version():
    return jsonify(version=shoplib.VERSION, pid=os.getpid())
"""


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_after_each_sighup_every_request_through_nginx_is_answered_by_the_new_app_server(
    tmp_path: Path, kind: str
) -> None:
    """up checks the new app server on its own socket before the switch: through nginx, on a connection it keeps
    alive and on new ones, every request after the reload's line is the new one's, whether nginx reloaded (its
    config changed) or only its link moved, and for the second SIGHUP (back on the first socket) as the first."""
    project, library = tmp_path / "project", tmp_path / "lib"
    write_app(project, LIBRARY_APP)
    library.mkdir()
    (library / "shoplib.py").write_text("VERSION = 1\n")
    config = project / "flaskprod.toml"
    config.write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(project, kind, free_port(), "--workers", "2", env=up_env(PYTHONPATH=str(library)))
    try:
        stack.wait_ready()
        kept = requests.Session()  # one connection to nginx, kept alive across the reloads
        assert kept.get(stack.url("/version"), timeout=15).json()["version"] == 1
        for version, edit in ((2, "2M"), (3, None)):  # nginx reloads onto a changed config; then its link moves alone
            (library / "shoplib.py").write_text(f"VERSION = {version}\n")
            if edit:
                config.write_text(f'[proxy]\nmax_body_size = "{edit}"\n')
            reload(stack)
            answers = [kept.get(stack.url("/version"), timeout=15).json()["version"] for _ in range(20)]
            answers += [stack.get("/version", headers={"Connection": "close"}).json()["version"] for _ in range(20)]
            assert answers == [version] * 40, stack.output()
        lines = [line for line in stack.stderr().splitlines() if RELOADED in line]
        assert "; nginx reloaded onto its changed config" in lines[0] and "; nginx not reloaded" in lines[1], lines
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == ["app-1.sock"]
    finally:
        stop(stack)
