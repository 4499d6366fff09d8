"""`flaskprod up` for real: nginx in front of Gunicorn or uWSGI, one running stack per server kind.

The tests share the stack of their kind and run in file order; the last one stops it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from flaskprod.discovery import AppRef
from flaskprod.exits import APP_SERVER_EXITS, describe_exit, exit_fields
from flaskprod.sizing import Derived
from flaskprod.spec import Spec
from flaskprod.stack.up import Plan, StackDir
from tests.support import BIN, free_port, wait_for
from tests.upstack import (
    APP,
    FINGERPRINTED,
    PLAIN,
    Loader,
    UpStack,
    children_of,
    closed_unanswered,
    name_app,
    one_request,
    processes_under,
    start_up,
    stop,
    summary,
    up_env,
    write_app,
)

pytestmark = pytest.mark.integration

SERVER_TIMEOUT = 3  # server.timeout: the app answers 504
PROXY_READ = SERVER_TIMEOUT + 2  # sizing.PROXY_MARGIN: nginx answers 504 for what the app could not stop
HARD_TIMEOUT = SERVER_TIMEOUT + 5  # sizing.KILL_MARGIN: Gunicorn's worker timeout, uWSGI's harakiri
WORKERS = 2
THREADS = 8  # the default
# Blueprints with static folders of their own: at a URL one names, under another's url_prefix, and one of an
# installed package, in a virtualenv inside the project (which no release copies).
BLUEPRINTS = """
from flask import Blueprint

app.register_blueprint(Blueprint("admin", __name__, static_folder="admin_static", static_url_path="/admin/static"))
app.register_blueprint(Blueprint("shop", __name__, static_folder="assets"), url_prefix="/shop")
app.register_blueprint(Blueprint("ext", __name__, static_folder={installed!r}, url_prefix="/ext"))
"""
INSTALLED = ".venv/lib/python3.11/site-packages/ext/static"
# A request that kills its worker, counted outside the release `up` copies the app into.
CRASH = """

@app.route("/crash", methods=["GET", "POST"])
def crash():
    with open({counted!r}, "a") as counted:
        counted.write(request.method + "\\n")
    os._exit(1)
"""


@pytest.fixture(scope="module", params=["gunicorn", "uwsgi"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    root = tmp_path_factory.mktemp(f"up-{request.param}")
    blueprints = BLUEPRINTS.format(installed=str(root / INSTALLED))
    write_app(root, APP + blueprints + CRASH.format(counted=str(root / "crashes")))
    for folder in ("admin_static", "assets", INSTALLED):
        (root / folder).mkdir(parents=True)
        (root / folder / "app.3f2a1b9c.css").write_text((root / "static" / FINGERPRINTED).read_text())
        (root / folder / "plain.css").write_text(f"{folder}\n")
    (root / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    running = start_up(
        root,
        request.param,
        free_port(),
        "--workers",
        str(WORKERS),
        "--timeout",
        str(SERVER_TIMEOUT),
        "--set",
        "server.graceful_timeout=10",
        "--set",
        "proxy.max_body_size=1M",
        "--set",
        "logging.access_log=true",
    )
    try:
        running.wait_ready()
        yield running
    finally:
        stop(running)


def app_server_pid(stack: UpStack) -> int:
    for pid in children_of(stack.proc.pid):
        if "flaskprod serve" in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
            return pid
    raise AssertionError(f"no app server among the children of up:\n{stack.output()}")


def test_table_names_the_url_server_and_logs(stack: UpStack) -> None:
    out = stack.stdout()
    assert f"http://127.0.0.1:{stack.port}/" in out
    assert f"{stack.kind}, {WORKERS} workers" in out
    assert f"http://127.0.0.1:{stack.port}/metrics" in out
    assert str(stack.run_dir / "logs" / "access.log") in out
    assert stack.get("/api/ping").json() == {"ok": True}


def queue_figures(stack: UpStack) -> tuple[float, float]:
    """http_request_queue_seconds' count and sum, read through nginx as the scraper reads them."""
    figures = {
        sample.name: sample.value
        for family in text_string_to_metric_families(stack.get("/metrics").text)
        for sample in family.samples
        if sample.name in ("http_request_queue_seconds_count", "http_request_queue_seconds_sum")
    }
    return figures.get("http_request_queue_seconds_count", 0.0), figures.get("http_request_queue_seconds_sum", 0.0)


