"""`python -m flaskprod.servers.healthcheck`: exit 0 when the app server answers its health path with 200.

Container health checks and probes run it inside the app's image. It speaks what the server speaks
on server.bind (HTTP, or the uwsgi protocol nginx uses), so one image serves every target, and it
needs no curl or wget in the image.
"""

from __future__ import annotations

import socket
import struct
import sys

from ..errors import FlaskprodError
from ..spec import Spec, load_spec
from .common import loopback_for, parse_bind

# The name the request carries: nginx is not in the way, and the app does not check it.
HOST = "localhost"


def _connect(bind: str, timeout: float) -> socket.socket:
    address = parse_bind(bind)
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(address)
        return sock
    host, port = address
    # A wildcard is where the server listens, not an address to call: ask it on loopback.
    return socket.create_connection((loopback_for(host), port), timeout=timeout)


def _uwsgi_packet(path: str, host: str) -> bytes:
    """A GET as nginx's uwsgi_pass sends it: a 4-byte header, then the CGI variables length-prefixed."""
    variables = {
        "REQUEST_METHOD": "GET",
        "REQUEST_URI": path,
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_NAME": HOST,  # Host (HTTP_HOST) is what the app reads
        "SERVER_PORT": "80",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
    }
    body = b"".join(
        struct.pack("<H", len(k)) + k + struct.pack("<H", len(v)) + v
        for k, v in ((k.encode(), v.encode()) for k, v in variables.items())
    )
    return struct.pack("<BHB", 0, len(body), 0) + body


def request_bytes(protocol: str, path: str, host: str = HOST) -> bytes:
    if protocol == "uwsgi":
        return _uwsgi_packet(path, host)
    return f"GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()


def status_of(spec: Spec, timeout: float = 3.0) -> int:
    """The HTTP status the app server answers the health path with; OSError when it cannot be reached."""
    return status_at(spec.server.bind, spec.server.protocol, spec.monitoring.health_path, timeout)


def status_at(bind: str, protocol: str, path: str, timeout: float = 3.0, *, host: str = HOST) -> int:
    """The HTTP status of a GET for path from the app server on bind, in its protocol, naming host (one the app
    routes: its SERVER_NAME, when it has one); OSError when unreachable."""
    with _connect(bind, timeout) as sock:
        sock.sendall(request_bytes(protocol, path, host))
        head = b""
        while b"\r\n" not in head and len(head) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[1].isdigit():
        raise OSError(f"no HTTP status line in the answer: {head[:80]!r}")
    return int(status_line[1])


def main() -> int:
    try:
        spec = load_spec()
    except (FlaskprodError, OSError) as exc:  # a config file that cannot be read is no reason for a traceback
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if not spec.monitoring.health:
        print("unhealthy: monitoring.health is off, so there is no health path to ask", file=sys.stderr)
        return 1
    try:
        status = status_of(spec)
    except FlaskprodError as exc:
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"unhealthy: {spec.server.bind}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: {spec.monitoring.health_path} answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
