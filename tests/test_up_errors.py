"""`flaskprod up` with bad input: one line saying what to do, a non-zero exit, and no process left behind."""

from __future__ import annotations

import socket
import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.support import BIN, free_port
from tests.upstack import processes_under, start_up, stop, up_args, up_env, write_app

pytestmark = pytest.mark.integration


def run_up(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up_args(*args),
        cwd=root,
        env=env or up_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=timeout,
        check=False,
        start_new_session=True,
    )


def test_nginx_setting_pointing_nowhere_says_how_to_install_it(tmp_path: Path) -> None:
    write_app(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", "proxy.nginx=/nonexistent/nginx")
    assert result.returncode == 2
    assert "nginx not found" in result.stderr
    assert "apt-get install nginx-light" in result.stderr
    assert "Traceback" not in result.stderr


def test_nginx_missing_from_path_says_how_to_install_it(tmp_path: Path) -> None:
    write_app(tmp_path)
    env = up_env(PATH=str(BIN))  # the virtualenv's scripts only: no /usr/sbin
    result = run_up(tmp_path, "gunicorn", str(free_port()), env=env)
    assert result.returncode == 2
    assert "apt-get install nginx-light" in result.stderr
    assert processes_under(tmp_path) == {}


def test_port_in_use(tmp_path: Path) -> None:
    write_app(tmp_path)
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = run_up(tmp_path, "gunicorn", str(port))
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert "--port" in result.stderr


def test_bind_is_refused_with_the_flags_to_use(tmp_path: Path) -> None:
    write_app(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--bind", "127.0.0.1:9")
    assert result.returncode == 2
    assert "use --host and --port" in result.stderr
    listed = subprocess.run([str(BIN / "flaskprod"), "up", "--help"], capture_output=True, text=True, check=True).stdout
    assert "--bind" not in listed and "--host" in listed  # not offered, only refused with a hint


def test_more_than_one_trusted_proxy_hop_is_refused_as_build_refuses_it(tmp_path: Path) -> None:
    write_app(tmp_path)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", "proxy.trusted_hops=2")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: proxy.trusted_hops = 2, but nginx, the one proxy in front of the app")
    assert result.stderr.count("\n") == 1 and "--set proxy.trusted_hops=1" in result.stderr
    assert processes_under(tmp_path) == {} and not (tmp_path / ".flaskprod" / "run").exists()


def test_a_run_dir_too_long_for_a_socket_is_refused_before_it_is_made(tmp_path: Path) -> None:
    write_app(tmp_path)
    run_dir = tmp_path / ("r" * 100)
    result = run_up(tmp_path, "gunicorn", str(free_port()), "--set", f"proxy.run_dir={run_dir}")
    assert result.returncode == 2
    assert result.stderr == (
        f"Error: run directory {run_dir} is {len(str(run_dir))} bytes, too long for the unix socket paths under it "
        "(107 bytes at most): set proxy.run_dir to a path of at most 90 bytes\n"
    )
    assert not run_dir.exists()


def test_app_that_does_not_import_fails_with_its_error(tmp_path: Path) -> None:
    write_app(tmp_path, "import flask\nraise RuntimeError('cannot reach the settings service')\n")
    result = run_up(tmp_path, "gunicorn", str(free_port()))
    assert result.returncode == 2
    assert "RuntimeError: cannot reach the settings service" in result.stderr
    assert processes_under(tmp_path) == {}


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_app_that_never_gets_ready_fails_with_its_error_and_leaves_nothing(tmp_path: Path, kind: str) -> None:
    write_app(tmp_path)
    env = up_env(TEST_READINESS_FAILS="1")
    result = run_up(tmp_path, kind, str(free_port()), "--workers", "1", "--set", "proxy.ready_timeout=4", env=env)
    assert result.returncode == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: the app was not ready within proxy.ready_timeout = 4s")
    assert "database at db.invalid:5432 refused the connection" in last
    assert processes_under(tmp_path) == {}
    assert "is ready" not in result.stdout


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_app_without_production_is_served_and_told_what_it_lacks(tmp_path: Path, kind: str) -> None:
    """No /readyz to wait on: any answer from the app itself means it serves; nginx's 502 would not."""
    plain = "from flask import Flask\napp = Flask(__name__)\n@app.get('/')\ndef index():\n    return 'plain'\n"
    write_app(tmp_path, plain)
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", "proxy.ready_timeout=20")
    try:
        stack.wait_ready(timeout=20)
        assert stack.get("/").text == "plain"
        assert "app:app does not answer /readyz" in stack.stderr()
        assert "add Production(app) where the app is created" in stack.stderr()
        assert "health      none: the app does not install Production(app)" in stack.stdout()
        assert "metrics     none" in stack.stdout()
        assert "logs        app: stdout (its own format); " in stack.stdout()  # not flaskprod's JSON
    finally:
        stop(stack)


def test_second_up_on_the_same_run_dir_is_refused(tmp_path: Path) -> None:
    write_app(tmp_path)
    first = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        first.wait_ready()
        result = run_up(tmp_path, "gunicorn", str(free_port()), "--workers", "1")
        assert result.returncode == 2
        assert f"another flaskprod up (pid {first.proc.pid}) is running" in result.stderr
        assert first.get("/api/ping").status_code == 200
    finally:
        stop(first)


def test_rate_limit_answers_429(tmp_path: Path) -> None:
    write_app(
        tmp_path,
        textwrap.dedent("""
        from flask import Flask
        from flaskprod import Production
        app = Flask(__name__)
        Production(app)
        @app.get("/api/ping")
        def ping():
            return "pong"
    """),
    )
    stack = start_up(
        tmp_path,
        "gunicorn",
        free_port(),
        "--workers",
        "1",
        "--set",
        "proxy.rate_limit=1r/m",
        "--set",
        "proxy.rate_limit_burst=3",
    )
    try:
        stack.wait_ready()
        # /readyz through nginx counted once already; the burst allows 3 more at once, then 429.
        codes = [stack.get("/api/ping").status_code for _ in range(6)]
        assert 429 in codes
        assert codes.count(200) <= 3
        assert codes[codes.index(429) :] == [429] * (6 - codes.index(429))
    finally:
        stop(stack)
