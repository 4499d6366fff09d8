"""The probe init, serve and build load the app with: an app that exits, is interrupted, crashes or hangs while
loading is one line and exit 2, its process gone; a bug in it keeps its traceback."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import server_env
from tests.support import BIN, interrupted_while_loading, readable, wait_for

PLAIN = "from flask import Flask\n\napp = Flask(__name__)\n"
# Lines 4 to 7 of every app below: where the test finds the app's process.
WRITES_PID = "import os\n\nwith open('pid', 'w') as fh:\n    fh.write(str(os.getpid()))\n"
# As an app waiting for its database when imported, having started a helper process of its own.
HANGS = PLAIN + WRITES_PID + (
    "import subprocess\nimport time\n\nhelper = subprocess.Popen(['sleep', '1000'])\n"
    "with open('helper.pid', 'w') as fh:\n    fh.write(str(helper.pid))\ntime.sleep(1000)\n"
)
COMMANDS = {
    "init": ["init", "--dry-run"],
    "serve": ["serve", "--print-config"],
    "build": ["build", "--target", "single", "--dry-run"],
}


def run(tmp_path: Path, files: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in tmp_path, holding files and a requirements.txt (build asks for one)."""
    for name, text in {"requirements.txt": "flask\nflaskprod\n", **files}.items():
        (tmp_path / name).write_text(text)
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=tmp_path, env=server_env(), capture_output=True, text=True, timeout=60
    )


