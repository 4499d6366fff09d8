"""The metrics responder: the process that supervises the workers answers scrapes itself, outside the worker pool.

A scrape passed to the app server waited in its listen backlog behind every queued request, then for a worker
thread: under an overload it timed out, Prometheus read the app as down (AppDown, critical) and Alertmanager hid
the warnings that named the cause. In multi-process mode the exposition is read from the workers' metric files
alone (runtime.metrics.files_exposition), so any process renders the same bytes: Gunicorn's arbiter, or the serve
process above uWSGI, answers it on a listener of its own beside the app server's (sizing.responder_bind), which
nginx's metrics listener passes scrapes to (monitoring.metrics_responder).

One daemon thread answers one connection at a time, with Connection: close: nginx alone connects here, a scrape
every few seconds. In Gunicorn's arbiter it lives beside forks: it takes no lock a worker could inherit held (a
registry of its own for each answer, logging only a failure, whose locks Python renews in a child), and a forked
child closes its copies of the sockets at once (os.register_at_fork), so no worker keeps the listener open.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import threading
from typing import Any
from urllib.parse import unquote_to_bytes

from prometheus_client import CONTENT_TYPE_LATEST

from ..errors import ServerError
from ..runtime.metrics import files_exposition
from .common import parse_bind

__all__ = ["Responder", "start_responder"]

# Seconds nginx gets to send a request head and read the answer: it sends the head whole, at once.
IO_TIMEOUT = 5.0
# The longest request head read; a scrape's is a few hundred bytes.
HEAD_LIMIT = 8192
BACKLOG = 64

log = logging.getLogger(__name__)

# This process's open responders: a forked child (a Gunicorn worker) closes its copies of their sockets.
_open: list[Responder] = []


def _forget_in_child() -> None:
    for responder in _open:
        responder.forget()
    _open.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class Responder:
    """Answers GET and HEAD of path on bind with every worker's metrics, read from directory; 404 elsewhere."""

    def __init__(self, bind: str, *, path: str, directory: str) -> None:
        self.bind = bind
        self.path = path.encode()
        self.directory = directory
        address = parse_bind(bind)
        self._unix_path = address if isinstance(address, str) else None
        self._listener = _listen(address)
        self._connection: socket.socket | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        _open.append(self)

    def start(self) -> Responder:
        self._thread = threading.Thread(target=self._serve, name="flaskprod-metrics-responder", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop answering; a unix socket is removed. From the process that made it, not a forked child."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread's accept()
        if self._thread is not None:
            self._thread.join(IO_TIMEOUT)
        self._listener.close()
        if self._unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._unix_path)
        with contextlib.suppress(ValueError):
            _open.remove(self)

    def forget(self) -> None:
        """In a forked child, where the thread does not run: close the copies of the sockets, remove nothing."""
        self._stopping = True
        for sock in (self._listener, self._connection):
            if sock is not None:
                sock.close()

    def _serve(self) -> None:
        # Signals stay the main thread's: uWSGI's supervisor and Gunicorn's arbiter wait for them there.
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        while not self._stopping:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                if self._stopping:
                    return
                continue  # a connection reset before it was accepted
            self._connection = connection
            try:
                connection.settimeout(IO_TIMEOUT)
                connection.sendall(self.answer(_read_head(connection)))
            except OSError:
                pass  # nginx gave up on it: the next scrape is another connection
            finally:
                self._connection = None
                connection.close()

    def answer(self, head: bytes | None) -> bytes:
        """The whole response to a request head (None: none came whole)."""
        request_line = head.split(b"\r\n", 1)[0] if head else b""
        words = request_line.split()
        if len(words) != 3:
            return _response(400, b"bad request\n")
        method, target = words[0], words[1]
        # Slashes merged, as nginx merges them to pick the location that sent the request here (merge_slashes).
        if _SLASHES.sub(b"/", unquote_to_bytes(target.split(b"?", 1)[0])) != self.path:
            return _response(404, b"not found\n")
        if method not in (b"GET", b"HEAD"):
            return _response(405, b"method not allowed\n", extra=b"Allow: GET, HEAD\r\n")
        try:
            body = files_exposition(self.directory)
        except Exception:
            log.exception("The metrics responder could not read the metric files in %s", self.directory)
            return _response(500, b"the metric files could not be read\n")
        return _response(200, body, content_type=CONTENT_TYPE_LATEST.encode(), head_only=method == b"HEAD")


_SLASHES = re.compile(rb"/{2,}")
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 405: b"Method Not Allowed", 500: b"Internal Error"}


def start_responder(settings: dict[str, Any], directory: str) -> Responder:
    """A running responder at the settings' metrics_bind, for their metrics_path; a ServerError when it cannot
    listen (serve's check_bind found the address free a moment before)."""
    bind = settings["metrics_bind"]
    try:
        responder = Responder(bind, path=settings["metrics_path"], directory=directory)
    except OSError as exc:
        raise ServerError(f"cannot listen on {bind} for the metrics responder: {exc.strerror or exc}") from None
    return responder.start()


def _response(
    status: int,
    body: bytes,
    *,
    content_type: bytes = b"text/plain; charset=utf-8",
    extra: bytes = b"",
    head_only: bool = False,
) -> bytes:
    head = (
        b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\n%sConnection: close\r\n\r\n"
        % (status, _REASONS[status], content_type, len(body), extra)
    )
    return head if head_only else head + body


def _read_head(connection: socket.socket) -> bytes | None:
    """The request head up to its blank line; None when the peer closed first or it is over HEAD_LIMIT."""
    head = b""
    while b"\r\n\r\n" not in head:
        if len(head) >= HEAD_LIMIT:
            return None
        chunk = connection.recv(HEAD_LIMIT - len(head))
        if not chunk:
            return None
        head += chunk
    return head


def _listen(address: tuple[str, int] | str) -> socket.socket:
    """A listening socket at address; a unix one 0660, as the app server's: nginx reaches it through its group."""
    if isinstance(address, str):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(address)  # one a killed server left: serve's check_bind found nothing answering there
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(address)
            os.chmod(address, 0o660)  # before listen(): nothing connects while it is any wider
        except OSError:
            sock.close()
            raise
    else:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(*address, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError:
            sock.close()
            raise
    sock.listen(BACKLOG)
    return sock