def test_the_app_counts_how_long_each_request_waited_after_nginx(stack: UpStack) -> None:
    count, total = queue_figures(stack)
    # A client's own X-Request-Start (here from 2001) is replaced by the time nginx passed the request on.
    for _ in range(5):
        assert stack.get("/api/ping", headers={"X-Request-Start": "t=1000000000.000"}).status_code == 200
    later_count, later_total = queue_figures(stack)
    assert later_count >= count + 5  # the pings, and the first scrape
    assert 0 <= later_total - total < 5


def test_children_share_ups_session_each_in_a_process_group_of_its_own(stack: UpStack) -> None:
    # One session is one scheduling group under Linux's autogroup (docs/defaults.md); a group of
    # its own keeps Ctrl-C in the terminal for `up` alone.
    up = stack.proc.pid
    kids = children_of(up)
    assert len(kids) >= 2, kids  # nginx and the app server
    workers = stack.worker_pids()  # the processes that answered requests
    assert workers
    for pid in [*kids, *workers]:
        assert os.getsid(pid) == os.getsid(up)
    for pid in kids:
        assert os.getpgid(pid) == pid != os.getpgid(up)


def test_static_files_come_from_nginx_with_cache_headers_and_gzip(stack: UpStack) -> None:
    fingerprinted = stack.get(f"/static/{FINGERPRINTED}", headers={"Accept-Encoding": "gzip"})
    assert fingerprinted.status_code == 200
    assert fingerprinted.headers["Content-Encoding"] == "gzip"
    assert fingerprinted.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert fingerprinted.text.startswith(".rule-0 {")
    plain = stack.get(f"/static/{PLAIN}")
    assert plain.headers["Cache-Control"] == "public, max-age=86400"
    assert stack.get("/static/missing.css").status_code == 404
    # The app logs its own access lines here: a request it did see appears, the static ones never do.
    stack.get("/api/ping?after-static")
    wait_for(lambda: "/api/ping" in stack.app_access_paths(), timeout=10, what="the app's access line")
    assert not [p for p in stack.app_access_paths() if p.startswith("/static")]
    wait_for(
        lambda: f"/static/{FINGERPRINTED}" in [line["uri"] for line in stack.nginx_access()],
        timeout=10,
        what="nginx's access line for the static file (buffered, flushed each second)",
    )


def test_blueprint_static_files_come_from_nginx_too(stack: UpStack) -> None:
    release = stack.run_dir / "releases" / "1"
    assert (
        f"/static/ -> {release}/static, /admin/static/ -> {release}/admin_static, "
        f"/shop/assets/ -> {release}/assets, /ext/static/ -> {stack.root / INSTALLED} (nginx)"
    ) in stack.stdout()
    for url, folder in (("/admin/static", "admin_static"), ("/shop/assets", "assets"), ("/ext/static", INSTALLED)):
        fingerprinted = stack.get(f"{url}/app.3f2a1b9c.css", headers={"Accept-Encoding": "gzip"})
        assert fingerprinted.status_code == 200
        # nginx's own header: the app would send no-cache for a blueprint's file.
        assert fingerprinted.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert fingerprinted.headers["Content-Encoding"] == "gzip"
        plain = stack.get(f"{url}/plain.css")
        assert (plain.text, plain.headers["Cache-Control"]) == (f"{folder}\n", "public, max-age=86400")
        assert stack.get(f"{url}/missing.css").status_code == 404
    # The app logs its own access lines: a request it did see appears, the blueprints' static ones never do.
    assert stack.get("/after-blueprint-static").status_code == 404
    wait_for(lambda: "/after-blueprint-static" in stack.app_access_paths(), timeout=10, what="the app's access line")
    assert not [p for p in stack.app_access_paths() if p.startswith(("/admin/static", "/shop/assets", "/ext"))]