def gone(tmp_path: Path, pid_file: str = "pid") -> bool:
    """Whether the process whose pid the app wrote in pid_file has ended: a zombie has (a helper whose parent,
    the app, was killed with it is left for init to reap)."""
    try:
        stat = Path("/proc", (tmp_path / pid_file).read_text(), "stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


@pytest.fixture(autouse=True)
def stop_leftovers(tmp_path: Path) -> Iterator[None]:
    """A failing test leaves no app or helper process behind: each is killed by the pid it wrote (if that
    pid is still the probe's or the helper's)."""
    yield
    for pid_file, command in (("pid", b"flaskprod.servers.probe"), ("helper.pid", b"sleep")):
        with contextlib.suppress(OSError, ValueError):
            pid = int((tmp_path / pid_file).read_text())
            if command in Path("/proc", str(pid), "cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
@pytest.mark.parametrize(
    ("files", "message"),
    [
        (
            {"app.py": PLAIN + WRITES_PID + "import sys\n\nsys.exit(0)\n"},
            "Error: app 'app' exited while loading (sys.exit(0) from app.py:10): a server importing it would exit "
            'too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            {"app.py": PLAIN + WRITES_PID + "import sys\n\nsys.exit(3)\n"},
            "Error: app 'app' exited while loading (sys.exit(3) from app.py:10): a server importing it would exit "
            'too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            {"app.py": PLAIN + WRITES_PID + "import settings\n", "settings.py": "import sys\n\nsys.exit('no db')\n"},
            "Error: app 'app' exited while loading (sys.exit('no db') from settings.py:3): a server importing it "
            'would exit too; call sys.exit() only under `if __name__ == "__main__":`',
        ),
        (
            {"app.py": PLAIN + WRITES_PID + "os._exit(0)\n"},
            "Error: app 'app' exited while loading (exit status 0, without a Python exception, as os._exit() "
            "does): a server importing it would exit too",
        ),
        (
            {"app.py": PLAIN + WRITES_PID + "raise KeyboardInterrupt\n"},
            "Error: app 'app' raised KeyboardInterrupt while loading (app.py:8): a server importing it would stop "
            "too; remove the cause",
        ),
        (
            {"app.py": PLAIN + WRITES_PID + "import signal\n\nos.kill(os.getpid(), signal.SIGKILL)\n"},
            "Error: app 'app' crashed while loading (killed by SIGKILL)",
        ),
    ],
    ids=["sys-exit-0", "sys-exit-3", "sys-exit-in-an-import", "os-exit-0", "keyboard-interrupt", "killed"],
)
def test_an_app_that_exits_or_is_interrupted_while_loading_is_one_line(
    tmp_path: Path, command: list[str], files: dict[str, str], message: str
) -> None:
    result = run(tmp_path, files, *command)
    assert (result.returncode, result.stdout, readable(result.stderr)) == (2, "", message + "\n")
    assert gone(tmp_path)


@pytest.mark.parametrize("command", [COMMANDS["serve"], COMMANDS["build"]], ids=["serve", "build"])
def test_an_app_that_hangs_while_loading_is_stopped_at_ready_timeout(tmp_path: Path, command: list[str]) -> None:
    # run's own timeout fails the test if the command waits (or if the helper is left holding its stderr).
    result = run(tmp_path, {"app.py": HANGS}, *command, "--set", "proxy.ready_timeout=1")
    assert (result.returncode, result.stdout) == (2, "")
    assert readable(result.stderr) == (
        "Error: app 'app' did not finish loading within proxy.ready_timeout = 1s: if it waits for a service "
        "(a database) when imported, start that service or connect on the first request instead; if it is only "
        "slow, raise the bound (--set proxy.ready_timeout=2)\n"
    )
    assert gone(tmp_path) and gone(tmp_path, "helper.pid")  # the app's whole group stopped, not left asleep


def test_the_bound_is_the_commands_own_spec_another_config_file_included(tmp_path: Path) -> None:
    (tmp_path / "staging.toml").write_text("[proxy]\nready_timeout = 1\n")
    result = run(tmp_path, {"app.py": HANGS}, *COMMANDS["build"], "--config", "staging.toml")
    assert result.returncode == 2
    assert "did not finish loading within proxy.ready_timeout = 1s" in result.stderr
    assert gone(tmp_path) and gone(tmp_path, "helper.pid")


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_threads_the_app_started_do_not_keep_the_probe_waiting(tmp_path: Path, command: list[str]) -> None:
    # A scheduler started at import: a non-daemon thread that would keep the probe's interpreter from exiting.
    starts_a_thread = "import threading\nimport time\n\nthreading.Thread(target=time.sleep, args=(1000,)).start()\n"
    # Production(app), or build would then say the app does not answer its health checks.
    production = "\nfrom flaskprod import Production\n\nProduction(app)\n"
    result = run(tmp_path, {"app.py": PLAIN + WRITES_PID + starts_a_thread + production}, *command)
    assert result.returncode == 0, result.stderr
    assert gone(tmp_path)


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_processes_the_app_started_end_with_the_probe(tmp_path: Path, command: list[str]) -> None:
    # A helper process started at import (a worker pool, a sidecar): the probe's, not the command's to keep.
    starts_a_helper = (
        "import subprocess\n\nhelper = subprocess.Popen(['sleep', '1000'])\n"
        "with open('helper.pid', 'w') as fh:\n    fh.write(str(helper.pid))\n"
    )
    production = "\nfrom flaskprod import Production\n\nProduction(app)\n"
    result = run(tmp_path, {"app.py": PLAIN + WRITES_PID + starts_a_helper + production}, *command)
    assert result.returncode == 0, result.stderr
    assert gone(tmp_path) and gone(tmp_path, "helper.pid")


@pytest.mark.parametrize("command", COMMANDS.values(), ids=COMMANDS.keys())
def test_a_bug_in_the_app_keeps_its_traceback_then_one_line(tmp_path: Path, command: list[str]) -> None:
    result = run(tmp_path, {"app.py": PLAIN + "RATIO = 1 / 0\n"}, *command)
    assert (result.returncode, result.stdout) == (2, "")
    lines = readable(result.stderr).splitlines()
    # From the user's first frame: none of flaskprod's or importlib's.
    assert lines[:3] == ["Traceback (most recent call last):", f'  File "{tmp_path / "app.py"}", line 4, in <module>',
                         "    RATIO = 1 / 0"]  # fmt: skip
    assert lines[-1] == "Error: error while importing 'app': ZeroDivisionError: division by zero"


def test_sigterm_while_the_app_loads_stops_it_too(tmp_path: Path) -> None:
    # `up` stops a deploy's `flaskprod serve` so: the app, loading in a session of its own, must go with it.
    (tmp_path / "app.py").write_text(HANGS)
    command = subprocess.Popen([str(BIN / "flaskprod"), *COMMANDS["serve"]], cwd=tmp_path, env=server_env(),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "helper.pid").exists() and (tmp_path / "helper.pid").read_text(), timeout=20)
        command.terminate()
        command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    assert command.returncode == 143
    assert gone(tmp_path) and gone(tmp_path, "helper.pid")


def test_ctrl_c_while_the_app_loads_is_130_and_stops_it(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(HANGS)
    ended = interrupted_while_loading(COMMANDS["serve"], tmp_path, server_env(), tmp_path / "helper.pid")
    assert ended == (130, "", "interrupted\n")
    assert gone(tmp_path) and gone(tmp_path, "helper.pid")


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ('app.config["SERVER_NAME"] = "shop.example.com:8443"\n', "localhost shop.example.com"),
        # Set from the environment, as Production(app) reads FLASK_* variables; subdomains routed too.
        ('app.subdomain_matching = True\n', "localhost .shop.example.com"),
    ],
    ids=["set-in-code", "from-the-environment-with-subdomains"],
)
def test_build_has_nginx_answer_the_apps_server_name(tmp_path: Path, config: str, names: str) -> None:
    """The probe learns SERVER_NAME as the app loaded it, and every target's nginx answers that host: without it,
    nginx closed each request for the name the app calls itself (and builds its external URLs with)."""
    app = "from flask import Flask\n\nfrom flaskprod import Production\n\napp = Flask(__name__)\n" + config
    app += "Production(app)\n"
    env = {"FLASK_SERVER_NAME": "shop.example.com:8443"} if "subdomain" in config else None
    for name, text in {"requirements.txt": "flask\nflaskprod\n", "app.py": app}.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [str(BIN / "flaskprod"), "build", "--target", "compose", "--out", "deploy"],
        cwd=tmp_path, env=server_env(env), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    conf = (tmp_path / "deploy" / "nginx" / "nginx.conf").read_text()
    assert f"server_name {names};" in conf


