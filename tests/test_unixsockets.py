"""A unix socket's queue and open connections, as the kernel's sock_diag reports them."""

from __future__ import annotations

import socket
from pathlib import Path

from flaskprod.stack import unixsockets
from flaskprod.stack.nginx import version
from flaskprod.stack.up import KEEPALIVE_TIME_SINCE
from tests.buildkit import tool


def test_connections_not_yet_accepted_are_counted_and_an_accepted_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(16)
        assert unixsockets.waiting(path) == 0
        clients = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        try:
            for client in clients:
                client.connect(str(path))
            assert unixsockets.waiting(path) == 3 and unixsockets.accepted(path) == 0
            accepted, _ = server.accept()
            assert unixsockets.waiting(path) == 2 and unixsockets.accepted(path) == 1
            accepted.close()
            assert unixsockets.accepted(path) == 0
        finally:
            for client in clients:
                client.close()


def test_a_path_nothing_listens_on_has_no_queue(tmp_path: Path) -> None:
    assert unixsockets.waiting(tmp_path / "nothing.sock") is None
    with socket.socket(socket.AF_UNIX) as bound:  # bound, not listening: no queue either
        bound.bind(str(tmp_path / "bound.sock"))
        assert unixsockets.waiting(tmp_path / "bound.sock") is None


def test_nginx_says_its_version_which_decides_whether_kept_connections_can_be_bounded() -> None:
    found = version(tool("nginx"))
    assert len(found) == 3 and found[0] == 1
    assert found >= KEEPALIVE_TIME_SINCE  # Debian 12's nginx is 1.22: up bounds them there
