"""`flaskprod up` in a terminal: its children share its session, unless the terminal would stop them.

Linux schedules a session as one group (autogroup), so the stack runs in one; a terminal set to
`stty tostop` stops a background process group at its first write, so there each child gets a
session of its own instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import signal
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from flaskprod.stack.children import terminal_stops_background_writes
from tests.support import free_port, stop_group, wait_for
from tests.upstack import children_of, one_request, processes_under, start_up, stop, up_args, up_env, write_app

pytestmark = pytest.mark.integration


def test_tostop_is_read_from_the_terminal_and_nothing_else(tmp_path: Path) -> None:
    primary, replica = pty.openpty()
    try:
        attrs = termios.tcgetattr(replica)
        attrs[3] &= ~termios.TOSTOP
        termios.tcsetattr(replica, termios.TCSANOW, attrs)
        assert not terminal_stops_background_writes((replica,))
        attrs[3] |= termios.TOSTOP
        termios.tcsetattr(replica, termios.TCSANOW, attrs)
        assert terminal_stops_background_writes((replica,))
        with (tmp_path / "log").open("w") as file:
            assert not terminal_stops_background_writes((file.fileno(),))
    finally:
        os.close(primary)
        os.close(replica)


class Terminal:
    """A pseudo-terminal whose output is read as it comes, so no writer ever blocks."""

    def __init__(self) -> None:
        self.primary, self.replica = pty.openpty()
        self.output = bytearray()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while chunk := os.read(self.primary, 65536):
                self.output += chunk
        except OSError:  # closed at teardown
            pass

    def text(self) -> str:
        return self.output.decode(errors="replace")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal()
    try:
        yield term
    finally:
        os.close(term.replica)
        os.close(term.primary)


def _as_controlling_terminal() -> None:
    fcntl.ioctl(1, termios.TIOCSCTTY, 0)  # runs in the new session: stdout becomes its terminal


@pytest.mark.parametrize("tostop", [False, True], ids=["plain", "tostop"])
def test_up_serves_from_a_terminal(tmp_path: Path, terminal: Terminal, tostop: bool) -> None:
    primary, replica = terminal.primary, terminal.replica
    attrs = termios.tcgetattr(replica)
    attrs[3] = attrs[3] | termios.TOSTOP if tostop else attrs[3] & ~termios.TOSTOP
    termios.tcsetattr(replica, termios.TCSANOW, attrs)
    write_app(tmp_path)
    port = free_port()
    up = subprocess.Popen(
        up_args("uwsgi", port, "--workers", "2"),
        cwd=tmp_path,
        env=up_env(),
        stdin=subprocess.DEVNULL,
        stdout=replica,
        stderr=replica,
        start_new_session=True,
        preexec_fn=_as_controlling_terminal,
    )
    kids: list[int] = []
    try:
        # In up's session under tostop, uWSGI stopped at its first line here and never answered.
        wait_for(lambda: _answers(port), timeout=60, what="flaskprod up answering from a terminal")
        # up's own readiness check comes after the first answer: Ctrl-C before it exits 1, as it should.
        wait_for(lambda: "is ready" in terminal.text(), timeout=30, what="up's table")
        assert os.tcgetpgrp(primary) == up.pid  # up is the terminal's foreground group
        kids = children_of(up.pid)
        assert len(kids) >= 2, kids
        sessions = {os.getsid(pid) for pid in kids}
        if tostop:
            assert sessions == set(kids)  # each its own: no terminal to stop it
        else:
            assert sessions == {up.pid}  # up's: one scheduling group
        # Ctrl-C typed in the terminal reaches up's group alone; up stops the children in order.
        os.write(primary, b"\x03")
        assert up.wait(60) == 0, terminal.text()
        wait_for(lambda: not [pid for pid in kids if Path(f"/proc/{pid}").exists()], timeout=10, what="no child left")
    finally:
        kids = kids or children_of(up.pid)
        stop_group(up, timeout=40)
        for pid in kids:  # each child leads a process group; one stopped by the terminal ignores SIGTERM
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def _answers(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/api/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("both", [False, True], ids=["stdout", "stdout-and-stderr"])
@pytest.mark.parametrize("kind", ["uwsgi", "gunicorn"])
def test_a_stream_whose_reader_left_cuts_the_table_short_not_the_stack(tmp_path: Path, kind: str, both: bool) -> None:
    """`flaskprod up | grep -m1 ready` (or `2>&1 |`): the table's BrokenPipeError stopped nginx and the app server
    and exited 1, with nothing on stderr."""
    write_app(tmp_path)
    port = free_port()
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before up writes its first line
    log = tmp_path / "up.log"
    with log.open("wb") as err:
        up = subprocess.Popen(
            up_args(kind, port, "--workers", "1"),
            cwd=tmp_path,
            env=up_env(),
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=write_end if both else err,
            start_new_session=True,
        )
    os.close(write_end)
    try:
        if both:  # nothing to read: serving, and still running once its table would have been written
            wait_for(lambda: _answers(port), timeout=60, what="flaskprod up answering")
            deadline = time.monotonic() + 5  # its readiness check and table come moments after the first answer
            while up.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        else:
            wait_for(lambda: "stdout was closed by its reader" in log.read_text(), timeout=60, what="up's warning")
        assert up.poll() is None, log.read_text()
        assert _answers(port)
        up.send_signal(signal.SIGTERM)
        assert up.wait(60) == 0, log.read_text()
    finally:
        stop_group(up, timeout=40)


# Sleeps as it loads, where named: in up's probe (which loads the app once to learn its static folders and routes),
# or in the app server.
SLOW_TO_LOAD = """
import sys
import time

