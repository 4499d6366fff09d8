"""An app with WebSocket routes (flask-sock): served by Gunicorn, which hands a view the client's connection, with
nginx passing the handshake on, past the request deadline and nginx's read timeout; uWSGI and Gunicorn's sync
worker, which cannot hold them, refused before anything is made."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from simple_websocket import Client

from flaskprod.servers.probe import websocket_routes
from flaskprod.servers.websockets import websocket_problem
from flaskprod.spec import Spec
from tests.conftest import server_env
from tests.support import BIN, free_port
from tests.upstack import start_up, stop

SOCK_APP = """
from flask import Flask, jsonify
from flask_sock import Sock

from flaskprod import Production

app = Flask(__name__)
Production(app)
sock = Sock(app)


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())


@sock.route("/rooms/<name>")
def room(ws, name):
    ws.send(name)
    ws.receive()  # until the client closes: a close of the server's own could reset the connection before it read


@app.get("/api/ping")
def ping():
    return jsonify(ok=True)
"""


def project(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(SOCK_APP)
    (root / "requirements.txt").write_text("flask\nflask-sock\nflaskprod\n")
    return root


def flaskprod(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=server_env(), capture_output=True, text=True, timeout=90
    )


def test_the_probe_names_the_websocket_routes() -> None:
    from flask import Flask

    app = Flask(__name__)
    app.add_url_rule("/ws/<room>", "room", lambda room: "", websocket=True)
    app.add_url_rule("/page", "page", lambda: "")
    assert websocket_routes(app) == ["/ws/<room>"]


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"server.kind": "gunicorn"}, None),
        ({"server.kind": "gunicorn", "server.worker_class": "gevent", "server.threads": 1}, None),
        ({"server.kind": "uwsgi"}, 'uWSGI cannot hand the client\'s connection: serve it with Gunicorn'),
        ({"server.kind": "gunicorn", "server.threads": 1}, "Gunicorn's sync worker would hold a whole process"),
    ],
)
def test_which_servers_can_hold_them(settings: dict[str, object], refused: str | None) -> None:
    problem = websocket_problem(Spec().replace(**settings), ["/echo", "/a", "/b", "/c"])
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem
        assert "(/echo, /a, /b and 1 more)" in problem
    assert websocket_problem(Spec().replace(**{"server.kind": "uwsgi"}), []) is None


def test_build_picks_gunicorn_and_has_nginx_pass_the_handshake(tmp_path: Path) -> None:
    root = project(tmp_path / "app")
    built = flaskprod(root, "build", "--target", "k8s", "--out", "deploy/k8s")
    assert built.returncode == 0, built.stderr
    deployment = yaml.safe_load((root / "deploy/k8s/deployment.yaml").read_text())
    [app] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    assert {"name": "FLASKPROD_SERVER__KIND", "value": "gunicorn"} in app["env"]
    conf = (root / "deploy/k8s/nginx/nginx.conf").read_text()
    assert "proxy_set_header Upgrade $http_upgrade;" in conf
    assert "proxy_set_header Connection $flaskprod_connection;" in conf
    assert "uwsgi_pass" not in conf


@pytest.mark.parametrize(
    "args",
    [
        ["build", "--target", "compose-uwsgi", "--out", "deploy/x"],
        ["build", "--target", "k8s", "--server", "uwsgi", "--out", "deploy/x"],
        ["build", "--target", "compose", "--threads", "1", "--out", "deploy/x"],
    ],
    ids=["uwsgi-target", "uwsgi-chosen", "sync-worker"],
)
def test_build_refuses_a_server_that_cannot_hold_them_and_writes_nothing(tmp_path: Path, args: list[str]) -> None:
    root = project(tmp_path / "app")
    refused = flaskprod(root, *args)
    assert refused.returncode == 2, refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("Error: the app has WebSocket routes (/echo, /rooms/<name>)"), line
    assert not (root / "deploy").exists()


def test_serve_refuses_uwsgi_in_one_line(tmp_path: Path) -> None:
    root = project(tmp_path / "app")
    refused = flaskprod(root, "serve", "app:app", "--server", "uwsgi", "--print-config")
    assert refused.returncode != 0
    assert refused.stderr.splitlines()[-1].startswith("Error: the app has WebSocket routes"), refused.stderr


@pytest.mark.integration
def test_up_serves_them_with_gunicorn_through_nginx_past_every_timeout(tmp_path: Path) -> None:
    """server.kind auto: Gunicorn, not uWSGI. A conversation outlasts the request deadline (3 s) and stays quiet
    past nginx's read timeout (5 s): the pings Production(app) has flask-sock send keep it open."""
    root = project(tmp_path / "app")
    running = start_up(root, "auto", free_port(), "--workers", "1", "--timeout", "3")
    try:
        running.wait_ready()
        assert "the app has WebSocket routes (/echo, /rooms/<name>): Gunicorn serves it" in running.stderr()
        ws = Client.connect(f"ws://127.0.0.1:{running.port}/echo")
        try:
            ws.send("hello")
            assert ws.receive(timeout=5) == "hello"
            time.sleep(7)
            ws.send("still here")
            assert ws.receive(timeout=5) == "still here"
        finally:
            ws.close()
        room = Client.connect(f"ws://127.0.0.1:{running.port}/rooms/blue")
        try:
            assert room.receive(timeout=5) == "blue"
        finally:
            room.close()
        assert running.get("/api/ping").json() == {"ok": True}  # plain requests still keep their connection
    finally:
        stop(running)


@pytest.mark.integration
def test_up_refuses_uwsgi_for_them_before_serving(tmp_path: Path) -> None:
    root = project(tmp_path / "app")
    running = start_up(root, "uwsgi", free_port())
    try:
        assert running.proc.wait(timeout=60) == 2
        assert running.stderr().splitlines()[-1] == (
            "Error: the app has WebSocket routes (/echo, /rooms/<name>), which uWSGI cannot hand the client's "
            'connection: serve it with Gunicorn (server.kind = "gunicorn", or --server gunicorn)'
        )
    finally:
        stop(running)
