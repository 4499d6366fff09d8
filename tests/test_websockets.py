"""An app with WebSocket routes (flask-sock): served by Gunicorn, which hands a view the client's connection, with
nginx passing the handshake on, past the request deadline and nginx's read timeout; uWSGI and Gunicorn's sync
worker, which cannot hold them, refused before anything is made."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import socketio
import yaml
from simple_websocket import Client

from flaskprod import discovery
from flaskprod.servers.probe import AppInfo, probe, socketio_path, websocket_routes
from flaskprod.servers.websockets import (
    AUTO_CONVERSATION_THREADS,
    for_conversations,
    socketio_mode_where,
    websocket_problem,
)
from flaskprod.sizing import derive
from flaskprod.spec import Spec
from tests.conftest import server_env
from tests.support import BIN, free_port, readable, wait_for
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


SOCKETIO_APP = """
from flask import Flask
from flask_socketio import SocketIO, emit

from flaskprod import Production

app = Flask(__name__)
Production(app)
socketio = SocketIO(app, async_mode="threading")


@socketio.on("hello")
def hello(name):
    emit("reply", f"hello {name}")
"""


def on(mode: str | None) -> str:
    """SOCKETIO_APP on Flask-SocketIO's async_mode `mode`; None: the one it picks, eventlet's (the tests install
    eventlet and gevent, as an app's requirements often do)."""
    return SOCKETIO_APP.replace('async_mode="threading"', f"async_mode={mode!r}")


def project(root: Path, app: str = SOCK_APP, requirements: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(app)
    (root / "requirements.txt").write_text("flask\nflask-sock\nflask-socketio\nflaskprod\n" + requirements)
    return root


def socketio_reply(port: int, transport: str, name: str) -> str | None:
    """What the Socket.IO app answers a client that says hello over transport alone (polling: a request per
    message, each of which must reach the process that holds the session), or None within 5 s."""
    replies: list[str] = []
    client = socketio.Client(reconnection=False)
    client.on("reply", replies.append)
    client.connect(f"http://127.0.0.1:{port}", transports=[transport], wait_timeout=5)
    try:
        assert client.transport() == transport
        for _ in range(3):  # three round trips: with polling, each its own requests
            count = len(replies)
            client.emit("hello", name)
            deadline = time.monotonic() + 5
            while len(replies) == count and time.monotonic() < deadline:
                time.sleep(0.02)
        return replies[-1] if len(replies) == 3 else None
    finally:
        client.disconnect()


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


def test_the_probe_finds_flask_socketios_path() -> None:
    from flask import Flask
    from flask_socketio import SocketIO

    moved = Flask(__name__)
    SocketIO(moved, path="/rt/io", async_mode="threading")
    assert socketio_path(moved) == "/rt/io/"
    assert socketio_path(Flask(__name__)) is None


@pytest.mark.parametrize(("mode", "loaded", "given"), [(None, "eventlet", None), ("gevent", "gevent", "gevent")])
def test_the_probe_reads_flask_socketios_async_mode(
    tmp_path: Path, mode: str | None, loaded: str, given: str | None
) -> None:
    """In the probe's own interpreter, as a server loads the app: eventlet imported here would warn at every fork
    of the test process after it."""
    root = project(tmp_path, on(mode))
    info = probe(discovery.resolve("app:app", root), server_env(), bound=30)
    assert (info.socketio_mode, info.socketio_mode_set) == (loaded, given)  # None: the first installed


@pytest.mark.parametrize(
    ("loaded", "given", "installed", "image"),
    [
        ("eventlet", None, {"flask-socketio"}, "threading"),  # installed here, not in the image
        ("threading", None, {"flask-socketio", "eventlet", "gevent"}, "eventlet"),
        ("threading", None, {"flask-socketio", "gevent-websocket"}, "gevent"),
        ("eventlet", "eventlet", {"flask-socketio"}, "eventlet"),  # named: the image fails to import without it
        ("gevent", None, None, "gevent"),  # requirements that cannot all be named: as it loaded here
        (None, None, {"eventlet"}, None),  # no Flask-SocketIO
    ],
)
def test_the_image_runs_flask_socketio_on_what_its_requirements_install(
    loaded: str | None, given: str | None, installed: set[str] | None, image: str | None
) -> None:
    info = AppInfo(
        rss_mb=None,
        static_folder=None,
        static_url_path=None,
        import_string="app:app",
        socketio_path="/socket.io/" if loaded else None,
        socketio_mode=loaded,
        socketio_mode_set=given,
    )
    assert socketio_mode_where(info, None if installed is None else frozenset(installed)) == image


ON_GEVENT = {"server.kind": "gunicorn", "server.workers": 1, "server.worker_class": "gevent"}


@pytest.mark.parametrize(
    ("settings", "refused"),
    [
        ({"server.kind": "gunicorn"}, None),
        ({"server.kind": "gunicorn", "server.worker_class": "gevent", "server.threads": 1}, None),
        ({"server.kind": "uwsgi"}, 'uWSGI cannot hand the client\'s connection: serve it with Gunicorn'),
        ({"server.kind": "gunicorn", "server.threads": 1}, "Gunicorn's sync worker would hold a whole process"),
        ({"server.kind": "gunicorn", "server.workers": 1, "socketio": "threading"}, None),
        ({"server.kind": "gunicorn", "server.workers": 2, "socketio": "threading"}, "fail with 400 (Invalid session)"),
        ({"server.kind": "gunicorn", "socketio": "threading"}, "fail with 400 (Invalid session)"),  # auto: at least 2
        ({**ON_GEVENT, "socketio": "threading"}, None),
        ({**ON_GEVENT, "socketio": "gevent"}, None),
        (
            {"server.kind": "gunicorn", "server.workers": 1, "socketio": "gevent"},
            "runs on gevent (async_mode 'gevent', which SocketIO() picks when gevent is installed), and Gunicorn's "
            "gthread worker does not run gevent's loop",
        ),
        (
            {**ON_GEVENT, "socketio": "eventlet"},
            "runs on eventlet (async_mode 'eventlet', which SocketIO() picks when eventlet is installed), whose own "
            "server flaskprod does not run (Gunicorn has no eventlet worker)",
        ),
    ],
)
def test_which_servers_can_hold_them(settings: dict[str, object], refused: str | None) -> None:
    socketio = settings.get("socketio")
    assert socketio is None or isinstance(socketio, str)
    spec = Spec().replace(**{key: value for key, value in settings.items() if key != "socketio"})
    problem = websocket_problem(spec, ["/echo", "/a", "/b", "/c"], socketio=socketio)
    if refused is None:
        assert problem is None
    else:
        assert problem is not None and refused in problem
        assert socketio or "(/echo, /a, /b and 1 more)" in problem
    assert websocket_problem(Spec().replace(**{"server.kind": "uwsgi"}), []) is None


@pytest.mark.parametrize(
    ("settings", "paths", "threads"),
    [
        ({}, ["/echo"], 12 + AUTO_CONVERSATION_THREADS),
        ({}, [], 12),  # a plain app's workers as the benchmarks chose them
        ({"server.conversation_threads": 20}, ["/echo"], 32),
        ({"server.conversation_threads": 20}, [], 32),  # an app that streams events asks for them itself
        ({"server.conversation_threads": 0}, ["/echo"], 12),
        ({"server.threads": 4}, ["/echo"], 4 + AUTO_CONVERSATION_THREADS),
        ({"server.threads": 1, "server.worker_class": "gevent"}, ["/echo"], 1),  # greenlets, not threads
    ],
)
def test_each_conversation_gets_a_thread_of_its_own(
    settings: dict[str, object], paths: list[str], threads: int
) -> None:
    spec = for_conversations(Spec().replace(**settings), paths, socketio=None)
    derived = derive(spec)
    assert derived.threads == threads
    assert derived.pool.size == spec.server.threads  # one connection per request thread: none for conversations


@pytest.mark.parametrize(
    ("mode", "worker_class", "chosen"),
    [("threading", "auto", "gthread"), ("gevent", "auto", "gevent"), ("gevent", "gthread", "gthread")],
)
def test_flask_socketio_on_gevent_gets_gevents_worker_where_auto_chooses(
    mode: str, worker_class: str, chosen: str
) -> None:
    spec = for_conversations(Spec().replace(**{"server.worker_class": worker_class}), ["/socket.io/"], socketio=mode)
    derived = derive(spec)
    assert (derived.workers, derived.worker_class) == (1, chosen)
    # greenlets, not threads: no threads added for the conversations
    assert derived.threads == (12 if chosen == "gevent" else 12 + AUTO_CONVERSATION_THREADS)


def test_serve_runs_gunicorn_with_threads_for_the_conversations(tmp_path: Path) -> None:
    root = project(tmp_path / "app")
    printed = flaskprod(root, "serve", "app:app", "--print-config")
    assert printed.returncode == 0, printed.stderr
    settings = json.loads(printed.stdout)
    assert (settings["server"], settings["threads"]) == ("gunicorn", 12 + AUTO_CONVERSATION_THREADS)


def test_serve_runs_flask_socketio_on_gevent_with_gevents_worker_and_refuses_eventlet(tmp_path: Path) -> None:
    printed = flaskprod(project(tmp_path / "gevent", on("gevent")), "serve", "app:app", "--print-config")
    assert printed.returncode == 0, printed.stderr
    settings = json.loads(printed.stdout)
    assert (settings["server"], settings["workers"], settings["worker_class"]) == ("gunicorn", 1, "gevent")
    refused = flaskprod(project(tmp_path / "eventlet", on(None)), "serve", "app:app", "--print-config")
    assert refused.returncode != 0
    last = readable(refused.stderr).splitlines()[-1]  # serve's refusal is a JSON record on a pipe
    assert last.startswith("Error: the app's Flask-SocketIO runs on eventlet"), refused.stderr
    assert "Traceback" not in refused.stderr


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
    assert "keepalive " not in conf  # no connection kept to a worker whose threads conversations may all hold
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
    last = readable(refused.stderr).splitlines()[-1]  # serve's refusal is a JSON record on a pipe
    assert last.startswith("Error: the app has WebSocket routes"), refused.stderr


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
def test_up_holds_many_conversations_and_still_answers_requests(tmp_path: Path) -> None:
    """Each open conversation holds a thread: with only server.threads (2 x 12), the thirteenth on a worker waited
    until nginx answered 504 (timeout + 2 s), and so did every request that worker took next."""
    root = project(tmp_path / "app")
    running = start_up(root, "auto", free_port(), "--timeout", "3")
    conversations: list[Client] = []
    try:
        running.wait_ready()
        assert f"2 workers x {12 + AUTO_CONVERSATION_THREADS} threads" in running.stdout()
        assert f"{12 + AUTO_CONVERSATION_THREADS} threads a worker, as each open conversation holds one" in (
            running.stderr()
        )
        for n in range(40):
            ws = Client.connect(f"ws://127.0.0.1:{running.port}/echo")
            conversations.append(ws)
            ws.send(f"#{n}")
            assert ws.receive(timeout=5) == f"#{n}"
        for _ in range(10):
            assert running.get("/api/ping").json() == {"ok": True}
        first = conversations[0]
        first.send("first, again")
        assert first.receive(timeout=5) == "first, again"
    finally:
        for ws in conversations:
            ws.close()
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


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["threading", "gevent"])
def test_up_serves_flask_socketio_with_one_gunicorn_worker_polling_and_upgraded(tmp_path: Path, mode: str) -> None:
    """Flask-SocketIO's session lives in the process that opened it: auto runs one worker (with 2, a client's polls
    reached the other and failed), on Gunicorn, and nginx passes the upgrade on (without it, no WebSocket). On
    gevent, the worker is gevent's: on threads, no client got a reply, polling or upgraded."""
    root = project(tmp_path / "app", on(mode))
    running = start_up(root, "auto", free_port())
    try:
        running.wait_ready()
        assert "(/socket.io/): Gunicorn serves it, as uWSGI cannot hand them the client's connection; one worker" in (
            running.stderr()
        )
        if mode == "gevent":
            assert "; Gunicorn's gevent worker, as Flask-SocketIO runs on gevent here" in running.stderr()
            assert "gunicorn, 1 worker of greenlets (gevent" in running.stdout()
        else:
            assert "gunicorn, 1 worker x 112 threads (gthread" in running.stdout()
        assert socketio_reply(running.port, "polling", "poll") == "hello poll"
        assert socketio_reply(running.port, "websocket", "ws") == "hello ws"
    finally:
        stop(running)


@pytest.mark.integration
def test_up_refuses_flask_socketio_on_eventlet_before_serving(tmp_path: Path) -> None:
    """SocketIO() picks eventlet when it is installed; under Gunicorn's threads no client got a reply."""
    root = project(tmp_path / "app", on(None))
    running = start_up(root, "auto", free_port())
    try:
        assert running.proc.wait(timeout=60) == 2
        assert running.stderr().splitlines()[-1] == (
            "Error: the app's Flask-SocketIO runs on eventlet (async_mode 'eventlet', which SocketIO() picks when "
            "eventlet is installed), whose own server flaskprod does not run (Gunicorn has no eventlet worker): under "
            "Gunicorn's threads no client gets a reply; pass async_mode='threading' to SocketIO(), or uninstall "
            "eventlet (and leave it out of the requirements)"
        )
    finally:
        stop(running)


@pytest.mark.parametrize(
    ("app", "requirements", "refused"),
    [
        (None, "", None),  # eventlet installed here, not in the image: threading there
        (None, "eventlet\n", "Error: the app's Flask-SocketIO runs on eventlet (async_mode 'eventlet'"),
        (None, "gevent\n", None),
        ("gevent", "", "Error: the app gives SocketIO() async_mode='gevent', and requirements.txt does not install"),
    ],
    ids=["picked-threading", "picked-eventlet", "picked-gevent", "gevent-uninstalled"],
)
def test_build_runs_flask_socketio_on_what_the_image_installs(
    tmp_path: Path, app: str | None, requirements: str, refused: str | None
) -> None:
    root = project(tmp_path / "app", on(app), requirements)
    built = flaskprod(root, "build", "--target", "k8s", "--out", "deploy/k8s")
    if refused:
        assert built.returncode == 2, built.stderr
        assert built.stderr.splitlines()[-1].startswith(refused), built.stderr  # after the app's own warnings
        assert "Traceback" not in built.stderr
        assert not (root / "deploy").exists()
        return
    assert built.returncode == 0, built.stderr
    deployment = yaml.safe_load((root / "deploy/k8s/deployment.yaml").read_text())
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    gevent = {"name": "FLASKPROD_SERVER__WORKER_CLASS", "value": "gevent"}
    assert (gevent in container["env"]) == ("gevent" in requirements)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--workers", "2"], "keeps each client's session in the worker process that opened it, and Gunicorn"),
        (["--set", "deploy.replicas=3"], "deploy.replicas = 3 spreads a client's requests over that many containers"),
    ],
    ids=["workers", "replicas"],
)
def test_flask_socketio_on_more_than_one_process_is_refused(tmp_path: Path, args: list[str], named: str) -> None:
    root = project(tmp_path / "app", SOCKETIO_APP)
    refused = flaskprod(root, "build", "--target", "compose", *args, "--out", "deploy/x")
    assert refused.returncode == 2, refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("Error: the app uses Flask-SocketIO") and named in line, line
    assert not (root / "deploy").exists()


