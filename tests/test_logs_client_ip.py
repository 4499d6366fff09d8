"""The access line's client.ip is an address the client had, or left out: a unix socket's peer has none."""

from __future__ import annotations

import json
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import server_env
from tests.support import BIN, stop_group, wait_for

pytestmark = pytest.mark.integration

APP = """
from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/hello")
def hello():
    return "hi"
"""


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A folder for the socket whose path stays under the 107 bytes a unix socket's may have."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="fp-ip-") as name:
        yield Path(name)


def get_over_unix(path: Path, target: str) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(f"GET {target} HTTP/1.0\r\nHost: localhost\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def access_lines(stdout: Path) -> list[dict[str, Any]]:
    records = [json.loads(line) for line in stdout.read_text().splitlines() if line.startswith("{")]
    return [record for record in records if record.get("url", {}).get("path") == "/hello"]


@pytest.mark.parametrize("server_kind", ["gunicorn", "uwsgi"])
def test_a_request_over_a_unix_socket_with_no_trusted_proxy_has_no_client_ip(
    tmp_path: Path, short_dir: Path, server_kind: str
) -> None:
    """With proxy.trusted_hops = 0 nothing names the client, and the peer of a unix socket has no IP address:
    Gunicorn gave REMOTE_ADDR "" and the line said "client": {"ip": ""}, uWSGI "0.0.0.0", an address no client
    had. ECS's client.ip is an IP address, so the line leaves client out."""
    (tmp_path / "app.py").write_text(APP)
    bind = short_dir / "app.sock"
    stdout = tmp_path / "stdout.log"
    with stdout.open("wb") as out, (tmp_path / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            [str(BIN / "flaskprod"), "serve", "app:app", "--server", server_kind, "--workers", "1",
             "--bind", f"unix:{bind}", "--set", "proxy.trusted_hops=0", "--set", "logging.access_log=true"],
            cwd=tmp_path, env=server_env(), stdout=out, stderr=err, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(lambda: bind.is_socket() or proc.poll() is not None, timeout=60, what="the app server's socket")
        assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
        answer = wait_for(lambda: get_over_unix(bind, "/hello") if bind.is_socket() else None, timeout=30,
                          what="an answer")  # fmt: skip
        assert answer.split(b"\r\n", 1)[0].endswith(b"200 OK") and answer.endswith(b"hi"), answer
        [line] = wait_for(lambda: access_lines(stdout), timeout=10, what="the access line")
    finally:
        stop_group(proc)
    assert "client" not in line, line
    assert line["message"].startswith("GET /hello 200 ") and line["http"]["request"]["id"], line