def test_body_over_the_limit_gets_413_from_nginx(stack: UpStack) -> None:
    small = requests.post(stack.url("/upload"), data=b"x" * 512 * 1024, timeout=15)
    assert small.json() == {"size": 512 * 1024}  # above the in-memory buffer: spilled to the run dir
    big = requests.post(stack.url("/upload"), data=b"x" * (1024 * 1024 + 1), timeout=15)
    assert big.status_code == 413
    assert big.headers["Server"] == "nginx"
    # nginx writes the access line just after the response: wait for it rather than race it.
    wait_for(
        lambda: 413 in [line["status"] for line in stack.nginx_access() if line["uri"] == "/upload"],
        timeout=10,
        what="nginx's access line for the 413",
    )
    assert stack.app_access_paths().count("/upload") == 1  # only the small one reached the app


def test_a_chunked_body_reaches_the_app_whole(stack: UpStack) -> None:
    """nginx reads a chunked body whole and passes its length: the app gets every byte under either server."""

    def chunks() -> Iterator[bytes]:
        yield b"x" * 300_000
        yield b"y" * 200_001

    answer = requests.post(stack.url("/upload"), data=chunks(), timeout=15)
    assert answer.request.headers.get("Transfer-Encoding") == "chunked"
    assert answer.json() == {"size": 500_001}


def test_server_sent_events_reach_the_client_as_they_are_sent(stack: UpStack, tmp_path: Path) -> None:
    """nginx buffered the stream until it ended, so the first event came with the last; the second is sent only
    once the client has had the first, so a buffered first never arrives within the read timeout."""
    flag = tmp_path / "had-the-first"
    with requests.get(stack.url("/events"), params={"flag": str(flag)}, stream=True, timeout=5) as response:
        lines = response.iter_lines()
        assert next(lines) == b"data: first"
        flag.touch()
        assert [line for line in lines if line] == [b"data: second"]
    assert "X-Accel-Buffering" not in response.headers  # nginx's to read, not the client's


@pytest.mark.parametrize("kind", ["uwsgi", "gunicorn"])
def test_an_event_stream_stays_open_while_it_is_quiet_past_the_read_timeout(tmp_path: Path, kind: str) -> None:
    """nginx's read timeout is server.timeout + 2 s (5 s here): it ended a stream quiet for 7 s after its first
    event. A request that accepts text/event-stream, as EventSource's do, waits proxy.event_stream_timeout; another
    still gets the read timeout."""
    root = tmp_path / "app"
    write_app(root)
    running = start_up(root, kind, free_port(), "--workers", "1", "--timeout", "3")
    try:
        running.wait_ready()
        flag = tmp_path / "after-the-quiet"
        with requests.get(
            running.url("/events"), params={"flag": str(flag)}, headers={"Accept": "text/event-stream"},
            stream=True, timeout=15,
        ) as response:  # fmt: skip
            lines = response.iter_lines()
            assert next(lines) == b"data: first"
            time.sleep(7)
            flag.touch()
            assert [line for line in lines if line] == [b"data: second"]
        never = tmp_path / "never"  # the app waits 10 s for it, past nginx's 5
        with requests.get(running.url("/events"), params={"flag": str(never)}, stream=True, timeout=15) as response:
            lines = response.iter_lines()
            assert next(lines) == b"data: first"
            with pytest.raises(requests.exceptions.ChunkedEncodingError):
                list(lines)  # nginx ended it at its read timeout
    finally:
        stop(running)


def test_a_request_with_many_headers_gets_an_answer_not_a_502(stack: UpStack) -> None:
    """uWSGI's default of 64 variables dropped a request of 120 headers, and nginx answered 502: an error of the
    app's in every count, caused by any client. Gunicorn refuses more than 100 as the client's error (431)."""
    headers = {f"X-Extra-{n}": "v" for n in range(400)}
    answer = requests.get(stack.url("/whoami"), headers=headers, timeout=15)
    assert answer.status_code == (200 if stack.kind == "uwsgi" else 431), answer.text


def test_unknown_host_gets_no_answer(stack: UpStack) -> None:
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(b"GET /api/ping HTTP/1.1\r\nHost: attacker.example\r\n\r\n")
        assert sock.recv(1024) == b""  # closed without a byte of response (nginx 444)
    assert stack.get("/api/ping", headers={"Host": "localhost"}).status_code == 200


