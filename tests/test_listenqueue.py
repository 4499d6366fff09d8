"""The connections waiting in a listening unix socket's queue, as the kernel's sock_diag reports them."""

from __future__ import annotations

import socket
from pathlib import Path

from flaskprod.stack import listenqueue


def test_connections_not_yet_accepted_are_counted_and_an_accepted_one_is_not(tmp_path: Path) -> None:
    path = tmp_path / "app.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        server.listen(16)
        assert listenqueue.waiting(path) == 0
        clients = [socket.socket(socket.AF_UNIX) for _ in range(3)]
        try:
            for client in clients:
                client.connect(str(path))
            assert listenqueue.waiting(path) == 3
            accepted, _ = server.accept()
            accepted.close()
            assert listenqueue.waiting(path) == 2
        finally:
            for client in clients:
                client.close()


def test_a_path_nothing_listens_on_has_no_queue(tmp_path: Path) -> None:
    assert listenqueue.waiting(tmp_path / "nothing.sock") is None
    with socket.socket(socket.AF_UNIX) as bound:  # bound, not listening: no queue either
        bound.bind(str(tmp_path / "bound.sock"))
        assert listenqueue.waiting(tmp_path / "bound.sock") is None