ASYNC_APP = (
    "from flask import Flask\n\nfrom flaskprod import Production\n\napp = Flask(__name__)\nProduction(app)\n\n\n"
    '@app.get("/feed")\nasync def feed():\n    return {"items": []}\n'
)


def test_build_refuses_async_views_the_requirements_give_no_asgiref(tmp_path: Path) -> None:
    """The image would answer 500 on each async view: build says so, in one line with the fix, and writes nothing."""
    result = run(tmp_path, {"app.py": ASYNC_APP}, "build", "--target", "compose", "--out", "deploy")
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "Error: the app has async views (feed), which Flask runs with asgiref, and requirements.txt installs none: "
        "each answers 500 (\"Install Flask with the 'async' extra in order to use async views\"); write "
        "flask[async] there instead of flask, or add asgiref\n"
    )
    assert not (tmp_path / "deploy").exists()
    fixed = run(tmp_path, {"app.py": ASYNC_APP, "requirements.txt": "flask[async]\nflaskprod\n"}, "build",
                "--target", "compose", "--out", "deploy")  # fmt: skip
    assert fixed.returncode == 0, fixed.stderr


def test_a_child_whose_parent_left_says_nothing(tmp_path: Path) -> None:
    # A Ctrl-C inside the parent's Popen: it removed its directory and left; the child it started then wrote a
    # FileNotFoundError's traceback as the last thing the user saw (test_entrypoint, 1 run in 7 at 0.15 s).
    from flaskprod.checks.runner import main as check_child
    from flaskprod.servers.loading import write_answer

    gone = tmp_path / "gone"
    write_answer(gone / "result.json", {"error": "x"})  # no exception, nothing written
    assert not gone.exists()
    assert check_child([str(gone)]) == 0
    write_answer(tmp_path / "result.json", {"ok": True})  # the parent still there: written
    assert (tmp_path / "result.json").read_text() == '{"ok": true}'


class _Stopped(Exception):
    pass


def test_a_child_the_callers_stop_signal_ended_is_the_stop_not_a_crash(tmp_path: Path) -> None:
    # A terminal's Ctrl-C reached `up --with postgres` and the loading child it was forking, still in up's group
    # before setsid(): up said "crashed while loading (killed by SIGINT)" and exit 2 (CI at e17de78, 1 in 2,683).
    # Here the child ends itself by SIGINT once the stop is queued, as the group's signal would end it.
    from flaskprod.servers.loading import load_in_child

    queued = tmp_path / "stop-queued"

    def told_to_stop() -> None:
        if queued.exists():
            raise _Stopped

    child = (
        "import os, signal, sys\nopen(sys.argv[1], 'w').close()\n"
        "signal.signal(signal.SIGINT, signal.SIG_DFL)\nos.kill(os.getpid(), signal.SIGINT)\n"
    )
    with pytest.raises(_Stopped):
        load_in_child([sys.executable, "-c", child, str(queued)], label="app", bound=30, check=told_to_stop)
    assert load_in_child([sys.executable, "-c", child, str(queued)], label="app", bound=30) == -signal.SIGINT