def test_forwarded_headers_from_the_client_are_not_believed(stack: UpStack) -> None:
    seen = stack.get(
        "/whoami",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Host": "attacker.example",
            "X-Forwarded-Proto": "https",
        },
    ).json()
    assert seen["remote_addr"] == "127.0.0.1"
    assert seen["host"] == f"127.0.0.1:{stack.port}"
    assert seen["scheme"] == "http"
    # nginx matches the name before the colon and takes anything after it: only a port of digits is passed on.
    assert stack.get("/whoami", headers={"Host": "localhost:attacker.example"}).json()["host"] == "localhost"
    assert stack.get("/whoami", headers={"Host": "LocalHost:8000"}).json()["host"] == "LocalHost:8000"


def test_request_id_is_kept_only_when_well_formed(stack: UpStack) -> None:
    kept = stack.get("/whoami", headers={"X-Request-ID": "trace-0123456789abcdef"})
    assert kept.json()["request_id"] == "trace-0123456789abcdef"
    assert kept.headers["X-Request-ID"] == "trace-0123456789abcdef"
    replaced = stack.get("/whoami", headers={"X-Request-ID": "short"}).json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    fresh = stack.get("/whoami").json()["request_id"]
    assert re.fullmatch(r"[0-9a-f]{32}", fresh)
    wait_for(
        lambda: fresh in [line["request_id"] for line in stack.nginx_access()],
        timeout=10,
        what="the same id in nginx's access log",
    )


def test_slow_request_gets_504_from_the_app_at_the_deadline(stack: UpStack) -> None:
    """The timeout chain, first link: the app stops a request running Python at server.timeout."""
    started = time.monotonic()
    response = stack.get("/spin?s=20", timeout=HARD_TIMEOUT + 10, headers={"Accept": "application/json"})
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert response.json()["error"]["status"] == 504  # the app's own error page, not nginx's
    assert SERVER_TIMEOUT <= elapsed < PROXY_READ
    # Written before the answer, but under Gunicorn it passes serve's relay (jsonrelay.GATHER) on its way to the log.
    wait_for(lambda: "request stopped after its deadline" in stack.stdout(), timeout=10, what="the deadline's line")
    # Not stuck: every worker answers again, quickly.
    for _ in range(4 * WORKERS):
        assert stack.get("/api/ping", timeout=5).status_code == 200
    logged = wait_for(
        lambda: [line for line in stack.nginx_access() if line["uri"] == "/spin?s=20"],
        timeout=10,
        what="nginx's access line for the slow request",
    )
    assert logged[-1]["status"] == 504


