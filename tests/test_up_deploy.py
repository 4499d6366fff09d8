"""`flaskprod deploy` and `rollback` against a running `flaskprod up`: real nginx, real app servers, and
clients that must not see a single failed request while releases switch."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from flaskprod.errors import ServerError
from flaskprod.stack import control
from tests.support import BIN, free_port, wait_for
from tests.upstack import (
    APP,
    Loader,
    UpStack,
    children_of,
    one_request,
    start_up,
    stop,
    summary,
    up_env,
    write_app,
)

pytestmark = pytest.mark.integration

VERSIONED = (
    APP
    + """

VERSION = "1"


@app.get("/version")
def version():
    return VERSION


@app.post("/note")
def write_note():
    os.makedirs(app.instance_path, exist_ok=True)
    with open(os.path.join(app.instance_path, "note.txt"), "w") as f:
        f.write(request.get_data(as_text=True))
    return "saved"


@app.get("/note")
def read_note():
    with open(os.path.join(app.instance_path, "note.txt")) as f:
        return f.read()
"""
)


def write_version(root: Path, version: str, *, broken: bool = False) -> None:
    source = VERSIONED.replace('VERSION = "1"', f'VERSION = "{version}"')
    if broken:
        source += f'\nraise RuntimeError("release {version} cannot start: DATABASE_URL is missing")\n'
    write_app(root, source)
    (root / "static" / "version.txt").write_text(f"static {version}\n")


def flaskprod(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=up_env(), capture_output=True, text=True, timeout=120
    )


def versions(stack: UpStack, count: int) -> Counter[str]:
    return Counter(stack.get("/version").text for _ in range(count))


@pytest.fixture(params=["gunicorn", "uwsgi"])
def stack(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    write_version(tmp_path, "1")
    running = start_up(tmp_path, request.param, free_port(), "--workers", "1", "--threads", "4")
    try:
        running.wait_ready()
        yield running
    finally:
        stop(running)


def test_deploy_switches_releases_without_failing_a_request(stack: UpStack) -> None:
    assert stack.get("/version").text == "1"
    assert "  release     1, copied " in stack.stdout()
    assert requests.post(stack.url("/note"), data="kept across releases", timeout=15).text == "saved"
    old_pids = stack.worker_pids()

    write_version(stack.root, "2")
    loader = Loader(stack.port, threads=4, max_requests=60000, max_seconds=60).start()
    # A request the old release holds while the switch happens: it must finish there, with its answer.
    slow: list[int | None] = []
    holder = threading.Thread(target=lambda: slow.append(one_request(stack.port, "/slow?s=2").status))
    holder.start()
    deployed = flaskprod(stack.root, "deploy")
    holder.join(30)
    outcomes = loader.stop()

    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout == "release 2 serves every request; `flaskprod rollback` returns to 1\n"
    progress = deployed.stderr.splitlines()
    copied = r"flaskprod deploy: copied \d+ files of \S+ into release 2, linking the project's instance"
    assert re.fullmatch(copied, progress[0]), progress[0]
    assert progress[1].startswith("flaskprod deploy: release 2 is ready (/readyz answered 200 after ")
    # The link nginx connects through moved alone: nginx.conf is the same for release 2.
    assert progress[2] == "flaskprod deploy: nginx sends requests to release 2 (its link repointed, no reload)"
    assert progress[3].startswith("flaskprod deploy: release 1 drained and stopped in ")
    assert slow == [200]
    assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)

    assert versions(stack, 10) == {"2": 10}
    assert stack.get("/static/version.txt").text == "static 2\n"  # nginx serves the new release's files
    assert stack.get("/note").text == "kept across releases"  # the instance folder is the project's
    assert not stack.worker_pids() & old_pids
    assert not (stack.run_dir / "app-1.sock").exists()
    assert stack.get("/readyz").status_code == 200  # the drained release's 503 is its own

    # Rollback: release 1 again, from its copy, though the project now holds version 2.
    loader = Loader(stack.port, threads=4, max_requests=60000, max_seconds=60).start()
    rolled = flaskprod(stack.root, "rollback")
    outcomes = loader.stop()
    assert rolled.returncode == 0, rolled.stderr
    assert rolled.stdout == "rolled back: release 1 serves every request (release 2 is kept)\n"
    assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)
    assert versions(stack, 10) == {"1": 10}
    assert stack.get("/static/version.txt").text == "static 1\n"

    # Nothing before release 1: one line, and the stack as it was.
    again = flaskprod(stack.root, "rollback")
    assert again.returncode == 1
    assert again.stderr == (
        "Error: release 1 is the oldest one kept (release.keep = 5): there is none before it to roll back to\n"
    )
    assert stack.proc.poll() is None and versions(stack, 4) == {"1": 4}

    # What a client reads first, at once, is the bound it then waits for: control.send gives up past it.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(stack.run_dir / "control.sock"))
        sock.sendall(b'{"command": "rollback", "options": {"to": 9}}\n')
        answers = [json.loads(line) for line in sock.makefile("rb")]
    # At once from the control thread, then again as the main loop starts it (after any request queued before).
    assert [answer.keys() for answer in answers[:2]] == [{"within"}, {"within"}], answers
    assert answers[0]["within"] > 60, answers
    assert len(answers) == 3 and answers[2]["ok"] is False, answers
    assert answers[2]["error"].startswith("release 9 does not exist under "), answers


def test_a_canary_takes_its_share_until_promoted_or_rolled_back(stack: UpStack) -> None:
    write_version(stack.root, "2")
    canary = flaskprod(stack.root, "deploy", "--canary", "25")
    assert canary.returncode == 0, canary.stderr
    assert "nginx reloaded: it sends requests to release 1, release 2 25%" in canary.stderr
    seen = versions(stack, 200)
    # nginx's weighted round robin, kept by each of its workers: a quarter, give or take what they split.
    assert set(seen) == {"1", "2"} and 30 <= seen["2"] <= 70, seen
    conf = (stack.run_dir / "nginx.conf").read_text()
    # Release 1 through the serving link this reload's config took (the other one: see deploy.switch).
    assert f"server unix:{stack.run_dir}/serving-1.sock weight=75 fail_timeout=0;" in conf
    assert (stack.run_dir / "serving-1.sock").readlink() == Path("app-1.sock")
    assert f"server unix:{stack.run_dir}/app-2.sock weight=25 fail_timeout=0;" in conf

    busy = flaskprod(stack.root, "deploy")
    assert busy.returncode == 1
    assert busy.stderr.startswith("Error: release 2 runs as a canary with 25% of the requests: ")
    assert busy.stderr.count("\n") == 1
    # --to names no canary: it was ignored, and the canary stopped as a plain rollback stops it.
    aimed = flaskprod(stack.root, "rollback", "--to", "1")
    assert (aimed.returncode, aimed.stderr) == (1, (
        "Error: release 2 runs as a canary: `flaskprod rollback` stops it and release 1 serves on; then "
        "`flaskprod rollback --to 1`\n"
    ))
    assert set(versions(stack, 40)) == {"1", "2"}

    # Rolled back, the canary stops and release 1 takes everything again.
    dropped = flaskprod(stack.root, "rollback")
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == "canary release 2 stopped; release 1 serves every request\n"
    assert versions(stack, 20) == {"1": 20}

    # Promoted, release 3 takes everything and release 1 is drained.
    write_version(stack.root, "3")
    assert flaskprod(stack.root, "deploy", "--canary", "10").returncode == 0
    loader = Loader(stack.port, threads=4, max_requests=60000, max_seconds=60).start()
    promoted = flaskprod(stack.root, "deploy", "--promote")
    outcomes = loader.stop()
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout == "release 3 serves every request; `flaskprod rollback` returns to 1\n"
    assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)
    assert versions(stack, 20) == {"3": 20}
    assert "weight=" not in (stack.run_dir / "nginx.conf").read_text()


def test_a_release_that_cannot_start_never_gets_a_request(stack: UpStack) -> None:
    write_version(stack.root, "2", broken=True)
    loader = Loader(stack.port, threads=4, max_requests=60000, max_seconds=60).start()
    failed = flaskprod(stack.root, "deploy")
    outcomes = loader.stop()
    assert failed.returncode == 1
    error = failed.stderr.splitlines()[-1]
    assert error == (
        "Error: release 2 did not start: its app server exited with status 2 (flaskprod serve refused to start it): "
        "error while importing 'app': RuntimeError: release 2 cannot start: DATABASE_URL is missing; "
        "release 1 still serves"
    )
    assert "RuntimeError: release 2 cannot start: DATABASE_URL is missing" in stack.stderr()
    assert loader.count("ok") == len(outcomes) > 20, summary(outcomes)
    assert versions(stack, 10) == {"1": 10}
    assert not (stack.run_dir / "app-2.sock").exists()
    # It never served: it is gone, so it neither counts towards release.keep nor is a rollback's target; nor does
    # its folder stay behind (it did, empty, after every failed deploy).
    assert not (stack.run_dir / "releases" / "2").exists()

    write_version(stack.root, "3")
    fixed = flaskprod(stack.root, "deploy")
    assert fixed.returncode == 0, fixed.stderr
    assert fixed.stdout == "release 3 serves every request; `flaskprod rollback` returns to 1\n"
    assert versions(stack, 10) == {"3": 10}
    assert released(stack) == ["1", "3"]
    # Release 1's app server stopped: its drain file went with it (each deploy left one, for ever).
    assert drain_files(stack) == []


def released(stack: UpStack) -> list[str]:
    """The folders under the run dir's releases/."""
    return sorted(path.name for path in (stack.run_dir / "releases").iterdir() if not path.name.startswith("."))


