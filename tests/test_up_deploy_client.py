"""What `flaskprod deploy` tells its user against a running `flaskprod up`: the settings it takes, why a release
did not start, what it waits for, and that stopping it cancels a deploy whose release is not ready yet."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support import BIN, free_port, stop_group, wait_for
from tests.test_up_deploy import VERSIONED, flaskprod, versions, write_version
from tests.upstack import Loader, start_up, stop, summary, up_env, write_app

pytestmark = pytest.mark.integration

# Release 2 of VERSIONED, whose readiness check fails while the project holds the file REDIS_DOWN.
REDIS_DOWN = VERSIONED.replace('VERSION = "1"', 'VERSION = "2"') + """

if os.path.exists(os.path.join(os.path.dirname(__file__), "REDIS_DOWN")):
    @prod.readiness_check("redis")
    def redis():
        raise ConnectionError("redis down")
"""


def test_deploy_refuses_a_setting_it_would_not_apply(tmp_path: Path) -> None:
    for command in ("deploy", "rollback"):
        result = flaskprod(tmp_path, command, "--set", "proxy.ready_timeout=5")
        assert (result.returncode, result.stdout) == (2, "")
        assert result.stderr == (
            f"Error: {command} takes --set proxy.run_dir alone: the running up's settings come from flaskprod.toml, "
            "which deploy ships with the release; put proxy.ready_timeout there\n"
        )
    unknown = flaskprod(tmp_path, "deploy", "--set", "proxy.nope=5")
    assert unknown.stderr == (
        "Error: flag --set proxy.nope: unknown setting 'proxy.nope'; see `flaskprod config` for every setting\n"
    )
    helped = " ".join(flaskprod(tmp_path, "deploy", "--help").stdout.split())
    assert "--set proxy.run_dir=DIR The running up's run dir, e.g. --set proxy.run_dir=/srv/run; the only " in helped
    assert "the others are the running up's, from flaskprod.toml, which deploy ships with the release." in helped


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_a_failed_deploy_says_why_and_that_the_old_release_serves(tmp_path: Path, kind: str) -> None:
    write_version(tmp_path, "1")
    config = tmp_path / "flaskprod.toml"
    config.write_text("[proxy]\nready_timeout = 60\n")
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        # The readiness bound is the one the deploy ships: the file's, as the refused --set said.
        config.write_text("[proxy]\nready_timeout = 8\n")
        write_app(tmp_path, REDIS_DOWN)
        (tmp_path / "REDIS_DOWN").touch()
        started = time.monotonic()
        failed = flaskprod(tmp_path, "deploy")
        assert time.monotonic() - started < 30, failed.stderr
        assert failed.returncode == 1
        error = failed.stderr.splitlines()[-1]
        assert error.startswith(
            f"Error: release 2 was not ready within proxy.ready_timeout = 8s: /readyz on unix:{stack.run_dir}/"
            'app-2.sock last answered: 503 {"status": "fail", "checks": {"redis": {"status": "fail", "error": '
            '"ConnectionError: redis down", '
        ), error
        assert error.endswith("; release 1 still serves"), error

        (tmp_path / "app.py").write_text(VERSIONED.replace("app = Flask(__name__)", "app = Flask(__name__"))
        broken = flaskprod(tmp_path, "deploy")
        assert broken.returncode == 1
        assert broken.stderr.splitlines()[-1] == (
            "Error: release 3 did not start: its app server exited with status 2 (flaskprod serve refused to start "
            "it): error while importing 'app': SyntaxError: '(' was never closed (app.py, line 9); release 1 "
            "still serves"
        )
        assert versions(stack, 6) == {"1": 6}
    finally:
        stop(stack)


def test_a_deploy_waits_visibly_and_one_whose_client_went_away_is_cancelled(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    (tmp_path / "flaskprod.toml").write_text("[proxy]\nready_timeout = 90\n")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    clients: list[subprocess.Popen[bytes]] = []

    def deploy(name: str) -> subprocess.Popen[bytes]:
        with (tmp_path / f"{name}.out").open("wb") as out, (tmp_path / f"{name}.err").open("wb") as err:
            clients.append(subprocess.Popen([str(BIN / "flaskprod"), "deploy"], cwd=tmp_path, env=up_env(),
                                            stdout=out, stderr=err, start_new_session=True))  # fmt: skip
        return clients[-1]

    try:
        stack.wait_ready()
        write_app(tmp_path, REDIS_DOWN)
        (tmp_path / "REDIS_DOWN").touch()
        loader = Loader(stack.port, threads=4, max_requests=60000, max_seconds=90).start()
        first = deploy("first")
        wait_for(lambda: "into release 2" in (tmp_path / "first.err").read_text(), timeout=30, what="release 2")
        second = deploy("second")
        wait_for(
            lambda: (tmp_path / "second.err").read_text().startswith(
                "flaskprod deploy: waiting for release 2's deploy in progress, which ends within "
            ),
            timeout=10,
            what="the second deploy to say what it waits for",
        )
        (tmp_path / "REDIS_DOWN").unlink()  # release 2 would get ready from now: its deploy must be cancelled
        first.send_signal(signal.SIGTERM)
        killed = time.monotonic()
        assert second.wait(60) == 0, (tmp_path / "second.err").read_text() + stack.output()
        # Release 2 had 90 s to get ready: the second deploy did not wait for them.
        assert time.monotonic() - killed < 30
        assert (tmp_path / "second.out").read_text() == (
            "release 3 serves every request; `flaskprod rollback` returns to 1\n"
        )
        outcomes = loader.stop()
        assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)
        assert (
            "deploy cancelled: its client went away before release 2 was ready: release 2 stopped, release 1 "
            "still serves"
        ) in stack.stderr()
        assert versions(stack, 6) == {"2": 6}  # release 3 holds the project's VERSION = "2"
        assert not (stack.run_dir / "releases" / "2").exists()  # it never served
        assert sorted(p.name for p in stack.run_dir.glob("app-*.sock")) == ["app-3.sock"]
    finally:
        for client in clients:
            stop_group(client)
        stop(stack)