def test_request_stuck_in_c_gets_504_from_nginx_and_stops_when_the_call_returns(stack: UpStack) -> None:
    """The rest of the chain: the app cannot cut a thread's sleep short, so nginx answers 504 for it."""
    stopped = "request stopped after its deadline"
    before = stack.stdout().count(stopped)
    started = time.monotonic()
    response = stack.get("/slow?s=10", timeout=HARD_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    assert response.status_code == 504
    assert SERVER_TIMEOUT <= elapsed < HARD_TIMEOUT
    if stack.kind == "gunicorn":
        # gthread runs every request on a pool thread: the answer is nginx's. uWSGI also serves on its
        # main thread, where the alarm does interrupt the sleep and the app answers at the deadline.
        assert elapsed >= PROXY_READ
    # The other threads and workers answer meanwhile.
    for _ in range(4 * WORKERS):
        assert stack.get("/api/ping", timeout=5).status_code == 200
    # Neither server kills a lone thread; the deadline's exception stops it as soon as its sleep returns.
    wait_for(lambda: stack.stdout().count(stopped) > before, timeout=15, what="the request stopped in the app")
    assert "HARAKIRI" not in stack.output()  # uWSGI's kills the whole worker: it is for single-threaded ones


def test_reload_under_load_fails_no_request(stack: UpStack) -> None:
    before = stack.worker_pids()
    nginx_master = int((stack.run_dir / "nginx.pid").read_text())
    loader = Loader(stack.port, threads=4, max_requests=2500, max_seconds=40).start()
    time.sleep(0.5)
    os.kill(stack.proc.pid, signal.SIGHUP)
    # Reloaded once no answer comes from a worker of before.
    wait_for(lambda: not (stack.worker_pids(6) & before), timeout=30, what="new workers after SIGHUP")
    outcomes = loader.join()
    assert len(outcomes) >= 1000, summary(outcomes)
    assert loader.count("ok") == len(outcomes), summary(outcomes)
    assert int((stack.run_dir / "nginx.pid").read_text()) == nginx_master  # reloaded, not restarted
    assert "reloading the app server, and nginx if its config changed" in stack.stderr()
    # Done once the replaced server has drained: the next test on this stack starts from a settled one.
    wait_for(lambda: "the old one drained" in stack.stderr(), timeout=30, what="the replaced app server drained")


def test_killed_worker_costs_only_its_own_request(stack: UpStack) -> None:
    victim = stack.get("/whoami").json()["pid"]
    in_flight = 4
    loader = Loader(stack.port, threads=in_flight, max_requests=2000, max_seconds=40).start()
    time.sleep(0.5)
    try:
        os.kill(victim, signal.SIGKILL)
    except ProcessLookupError:  # seen once in CI under load: say what the stack logged meanwhile
        summary_line = summary(loader.join())
        raise AssertionError(f"worker {victim} had gone before the kill ({summary_line}):\n{stack.output()}") from None
    outcomes = loader.join()
    failed = [o for o in outcomes if o.kind != "ok"]
    # The requests the worker held when it died may fail (at most one per thread), nothing after them.
    assert len(failed) <= min(in_flight, THREADS), summary(outcomes)
    # 502 when it died before answering; cut short when nginx had already passed its headers on.
    assert all(o.status == 502 or o.kind == "unanswered" for o in failed), summary(outcomes)
    assert len(outcomes) >= 1000, summary(outcomes)
    assert victim not in stack.worker_pids()


def test_a_request_that_kills_its_worker_is_sent_again_only_if_safe_and_on_a_kept_connection(stack: UpStack) -> None:
    crashes = stack.root / "crashes"
    with requests.Session() as client:  # one connection to one nginx worker, whose kept upstream ones it reuses
        for method in ("POST", "GET"):
            crashes.unlink(missing_ok=True)
            assert client.get(stack.url("/api/ping"), timeout=15).status_code == 200
            assert client.request(method, stack.url("/crash"), timeout=15).status_code == 502
            # nginx passes a request on at most once more, and only a GET: one whose kept-alive connection to
            # Gunicorn failed, the race of an app server closing an idle connection as nginx reuses it. uWSGI
            # closes each connection, so nothing is sent again.
            sent = 2 if method == "GET" and stack.kind == "gunicorn" else 1
            assert crashes.read_text() == f"{method}\n" * sent, stack.output()
            wait_for(lambda: stack.get("/api/ping", timeout=5).status_code == 200, timeout=30, what="serving again")


def server_master_pid(stack: UpStack, serve: int) -> int:
    """The master of the app server that `flaskprod serve` (pid serve) runs: itself under Gunicorn; under uWSGI
    its one child (named as auto-procname has it, "uWSGI master")."""
    if stack.kind == "gunicorn":
        return serve
    (master,) = children_of(serve)
    return master


def test_dead_children_are_restarted_and_logged(stack: UpStack) -> None:
    nginx_master = int((stack.run_dir / "nginx.pid").read_text())
    os.kill(nginx_master, signal.SIGKILL)
    wait_for(lambda: "nginx restarted" in stack.stderr(), timeout=20, what="nginx restarted")
    assert f"nginx (pid {nginx_master}) was killed by SIGKILL (signal 9); restarting in 0.5s" in stack.stderr()
    wait_for(lambda: stack.get("/api/ping", timeout=5).status_code == 200, timeout=20, what="serving again")

    # The server's own master, as an operator finds it in ps: uWSGI's is a child of `flaskprod serve`, which
    # reported its death as exit status 247 (sys.exit(-9)).
    serve = app_server_pid(stack)
    master = server_master_pid(stack, serve)
    os.kill(master, signal.SIGKILL)
    wait_for(lambda: f"app server ({stack.kind}) restarted" in stack.stderr(), timeout=20, what="app restarted")
    logged = f"app server ({stack.kind}) (pid {serve}) was killed by SIGKILL (signal 9); restarting in 0.5s"
    assert logged in stack.stderr(), stack.output()
    if stack.kind == "uwsgi":
        # The pid the operator killed is named too: serve logs its uWSGI master's end before it passes it on, as
        # one JSON record like uWSGI's own lines around it.
        said = f"flaskprod: uWSGI's master (pid {master}) was killed by SIGKILL (signal 9)"
        [line] = [line for line in stack.stderr().splitlines() if said in line]
        assert json.loads(line)["message"] == said, stack.output()
        assert stack.stderr().index(said) < stack.stderr().index(logged)
    assert app_server_pid(stack) != serve
    wait_for(lambda: stack.get("/api/ping", timeout=5).status_code == 200, timeout=60, what="serving again")
    assert stack.proc.poll() is None


def test_sigterm_lets_requests_in_flight_finish(stack: UpStack) -> None:
    """Last in the file: it stops the stack."""
    in_flight = [
        Loader(stack.port, path="/slow?s=2", threads=1, max_requests=1, max_seconds=30).start() for _ in range(WORKERS)
    ]
    time.sleep(0.5)  # both slow requests are inside the app now
    pings = Loader(stack.port, threads=2, max_requests=3000, max_seconds=40, tagged=True).start()
    time.sleep(0.3)
    os.kill(stack.proc.pid, signal.SIGTERM)
    assert stack.proc.wait(40) == 0, stack.output()
    pings.stop()
    slow = [o for loader in in_flight for o in loader.join()]
    assert [o.status for o in slow] == [200] * WORKERS, summary(slow)
    outcomes = pings.outcomes
    assert pings.count("ok") > 0, summary(outcomes)
    assert {o.kind for o in outcomes} <= {"ok", "refused", "unanswered"}, summary(outcomes)
    # Every request nginx read was answered. A connection nginx had not read from yet when it closed its
    # listener (still in the kernel's accept queue, or accepted and idle) is reset: its request was never
    # received, so nginx logged nothing for it, and the client may send it again.
    logged = {entry["uri"]: entry["status"] for entry in stack.nginx_access()}
    assert all(logged.get(o.path) == 200 for o in outcomes if o.kind == "ok"), summary(outcomes)
    unanswered = [o for o in outcomes if o.kind == "unanswered"]
    assert all(o.path not in logged for o in unanswered), [(o.path, logged.get(o.path)) for o in unanswered]
    assert len(unanswered) <= 2, summary(outcomes)  # at most one per client thread, at the moment the listener closed
    assert one_request(stack.port, "/api/ping").kind == "refused"
    assert "shutting down gracefully" in stack.stderr()
    assert processes_under(stack.root) == {}
    # A master stopped as asked (here, and each replaced by a reload) is no news: only the one killed was named.
    assert stack.stderr().count("flaskprod: uWSGI's master") == (1 if stack.kind == "uwsgi" else 0), stack.output()


def test_nginx_answers_the_host_the_apps_server_name_names(tmp_path: Path) -> None:
    """An app whose SERVER_NAME names a host proxy.server_name does not: nginx answers it too (port and all,
    as a client that reaches the site through a port mapping sends it), and still closes other names."""
    write_app(tmp_path, APP + 'app.config["SERVER_NAME"] = "shop.example.com:8443"\n')
    running = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1")
    try:
        running.wait_ready()
        seen = running.get("/whoami", headers={"Host": "shop.example.com:8443"})
        assert seen.status_code == 200, running.output()
        assert seen.json()["host"] == "shop.example.com:8443"
        assert running.get("/api/ping", headers={"Host": "localhost"}).status_code == 200
        assert closed_unanswered(running.port, "example.com")
    finally:
        stop(running)


HOST_MATCHING_APP = """
from flask import Flask
from flaskprod import Production

app = Flask(__name__, host_matching=True, static_host="static.example.com")
Production(app)


@app.get("/", host="api.example.com")
def api():
    return {"where": "api"}


@app.get("/", host="<tenant>.shop.example.com")
def shop(tenant):
    return {"tenant": tenant}


@app.get("/", host="api.<region>.example.com")
def regional(region):
    return {"region": region}
"""


def test_nginx_answers_the_hosts_a_host_matching_app_routes(tmp_path: Path) -> None:
    """Flask's host_matching routes by the Host alone: nginx answers every host the rules name, a pattern's too,
    where it closed each as a name it did not serve, and still closes the names no rule routes."""
    write_app(tmp_path, HOST_MATCHING_APP)
    running = start_up(tmp_path, "gunicorn", free_port(), "--workers", "1", "--set", "proxy.ready_timeout=15")
    try:
        running.wait_ready()
        assert running.get("/", headers={"Host": "api.example.com"}).json() == {"where": "api"}
        assert running.get("/", headers={"Host": "acme.shop.example.com"}).json() == {"tenant": "acme"}
        assert running.get("/", headers={"Host": "api.eu-west.example.com"}).json() == {"region": "eu-west"}
        assert running.get(f"/static/{PLAIN}", headers={"Host": "static.example.com"}).status_code == 200
        assert closed_unanswered(running.port, "www.example.com")
    finally:
        stop(running)


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_an_app_that_routes_its_server_name_alone_gets_ready_and_deploys_under_a_new_name(
    tmp_path: Path, kind: str
) -> None:
    """up's own requests name the host the app routes: its readiness through nginx at start, and a deploy's on the
    new release's socket (in uWSGI's protocol too), were sent for localhost, which an app with subdomain matching
    answers 404, so up never got ready. A release that calls itself by a new name is answered by it alone."""
    name_app(tmp_path, "shop.example.com:8443")
    running = start_up(tmp_path, kind, free_port(), "--workers", "1", "--set", "proxy.ready_timeout=15")
    try:
        running.wait_ready()
        assert running.get("/whoami", headers={"Host": "shop.example.com:8443"}).text == "shop.example.com:8443"
        assert running.get("/whoami", headers={"Host": "localhost"}).status_code == 404  # the app's own answer
        (tmp_path / "instance" / "site.cfg").write_text("SERVER_NAME = 'store.example.com'\n")
        deployed = subprocess.run([str(BIN / "flaskprod"), "deploy"], cwd=tmp_path, env=up_env(), capture_output=True,
                                  text=True, timeout=90)  # fmt: skip
        assert deployed.returncode == 0, deployed.stderr + running.output()
        assert running.get("/whoami", headers={"Host": "store.example.com"}).text == "store.example.com"
        assert closed_unanswered(running.port, "shop.example.com")
    finally:
        stop(running)


@pytest.mark.parametrize(
    ("host", "names", "url"),
    [
        ("127.0.0.1", "localhost", "http://127.0.0.1:8080"),
        ("0.0.0.0", "localhost", "http://localhost:8080"),  # nginx closes requests for Host 127.0.0.1 there
        ("::", "app.example.com www.example.com", "http://app.example.com:8080"),
        ("::1", "localhost", "http://[::1]:8080"),
    ],
)
def test_the_url_shown_is_one_nginx_answers(host: str, names: str, url: str) -> None:
    spec = Spec().replace(**{"proxy.host": host, "proxy.port": 8080, "proxy.server_name": names})
    shown = Plan(
        spec=spec, derived=cast(Derived, None), app=cast(AppRef, None), run=cast(StackDir, None),
        nginx_binary="nginx", protocol="uwsgi", app_env={}, root=Path("/srv/app"),
    ).url  # fmt: skip
    assert shown == url


@pytest.mark.parametrize(
    ("status", "kind", "said"),
    [
        (-9, "gunicorn", "was killed by SIGKILL (signal 9)"),
        (-15, None, "was killed by SIGTERM (signal 15)"),
        (-35, None, "was killed by SIGRTMIN+1 (signal 35)"),
        (0, None, "exited with status 0"),
        (1, "gunicorn", "exited with status 1"),
        (3, "gunicorn", "exited with status 3 (Gunicorn: a worker failed to boot)"),
        (4, "gunicorn", "exited with status 4 (Gunicorn: the app failed to load)"),
        (4, "uwsgi", "exited with status 4"),
        (22, "uwsgi", "exited with status 22 (uWSGI: the app failed to load)"),
        (2, "uwsgi", "exited with status 2 (flaskprod serve refused to start it)"),
        (3, None, "exited with status 3"),  # nginx's, Prometheus's: no meaning of their own here
    ],
)
def test_a_childs_end_is_described_as_what_happened(status: int, kind: str | None, said: str) -> None:
    assert describe_exit(status, APP_SERVER_EXITS[kind] if kind else None) == said
    assert exit_fields(status) == ({"signal": said.split()[3]} if status < 0 else {"exit_status": status})