from flask import Flask

from flaskprod import Production

if sys.argv[0].endswith("probe.py") == {in_probe}:
    open({marker!r}, "w").close()
    time.sleep(30)
app = Flask(__name__)
Production(app)
"""


@pytest.mark.parametrize("in_probe", [True, False], ids=["probe", "app-server"])
def test_ctrl_c_before_ready_stops_at_once_and_exits_0(tmp_path: Path, in_probe: bool) -> None:
    """While up's probe loaded the app, Ctrl-C waited for the load to end (up to proxy.ready_timeout, 60 s); and
    a stop asked for before ready exited 1, as if the start had failed."""
    write_app(tmp_path, SLOW_TO_LOAD.format(in_probe=in_probe, marker=str(tmp_path / "loading")))
    log = tmp_path / "up.log"
    with log.open("wb") as err:
        up = subprocess.Popen(up_args("gunicorn", free_port(), "--workers", "1"), cwd=tmp_path, env=up_env(),
                              stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)  # fmt: skip
    try:
        wait_for(lambda: (tmp_path / "loading").exists(), timeout=30, what="the app loading")
        os.killpg(up.pid, signal.SIGINT)  # as a terminal sends Ctrl-C
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            up.wait(15)
        took, code = time.monotonic() - started, up.poll()
        assert code == 0 and took < 10, f"exit {code} {took:.1f} s after Ctrl-C\n{log.read_text()}"
        said = "stopped while the app loaded" if in_probe else "stopped before the app was ready"
        assert said in log.read_text() and "Traceback" not in log.read_text(), log.read_text()
        assert not processes_under(tmp_path), processes_under(tmp_path)
    finally:
        stop_group(up, timeout=40)


@pytest.mark.parametrize(("kind", "drain"), [("uwsgi", 0), ("gunicorn", 0), ("gunicorn", 10)],
                         ids=["uwsgi", "gunicorn", "gunicorn-in-the-drain-delay"])
def test_a_second_ctrl_c_cuts_a_graceful_stop_short(tmp_path: Path, kind: str, drain: int) -> None:
    """The first Ctrl-C lets requests in flight finish (up to graceful_timeout, 30 s); a second one did nothing, or
    during server.drain_delay cut the delay only, and the graceful stop after it waited for the request."""
    write_app(tmp_path)
    stack = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", f"server.drain_delay={drain}")
    try:
        stack.wait_ready()
        slow = threading.Thread(target=one_request, args=(stack.port, "/slow?s=25", 40), daemon=True)
        slow.start()
        time.sleep(1)  # the request is in the app server's hands
        os.killpg(stack.proc.pid, signal.SIGINT)
        wait_for(lambda: "shutting down gracefully" in stack.output(), timeout=10, what="the graceful stop")
        time.sleep(1)
        os.killpg(stack.proc.pid, signal.SIGINT)
        started = time.monotonic()
        with contextlib.suppress(subprocess.TimeoutExpired):
            stack.proc.wait(15)
        took, code = time.monotonic() - started, stack.proc.poll()
        assert code == 0 and took < 8, f"exit {code} {took:.1f} s after the second Ctrl-C\n{stack.output()}"
        assert "told to stop again" in stack.output() and "Traceback" not in stack.output(), stack.output()
        assert not processes_under(tmp_path), processes_under(tmp_path)
    finally:
        stop(stack)
