"""The metrics responder (servers/responder.py): the metrics path, from the metric files alone, beside the workers."""

from __future__ import annotations

import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from flaskprod.discovery import AppRef
from flaskprod.errors import ServerError, SpecError
from flaskprod.runtime.metrics import REQUESTS, ROUTE_LABELS, files_exposition
from flaskprod.servers.responder import IO_TIMEOUT, Responder, start_responder
from flaskprod.servers.settings import server_settings
from flaskprod.sizing import derive, responder_bind
from flaskprod.spec import load_spec
from tests.support import free_port


def count_requests(directory: Path, pid: int, endpoint: str, count: float) -> None:
    """What a worker with pid writes once it answered count requests on endpoint."""
    name, doc = REQUESTS
    key = mmap_key(name, name + "_total", [*ROUTE_LABELS, "status"], ["GET", endpoint, "200"], doc)
    values = MmapedDict(str(directory / f"counter_{pid}-http1.db"))  # type: ignore[no-untyped-call]
    values.write_value(key, count, 0.0)
    values.close()


def ask(address: str | tuple[str, int], request: bytes) -> tuple[bytes, bytes]:
    """(head, body) of the answer to a raw request."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)  # past the responder's IO_TIMEOUT, for the stalled client's test
        sock.connect(address)
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, body


def get(address: str | tuple[str, int], path: str = "/metrics", method: str = "GET") -> tuple[bytes, bytes]:
    return ask(address, f"{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    path = tmp_path / "metrics"
    path.mkdir()
    count_requests(path, 101, "/api/ping", 3)
    count_requests(path, 102, "/api/ping", 4)
    return path


@pytest.fixture
def responder(tmp_path: Path, directory: Path) -> Iterator[Responder]:
    running = Responder(f"unix:{tmp_path}/app.prom", path="/metrics", directory=str(directory)).start()
    yield running
    running.close()


def test_answers_the_metrics_path_with_the_apps_bytes_and_content_type(
    tmp_path: Path, directory: Path, responder: Responder
) -> None:
    head, body = get(str(tmp_path / "app.prom"))
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert f"Content-Type: {CONTENT_TYPE_LATEST}".encode() in head.split(b"\r\n")
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert body == files_exposition(str(directory))  # what the app's own metrics path renders
    assert b'http_requests_total{endpoint="/api/ping",method="GET",status="200"} 7.0' in body
    # A query string changes nothing; a percent-encoded path is the same path, as the app would read it.
    assert get(str(tmp_path / "app.prom"), "/metrics?x=1")[1] == body
    assert get(str(tmp_path / "app.prom"), "/%6detrics")[1] == body
    assert get(str(tmp_path / "app.prom"), "//metrics")[1] == body  # nginx's location matched it, slashes merged
    # Read again at each scrape.
    count_requests(directory, 103, "/api/ping", 1)
    assert b"status=\"200\"} 8.0" in get(str(tmp_path / "app.prom"))[1]


def test_head_has_the_length_and_no_body(tmp_path: Path, directory: Path, responder: Responder) -> None:
    head, body = get(str(tmp_path / "app.prom"), method="HEAD")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert f"Content-Length: {len(files_exposition(str(directory)))}".encode() in head
    assert body == b""


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET / HTTP/1.0\r\n\r\n", b"404"),
        (b"GET /metrics/ HTTP/1.0\r\n\r\n", b"404"),
        (b"GET /releases/1/metrics HTTP/1.0\r\n\r\n", b"404"),  # nginx rewrites a release's path to the app's
        (b"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", b"405"),
        (b"nonsense\r\n\r\n", b"400"),
    ],
)
def test_anything_else_is_refused(tmp_path: Path, responder: Responder, request_bytes: bytes, status: bytes) -> None:
    head, _ = ask(str(tmp_path / "app.prom"), request_bytes)
    assert head.split(b" ")[1] == status
    if status == b"405":
        assert b"Allow: GET, HEAD" in head
    # And it keeps answering.
    assert get(str(tmp_path / "app.prom"))[0].startswith(b"HTTP/1.1 200")


def test_a_client_that_stalls_holds_it_up_no_longer_than_its_timeout(tmp_path: Path, responder: Responder) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as idle:
        idle.connect(str(tmp_path / "app.prom"))
        idle.sendall(b"GET /metrics HTTP/1.0\r\n")  # never finished
        started = time.monotonic()
        head, _ = get(str(tmp_path / "app.prom"))
        assert head.startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < IO_TIMEOUT + 1  # then it takes the next connection


def test_its_unix_socket_is_for_owner_and_group_and_goes_with_it(tmp_path: Path, directory: Path) -> None:
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(tmp_path / "app.prom"))  # a stale socket nothing answers on
    running = Responder(f"unix:{tmp_path}/app.prom", path="/metrics", directory=str(directory)).start()
    assert stat.S_IMODE(os.stat(tmp_path / "app.prom").st_mode) == 0o660
    running.close()
    assert not (tmp_path / "app.prom").exists()


def test_a_tcp_bind_and_a_bind_that_fails(directory: Path) -> None:
    port = free_port()
    running = Responder(f"127.0.0.1:{port}", path="/metrics", directory=str(directory)).start()
    try:
        assert get(("127.0.0.1", port))[0].startswith(b"HTTP/1.1 200")
        with pytest.raises(ServerError, match=rf"^cannot listen on 127.0.0.1:{port} for the metrics responder: "):
            start_responder({"metrics_bind": f"127.0.0.1:{port}", "metrics_path": "/metrics"}, str(directory))
    finally:
        running.close()
    with pytest.raises(ConnectionRefusedError):
        get(("127.0.0.1", port))


def test_a_forked_child_runs_none_of_it_and_keeps_no_copy_of_its_listener(directory: Path) -> None:
    """Gunicorn forks its workers from the arbiter the responder runs in: a worker must not answer scrapes, nor
    keep the listener open once the arbiter has closed it (connections would queue where nobody accepts)."""
    port = free_port()
    running = Responder(f"127.0.0.1:{port}", path="/metrics", directory=str(directory)).start()
    child = os.fork()
    if child == 0:
        try:
            closed = running._listener.fileno() == -1
            time.sleep(2)  # alive while the parent closes
        finally:
            os._exit(0 if closed else 1)
    try:
        assert get(("127.0.0.1", port))[0].startswith(b"HTTP/1.1 200")
        running.close()
        with pytest.raises(ConnectionRefusedError):
            get(("127.0.0.1", port))
    finally:
        _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_serve_answers_scrapes_beside_its_bind_only_when_told(tmp_path: Path) -> None:
    def settings(**flags: object) -> dict[str, object]:
        spec = load_spec(environ={}, config=None, root="/nonexistent", flags=flags)
        app = AppRef(module="app", name="app", path=str(tmp_path))
        return server_settings(spec, derive(spec), app)

    assert settings()["metrics_bind"] is None  # facing clients: the app's own metrics path answers
    on = {"monitoring.metrics_responder": "true"}
    assert settings(**on)["metrics_bind"] == "127.0.0.1:8001"
    assert settings(**on, **{"server.bind": "unix:/run/shop/app.sock"})["metrics_bind"] == "unix:/run/shop/app.prom"
    assert settings(**on, **{"monitoring.metrics": "false"})["metrics_bind"] is None


def test_the_responders_address_is_derived_beside_the_app_servers() -> None:
    assert responder_bind("unix:/srv/run/app-3.1.sock") == "unix:/srv/run/app-3.1.prom"
    assert responder_bind("unix:/srv/run/app") == "unix:/srv/run/app.prom"
    # No longer than the app server's socket: a run directory its socket fits takes the responder's too.
    assert len(responder_bind("unix:/x/app.sock")) == len("unix:/x/app.sock")
    assert responder_bind("0.0.0.0:8000") == "0.0.0.0:8001"
    assert responder_bind("app:9000") == "app:9001"
    assert responder_bind("[::1]:8000") == "[::1]:8001"
    with pytest.raises(SpecError, match="port 65535 leaves none after it"):
        responder_bind("0.0.0.0:65535")
