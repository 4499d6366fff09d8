"""A child `up` restarts is said to be restarted once it serves again: nginx once it listens on its port."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.support import free_port, wait_for
from tests.upstack import start_up, stop, write_app

pytestmark = pytest.mark.integration


def bound(holder: socket.socket, port: int) -> bool:
    try:
        holder.bind(("127.0.0.1", port))
    except OSError:
        return False
    return True


def test_nginx_is_said_to_be_restarted_only_once_it_listens(tmp_path: Path) -> None:
    write_app(tmp_path)
    port = free_port()
    stack = start_up(tmp_path, "gunicorn", port, "--workers", "1")
    try:
        stack.wait_ready()
        master = int((stack.run_dir / "nginx.pid").read_text())
        with socket.socket() as holder:
            holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            os.killpg(master, signal.SIGKILL)  # its master and workers: the port is free as they die
            wait_for(lambda: bound(holder, port), timeout=10, interval=0.01, what="the port nginx let go")
            holder.listen()
            # nginx is started again while another process holds its port: it cannot bind, and exits.
            killed = f"nginx (pid {master}) was killed by SIGKILL (signal 9); restarting in 0.5s"
            wait_for(lambda: killed in stack.stderr(), timeout=10, what="nginx's death")
            wait_for(
                lambda: "nginx (pid" in stack.stderr().split(killed, 1)[1], timeout=30, what="the restart's failure"
            )
            assert "exited with status 1" in stack.stderr().split(killed, 1)[1], stack.output()
            assert "nginx restarted" not in stack.stderr(), stack.output()
        wait_for(lambda: "nginx restarted" in stack.stderr(), timeout=60, what="nginx restarted")
        assert stack.get("/api/ping", timeout=5).status_code == 200
        assert int((stack.run_dir / "nginx.pid").read_text()) != master
    finally:
        stop(stack)