def drain_files(stack: UpStack) -> list[str]:
    return sorted(path.name for path in stack.run_dir.glob("draining-*"))


def test_a_release_whose_nginx_config_nginx_refuses_is_stopped_and_removed(tmp_path: Path) -> None:
    # Its app server started and was ready; then nginx refused the config it ships (a body limit past nginx's
    # range). Before, that app server ran on and the release stayed, a rollback target that could not start.
    write_version(tmp_path, "1")
    stack = start_up(tmp_path, "uwsgi", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        write_version(tmp_path, "2")
        with (tmp_path / "app.py").open("a") as app:
            app.write('\napp.config["MAX_CONTENT_LENGTH"] = 10**30\n')
        failed = flaskprod(tmp_path, "deploy")
        assert failed.returncode == 1
        error = failed.stderr.splitlines()[-1]
        assert '"client_max_body_size" directive invalid value' in error, failed.stderr
        assert error.endswith("; release 1 still serves"), error
        assert versions(stack, 5) == {"1": 5}
        assert not (stack.run_dir / "app-2.sock").exists()
        assert not (stack.run_dir / "releases" / "2").exists()
        assert len([command for command in children_commands(stack) if "flaskprod serve" in command]) == 1
        refused = flaskprod(tmp_path, "rollback", "--to", "2")
        assert refused.returncode == 1 and "release 2" in refused.stderr, refused.stderr
    finally:
        stop(stack)


def children_commands(stack: UpStack) -> list[str]:
    pids = children_of(stack.proc.pid)
    return [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode() for pid in pids]


def test_keep_bounds_the_releases_on_disk(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    (tmp_path / "flaskprod.toml").write_text("[release]\nkeep = 2\n")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        for version in "234":
            write_version(tmp_path, version)
            result = flaskprod(tmp_path, "deploy")
            assert result.returncode == 0, result.stderr
        assert "flaskprod deploy: deleted release 2 (release.keep = 2)" in result.stderr
        assert sorted(p.name for p in (stack.run_dir / "releases").iterdir()) == ["3", "4"]
        assert stack.get("/version").text == "4"
        # Three releases drained and stopped: none left its drain file.
        assert drain_files(stack) == []
    finally:
        stop(stack)


def test_keep_never_deletes_the_release_rollback_returns_to(tmp_path: Path) -> None:
    # Rolled back to release 1 on purpose, then deployed: before, release 1 was deleted as the oldest past keep in
    # the same output that named it rollback's target, and rollback went to release 2.
    write_version(tmp_path, "1")
    (tmp_path / "flaskprod.toml").write_text("[release]\nkeep = 2\n")
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        write_version(tmp_path, "2")
        assert flaskprod(tmp_path, "deploy").returncode == 0
        assert flaskprod(tmp_path, "rollback").returncode == 0
        write_version(tmp_path, "3")
        deployed = flaskprod(tmp_path, "deploy")
        assert deployed.stdout == "release 3 serves every request; `flaskprod rollback` returns to 1\n", deployed
        assert "deleted release 1" not in deployed.stderr
        back = flaskprod(tmp_path, "rollback")
        assert back.stdout == "rolled back: release 1 serves every request (release 3 is kept)\n", back
        assert stack.get("/version").text == "1"
    finally:
        stop(stack)


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    nothing = flaskprod(tmp_path, "deploy")
    assert nothing.returncode == 2
    assert nothing.stderr == (
        f"Error: no flaskprod up is running with proxy.run_dir {tmp_path}/.flaskprod/run: start it with "
        "`flaskprod up`, or run this where its flaskprod.toml is\n"
    )
    both = flaskprod(tmp_path, "deploy", "--canary", "5", "--promote")
    assert both.returncode == 2
    assert both.stderr == "Error: --canary starts a canary and --promote ends one: give one of them\n"
    out_of_range = flaskprod(tmp_path, "deploy", "--canary", "100")
    assert out_of_range.returncode == 2 and "100 is not in the range 1<=x<=99" in out_of_range.stderr


@contextmanager
def fake_up(answer: Callable[[socket.socket], None]) -> Iterator[Path]:
    """A control socket in a short-named folder (yielded) whose one connection answer() serves, as `up` would not."""
    root = Path(tempfile.mkdtemp(prefix="fpctl-", dir="/tmp"))  # a unix socket's path must be short
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(root / "control.sock"))
    listener.listen(1)

    def serve_once() -> None:
        conn, _ = listener.accept()
        with conn:
            answer(conn)

    server = threading.Thread(target=serve_once, daemon=True)
    server.start()
    try:
        yield root
    finally:
        server.join(timeout=10)
        listener.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        # Reset, or a broken pipe when the close comes before the request is sent.
        (None, "dropped the connection ("),
        (b"hello\n", "answered 'hello', which is no answer of flaskprod up's: is it another program's socket"),
        (b'{"ok": true}\n', "answered '{\"ok\": true}', which is no answer of flaskprod up's"),
    ],
)
def test_a_socket_that_answers_unlike_up_is_a_one_line_error(answer: bytes | None, said: str) -> None:
    """Each was a traceback: ConnectionResetError, JSONDecodeError, KeyError 'message'."""

    def answer_once(conn: socket.socket) -> None:
        if answer is None:
            return  # closed with the request unread: the client's read is reset
        conn.recv(65536)
        conn.sendall(answer)

    with fake_up(answer_once) as root:
        result = flaskprod(root, "deploy", "--set", f"proxy.run_dir={root}")
    assert result.returncode == 2
    assert result.stderr.startswith("Error: ") and f"{root}/control.sock" in result.stderr
    assert said in result.stderr and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        ([], "took the deploy but did not answer within 0.3s: is it stopped (kill -STOP, a debugger), or is the "
             "socket another program's?"),
        ([b'{"within": 1.0}\n'],
         "said the deploy would end within 1s, and 2s later it had not: it cancels the deploy unless its release "
         "was ready; its log says why"),
    ],
    ids=["never", "not-by-when-it-said"],
)
def test_an_up_that_goes_silent_is_given_up_on(monkeypatch: pytest.MonkeyPatch, answers: list[bytes],
                                               said: str) -> None:
    """A deploy to a stopped up (kill -STOP) waited forever."""
    monkeypatch.setattr(control, "FIRST_ANSWER", 0.3)
    monkeypatch.setattr(control, "PAST_WITHIN", 0.5)
    done = threading.Event()

    def answer_then_hang(conn: socket.socket) -> None:
        conn.recv(65536)
        for answer in answers:
            conn.sendall(answer)
        done.wait(10)

    with fake_up(answer_then_hang) as root:
        started = time.monotonic()
        try:
            with pytest.raises(ServerError) as raised:
                list(control.send(root / "control.sock", "deploy", {}))
        finally:
            done.set()
    assert str(raised.value) == f"flaskprod up at {root}/control.sock {said}"
    assert time.monotonic() - started < 5


