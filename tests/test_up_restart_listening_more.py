"""A child `up` restarts is said to be restarted once it serves again, beside nginx and the app server (see
test_up_restart_listening.py): Prometheus and Alertmanager once they listen on their ports, PostgreSQL once its
postmaster.pid says ready."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.test_up_postgres import APP as DB_APP
from tests.test_up_restart_listening import bound
from tests.upstack import UpStack, children_of, start_up, stop, write_app

pytestmark = pytest.mark.integration

# Each child's name in up's log, and the program it runs (Debian's Alertmanager).
PROGRAMS = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager"}


def child_named(stack: UpStack, program: str) -> int:
    """The pid of up's child running program (by its basename)."""
    for pid in children_of(stack.proc.pid):
        with contextlib.suppress(OSError):
            if Path(Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()).name == program:
                return pid
    raise AssertionError(f"no {program} under up:\n{stack.output()}")


def after(text: str, marker: str) -> str:
    return text.split(marker, 1)[1] if marker in text else ""


def test_prometheus_and_alertmanager_are_said_to_be_restarted_only_once_they_listen(tmp_path: Path) -> None:
    write_app(tmp_path)
    ports = {"prometheus": free_port(), "alertmanager": free_port()}
    stack = start_up(
        tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "monitoring",
        "--set", f"monitoring.prometheus_port={ports['prometheus']}", "--set", f"monitoring.metrics_port={free_port()}",
        "--set", f"monitoring.alertmanager_port={ports['alertmanager']}",
    )  # fmt: skip
    try:
        stack.wait_ready()
        pids = {name: child_named(stack, program) for name, program in PROGRAMS.items()}
        with contextlib.ExitStack() as holders:
            for name, pid in pids.items():
                holder = holders.enter_context(socket.socket())
                holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                os.kill(pid, signal.SIGKILL)
                let_go = f"the port {name} let go"
                wait_for(lambda h=holder, n=name: bound(h, ports[n]), timeout=10, interval=0.01, what=let_go)
                holder.listen()
            # Each is started again while another process holds its port: it cannot bind, and exits.
            for name, pid in pids.items():
                killed = f"{name} (pid {pid}) was killed by SIGKILL (signal 9); restarting in 0.5s"
                wait_for(lambda k=killed: k in stack.stderr(), timeout=10, what=f"{name}'s death")
                wait_for(
                    lambda k=killed: "exited with status" in after(stack.stderr(), k), timeout=30,
                    what=f"the failure of {name}'s restart",
                )  # fmt: skip
                assert f"{name} restarted" not in stack.stderr(), stack.output()
        for name in pids:
            wait_for(lambda n=name: f"{n} restarted" in stack.stderr(), timeout=60, what=f"{name} restarted")
            [line] = [line for line in stack.stderr().splitlines() if f"{name} restarted" in line]
            pid = int(line.split("(pid ", 1)[1].split(")", 1)[0])
            with socket.create_connection(("127.0.0.1", ports[name]), timeout=5):
                pass  # it listens, the process the line names
            assert pid == child_named(stack, PROGRAMS[name])
    finally:
        stop(stack)


def test_postgres_is_said_to_be_restarted_only_once_its_postmaster_pid_says_ready(
    tmp_path: Path, local_dir: Path
) -> None:
    write_app(tmp_path, DB_APP)
    data = local_dir / "pg"
    stack = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--with", "postgres",
                     "--set", f"database.local_dir={data}")  # fmt: skip
    try:
        stack.wait_ready()
        master = int((data / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
        socket_lock = data / "socket" / ".s.PGSQL.5432.lock"
        holder = subprocess.Popen(["sleep", "300"], user=(data / "socket").stat().st_uid)
        try:
            os.killpg(master, signal.SIGKILL)  # the server and its backends
            # Its restart finds its socket's lock file naming another live process of its user, and exits.
            socket_lock.write_text(f"{holder.pid}\n")
            killed = f"postgres (pid {master}) was killed by SIGKILL (signal 9); restarting in 0.5s"
            wait_for(lambda: killed in stack.stderr(), timeout=10, what="postgres's death")
            wait_for(lambda: "postgres (pid" in after(stack.stderr(), killed), timeout=30, what="the restart's failure")
            assert "exited with status 1" in after(stack.stderr(), killed), stack.output()
            assert "postgres restarted" not in stack.stderr(), stack.output()
        finally:
            holder.kill()
            holder.wait(10)
        wait_for(lambda: "postgres restarted" in stack.stderr(), timeout=60, what="postgres restarted")
        assert stack.get("/db", timeout=15).json()["user"] == tmp_path.name.replace("-", "_")
    finally:
        stop(stack)
