"""Clients that hold connections open by sending their request headers a byte at a time (slowloris)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator


class SlowClients:
    """Keep `count` sockets open to port, each sending one header byte every `interval` seconds.

    A server that gives each connection a worker is blocked by them; one that buffers headers
    (nginx, an event loop) is not. A socket the server closes is replaced, so the pressure lasts.
    """

    def __init__(self, port: int, host_header: str, count: int, interval: float = 0.5) -> None:
        self.port = port
        self.count = count
        self.interval = interval
        # Long enough never to finish within a run: the server must not get a complete request.
        self.request = (f"GET /api/ping HTTP/1.1\r\nHost: {host_header}\r\nX-Padding: " + "a" * 4096).encode()
        self.stop = threading.Event()
        self.sockets: list[tuple[socket.socket, int]] = []
        self.connections_opened = 0
        self.thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def _connect(self) -> tuple[socket.socket, int] | None:
        try:
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        except OSError:
            return None
        sock.setblocking(False)
        return sock, 0

    def _send_next_byte(self, sock: socket.socket, sent: int) -> tuple[socket.socket, int] | None:
        try:
            sock.send(self.request[sent : sent + 1])
        except (BlockingIOError, InterruptedError):
            return sock, sent
        except OSError:
            sock.close()
            return None
        return sock, min(sent + 1, len(self.request) - 1)

    def _trickle(self) -> None:
        while not self.stop.is_set():
            kept: list[tuple[socket.socket, int]] = []
            for sock, sent in self.sockets:
                step = self._send_next_byte(sock, sent)
                if step is not None:
                    kept.append(step)
            while len(kept) < self.count and not self.stop.is_set():
                new = self._connect()
                if new is None:
                    break
                self.connections_opened += 1
                kept.append(new)
            self.sockets = kept
            self.stop.wait(self.interval)

    def __enter__(self) -> SlowClients:
        self.thread.start()
        # Let them all connect and start sending before the good clients arrive.
        self.stop.wait(min(2.0, self.interval * 3))
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        for sock, _ in self.sockets:
            with contextlib.suppress(OSError):
                sock.close()


@contextlib.contextmanager
def holding(port: int, host_header: str, count: int) -> Iterator[SlowClients | None]:
    if count <= 0:
        yield None
        return
    with SlowClients(port, host_header, count) as clients:
        yield clients