def test_an_up_from_before_the_bound_is_waited_for_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """An up started before an upgrade answers without a bound: once it has answered, the client waits on."""
    monkeypatch.setattr(control, "FIRST_ANSWER", 0.3)

    def old_up(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b'{"log": "copied 3 files of /srv/app into release 2"}\n')
        time.sleep(1.0)  # longer than FIRST_ANSWER
        conn.sendall(b'{"ok": true, "message": "release 2 serves every request"}\n')

    with fake_up(old_up) as root:
        answers = list(control.send(root / "control.sock", "deploy", {}))
    assert answers[-1] == {"ok": True, "message": "release 2 serves every request"}, answers


def test_a_project_too_big_to_copy_is_refused_before_anything_starts(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "video.bin").write_bytes(b"\0" * (2 * 2**20))
    result = subprocess.run(
        [str(BIN / "flaskprod"), "up", "app:app", "--port", str(free_port()), "--set", "release.max_mb=1"],
        cwd=tmp_path, env=up_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr == textwrap.dedent(f"""\
        Error: the project {tmp_path} is 2 MiB to copy into a release, over release.max_mb = 1: add what holds the \
most (media/ 2 MiB) to release.exclude, or raise release.max_mb
        """)
    assert not (tmp_path / ".flaskprod" / "run" / "releases" / "1").exists()


def test_a_deploy_replaces_a_release_whose_app_server_keeps_crashing(tmp_path: Path) -> None:
    # Release 1 fails to load while the marker exists: killed, its app server crashes on every restart (with
    # backoff), which is when an operator deploys the fix. The new release does not crash and must take over.
    marker = tmp_path.parent / f"{tmp_path.name}-crash"
    write_version(tmp_path, "1")
    (tmp_path / "app.py").write_text(
        (tmp_path / "app.py").read_text()
        + f'\nif VERSION == "1" and os.path.exists({str(marker)!r}):\n    raise RuntimeError("release 1 crashes")\n'
    )
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        marker.touch()
        [server] = [pid for pid in children_of(stack.proc.pid) if b"serve" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        os.kill(server, signal.SIGKILL)
        wait_for(lambda: "restarting in 2s" in stack.stderr(), timeout=30, what="release 1 to crash on restart")

        write_version(tmp_path, "2")
        deployed = flaskprod(tmp_path, "deploy")
        assert deployed.returncode == 0, deployed.stderr + stack.output()
        assert deployed.stdout == "release 2 serves every request; `flaskprod rollback` returns to 1\n"
        assert versions(stack, 10) == {"2": 10}
    finally:
        marker.unlink(missing_ok=True)
        stop(stack)


def test_a_deploy_ships_the_config_file_to_the_new_release_as_to_nginx(tmp_path: Path) -> None:
    write_version(tmp_path, "1")
    (tmp_path / "flaskprod.toml").write_text('[proxy]\nmax_body_size = "1M"\n')
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    body = b"x" * (3 * 2**20)
    try:
        stack.wait_ready()
        assert requests.post(stack.url("/upload"), data=body, timeout=15).status_code == 413

        (tmp_path / "flaskprod.toml").write_text('[proxy]\nmax_body_size = "20M"\n')
        write_version(tmp_path, "2")
        deployed = flaskprod(tmp_path, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        # nginx's client_max_body_size and the app's MAX_CONTENT_LENGTH both from the edited file.
        answer = requests.post(stack.url("/upload"), data=body, timeout=15)
        assert (answer.status_code, answer.text) == (200, '{"size":3145728}\n')

        # A release that cannot start leaves the config its running release was started with.
        (tmp_path / "flaskprod.toml").write_text('[proxy]\nmax_body_size = "2M"\n')
        write_version(tmp_path, "3", broken=True)
        assert flaskprod(tmp_path, "deploy").returncode == 1
        assert (stack.run_dir / "flaskprod.toml").read_text() == '[proxy]\nmax_body_size = "20M"\n'
    finally:
        stop(stack)


def serving_release_2(root: Path) -> UpStack:
    """up on Gunicorn serving version 1 as release 1, then version 2 deployed as release 2."""
    write_version(root, "1")
    stack = start_up(root, "gunicorn", free_port(), "--workers", "1")
    try:
        stack.wait_ready()
        write_version(root, "2")
        deployed = flaskprod(root, "deploy")
        assert deployed.returncode == 0, deployed.stderr + stack.output()
    except BaseException:
        stop(stack)  # the caller's finally never runs: it has no stack yet
        raise
    return stack


def test_rollback_returns_to_the_release_the_deploy_replaced(tmp_path: Path) -> None:
    stack = serving_release_2(tmp_path)
    try:
        first = flaskprod(tmp_path, "rollback")
        assert first.stdout == "rolled back: release 1 serves every request (release 2 is kept)\n"
        # Release 2 was rolled back from; the next deploy replaces 1, and says rollback returns there.
        write_version(tmp_path, "3")
        deployed = flaskprod(tmp_path, "deploy")
        assert deployed.stdout == "release 3 serves every request; `flaskprod rollback` returns to 1\n"
        rolled = flaskprod(tmp_path, "rollback")
        assert rolled.returncode == 0, rolled.stderr
        assert rolled.stdout == "rolled back: release 1 serves every request (release 3 is kept)\n"
        assert versions(stack, 6) == {"1": 6}
    finally:
        stop(stack)


def test_rollback_needs_only_the_run_dir_from_a_broken_flaskprod_toml(tmp_path: Path) -> None:
    stack = serving_release_2(tmp_path)
    try:
        config = tmp_path / "flaskprod.toml"
        config.write_text("[server]\nthreads = 0\n")  # wrong elsewhere: proxy.run_dir is still the default
        first = flaskprod(tmp_path, "rollback")
        assert first.returncode == 0, first.stderr
        assert first.stdout == "rolled back: release 1 serves every request (release 2 is kept)\n"
        config.write_text("[server\n")  # does not parse: nothing to read proxy.run_dir from
        unread = flaskprod(tmp_path, "rollback")
        assert unread.returncode == 2
        assert unread.stderr.startswith(f"Error: {config}: not valid TOML: ")
        fix = "; to rollback meanwhile, name the running up's run dir: --set proxy.run_dir=DIR\n"
        assert unread.stderr.endswith(fix)
        named = flaskprod(tmp_path, "rollback", "--to", "2", "--set", "proxy.run_dir=.flaskprod/run")
        assert named.returncode == 0, named.stderr
        assert versions(stack, 4) == {"2": 4}
        config.unlink()
        (tmp_path / "file").write_text("")
        inside_a_file = flaskprod(tmp_path, "rollback", "--set", "proxy.run_dir=file/run")
        assert inside_a_file.returncode == 2
        assert inside_a_file.stderr == (
            f"Error: proxy.run_dir {tmp_path}/file/run is a file or under one, not where a `flaskprod up` runs: "
            "name its run dir, e.g. --set proxy.run_dir=.flaskprod/run\n"
        )
    finally:
        stop(stack)


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_keep_alive_clients_lose_no_request_to_deploys_that_need_no_reload(tmp_path: Path, kind: str) -> None:
    """A reload of nginx closes every client's idle keep-alive connection, and a request sent on one at that moment
    is reset (1 to 8 a switch with 8 such clients). A deploy that changes nothing else in nginx.conf repoints the
    link nginx connects through alone; the connections nginx keeps to Gunicorn's threaded workers end within
    nginx's keepalive_time, before the old app server stops."""
    write_version(tmp_path, "1")
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--threads", "4")
    try:
        stack.wait_ready()
        nginx = int((stack.run_dir / "nginx.pid").read_text())
        workers = children_of(nginx)
        stop_clients = threading.Event()
        answers: Counter[str] = Counter()

        def client() -> None:
            with requests.Session() as session:  # one connection, kept alive from request to request
                for _ in range(20000):  # bounded: the deploys below end it much sooner
                    if stop_clients.is_set():
                        return
                    try:
                        answers[session.get(stack.url("/version"), timeout=10).text] += 1
                    except requests.RequestException as exc:
                        answers[type(exc).__name__] += 1

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        try:
            for version in ("2", "3", "4"):
                write_version(stack.root, version)
                deployed = flaskprod(stack.root, "deploy")
                assert deployed.returncode == 0, deployed.stderr
                assert "(its link repointed, no reload)" in deployed.stderr
                wait_for(lambda v=version: answers[v] > 20, timeout=10, what=f"release {version} answering")
        finally:
            stop_clients.set()
            for thread in clients:
                thread.join(30)
        assert set(answers) == {"1", "2", "3", "4"}, answers  # every answer a version: no error among them
        assert children_of(nginx) == workers  # the same nginx workers throughout: it was never reloaded
        assert stack.get("/static/version.txt").text == "static 4\n"
    finally:
        stop(stack)


def test_requests_queued_at_the_old_app_server_are_served_before_it_stops(tmp_path: Path) -> None:
    """Without a reload, what nginx connected to the old app server before the link moved waits in that one's
    queue: it is served there before the old app server is asked to stop, which would reset it (nginx's 502)."""
    write_version(tmp_path, "1")
    stack = start_up(tmp_path, "uwsgi", free_port(), "--workers", "1", "--threads", "1")
    try:
        stack.wait_ready()
        write_version(stack.root, "2")
        results: list[tuple[int | None, str]] = []

        def fetch(path: str) -> None:
            answer = stack.get(path, timeout=30)
            results.append((answer.status_code, answer.text))

        # The one worker is busy for 4 s: the next three requests wait in release 1's queue through the switch.
        threads = [threading.Thread(target=fetch, args=("/slow?s=4",))]
        threads[0].start()
        time.sleep(0.5)  # the slow request in the worker first
        for _ in range(3):
            threads.append(threading.Thread(target=fetch, args=("/version",)))
            threads[-1].start()
        deployed = flaskprod(stack.root, "deploy")
        for thread in threads:
            thread.join(30)
        assert deployed.returncode == 0, deployed.stderr
        assert "(its link repointed, no reload)" in deployed.stderr
        assert sorted(status for status, _ in results) == [200] * 4, results
        assert sorted(body for _, body in results if body in ("1", "2")) == ["1", "1", "1"]  # release 1 served them
    finally:
        stop(stack)