def test_flask_socketio_is_built_as_one_process(tmp_path: Path) -> None:
    """One worker, and one container where the replicas are left at their default: the load balancers in front
    would spread a client's polls over several."""
    root = project(tmp_path / "app", SOCKETIO_APP)
    for target in ("compose", "k8s"):
        built = flaskprod(root, "build", "--target", target, "--out", f"deploy/{target}")
        assert built.returncode == 0, built.stderr
    compose = yaml.safe_load((root / "deploy/compose/compose.yaml").read_text())
    assert compose["services"]["app"]["deploy"]["replicas"] == 1
    deployment = yaml.safe_load((root / "deploy/k8s/deployment.yaml").read_text())
    assert deployment["spec"]["replicas"] == 1
    assert not (root / "deploy/k8s/horizontalpodautoscaler.yaml").exists()  # which would scale it out again
    [app] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "app"]
    assert {"name": "FLASKPROD_SERVER__WORKERS", "value": "1"} in app["env"]
    assert {"name": "FLASKPROD_SERVER__KIND", "value": "gunicorn"} in app["env"]


@pytest.mark.integration
def test_a_deploy_with_conversations_open_drains_the_old_release_without_waiting_them_out(tmp_path: Path) -> None:
    """A conversation never ends on its own, and nginx keeps no connection to such an app, so after the switch up
    waits only for the old app server's queue, not for its connections with server.graceful_timeout on top (24 s
    here); the drain then lets the conversation go on until the graceful timeout, and a new one reaches the new
    release."""
    root = project(tmp_path / "app")
    running = start_up(root, "auto", free_port(), "--workers", "1", "--set", "server.graceful_timeout=24")
    try:
        running.wait_ready()
        ws = Client.connect(f"ws://127.0.0.1:{running.port}/echo")
        try:
            ws.send("before")
            assert ws.receive(timeout=5) == "before"
            (root / "app.py").write_text(SOCK_APP.replace("ws.send(ws.receive())", "ws.send('2:' + ws.receive())"))
            said: dict[str, float] = {}
            with subprocess.Popen(
                [str(BIN / "flaskprod"), "deploy"], cwd=root, env=server_env(), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True,
            ) as deploy:  # fmt: skip
                assert deploy.stdout is not None
                try:
                    for line in deploy.stdout:  # bounded by the deploy's own: readiness, switch and drain
                        if "is ready" in line or "nginx sends requests to release" in line:
                            said["ready" if "is ready" in line else "switched"] = time.monotonic()
                    assert deploy.wait(timeout=120) == 0
                finally:
                    if deploy.poll() is None:
                        deploy.kill()
            assert said["switched"] - said["ready"] < 24, said  # waited 24 + 5 + 5 s before
            # The drain let the conversation go on until the graceful timeout, then ended it with its release.
            wait_for(lambda: not ws.connected, timeout=5, what="the old release's conversation to end")
        finally:
            if ws.connected:
                ws.close()
        again = Client.connect(f"ws://127.0.0.1:{running.port}/echo")
        try:
            again.send("after")
            assert again.receive(timeout=5) == "2:after"
        finally:
            again.close()
    finally:
        stop(running)
