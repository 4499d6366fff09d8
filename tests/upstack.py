"""Helpers for the `flaskprod up` tests: an app under a directory, the running stack, a bounded loader."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.support import BIN, stop_group, wait_for

BOOT_TIMEOUT = 60.0
# Inherited variables that would configure the app or flaskprod differently from what the test says.
_INHERITED_PREFIXES = ("FLASK_", "FLASKPROD_", "GUNICORN_", "PROMETHEUS_MULTIPROC_DIR", "DATABASE_URL")
# A fingerprinted name and a plain one; both above gzip_min_length so gzip applies.
FINGERPRINTED = "css/app.3f2a1b9c.css"
PLAIN = "css/plain.css"

APP = """
import os
import time

from flask import Flask, Response, jsonify, request

from flaskprod import Production

app = Flask(__name__)
prod = Production(app)

if os.environ.get("TEST_READINESS_FAILS"):
    @prod.readiness_check("database")
    def database() -> None:
        raise ConnectionError("database at db.invalid:5432 refused the connection")


@app.get("/api/ping")
def ping():
    return jsonify(ok=True)


@app.get("/whoami")
def whoami():
    return jsonify(remote_addr=request.remote_addr, scheme=request.scheme, host=request.host,
                   request_id=request.headers.get("X-Request-ID"), pid=os.getpid())


@app.post("/upload")
def upload():
    return jsonify(size=len(request.get_data()))


@app.get("/slow")
def slow():
    seconds = float(request.args["s"])
    time.sleep(seconds)
    return jsonify(slept=seconds, pid=os.getpid())


@app.get("/spin")
def spin():
    # Python-level work: a deadline can stop it on any thread.
    end = time.monotonic() + float(request.args["s"])
    while time.monotonic() < end:
        pass
    return jsonify(pid=os.getpid())


@app.get("/events")
def events():
    # The second event waits for the client to have had the first: for the file it then writes (10 s at most).
    flag = request.args["flag"]

    def stream():
        yield "data: first\\n\\n"
        end = time.monotonic() + 10
        while not os.path.exists(flag) and time.monotonic() < end:
            time.sleep(0.05)
        yield "data: second\\n\\n"

    return Response(stream(), mimetype="text/event-stream")
"""

# An app that routes its SERVER_NAME alone (subdomain matching: a request for another host is its own 404), with a
# readiness view of its own, no Production(app). Its name comes from its instance folder, which every release shares.
NAMED_APP = """
from flask import Flask, request

app = Flask(__name__, subdomain_matching=True, instance_relative_config=True)
app.config.from_pyfile("site.cfg")


@app.get("/readyz")
def ready():
    return "ready"


@app.get("/whoami")
def whoami():
    return request.host
"""


def name_app(root: Path, server_name: str) -> None:
    """NAMED_APP under root, calling itself server_name (its instance folder's site.cfg)."""
    write_app(root, NAMED_APP)
    (root / "instance").mkdir(exist_ok=True)
    (root / "instance" / "site.cfg").write_text(f"SERVER_NAME = {server_name!r}\n")


def closed_unanswered(port: int, host: str) -> bool:
    """Whether nginx on port closes a request for host without a byte of response (its 444 for names it serves not)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        return sock.recv(1024) == b""


def write_app(root: Path, source: str = APP) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(textwrap.dedent(source))
    css = "".join(f".rule-{i} {{ color: #{i:06x}; margin: {i}px; }}\n" for i in range(200))
    for name in (FINGERPRINTED, PLAIN):
        path = root / "static" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(css)


def up_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env["FLASK_SECRET_KEY"] = secrets.token_hex(32)
    env.update(extra)
    return env


def up_args(kind: str, port: int, *extra: str) -> list[str]:
    return [str(BIN / "flaskprod"), "up", "app:app", "--server", kind, "--port", str(port), *extra]


@dataclass
class UpStack:
    """One `flaskprod up` process group, the directory it runs in, and its captured output."""

    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    kind: str

    @property
    def run_dir(self) -> Path:
        return self.root / ".flaskprod" / "run"

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return requests.get(self.url(path), **kwargs)

    def stdout(self) -> str:
        return (self.root / "up.out").read_text(errors="replace")

    def stderr(self) -> str:
        return (self.root / "up.err").read_text(errors="replace")

    def output(self) -> str:
        return f"--- stdout ---\n{self.stdout()[-6000:]}\n--- stderr ---\n{self.stderr()[-6000:]}"

    def app_access_paths(self) -> list[str]:
        """url.path of every access line the app itself wrote: JSON on stdout, under either server."""
        paths = []
        for line in self.stdout().splitlines():
            if line.startswith("{") and '"url"' in line:
                record = json.loads(line)
                if isinstance(record.get("url"), dict):
                    paths.append(record["url"]["path"])
        return paths

    def nginx_access(self) -> list[dict[str, Any]]:
        path = self.run_dir / "logs" / "access.log"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"up exited with {self.proc.returncode}:\n{self.output()}")
            return "is ready" in self.stdout()

        try:
            wait_for(ready, timeout=timeout, interval=0.1, what="flaskprod up to print its table")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def worker_pids(self, samples: int = 12) -> set[int]:
        return {self.get("/whoami").json()["pid"] for _ in range(samples)}


def start_up(root: Path, kind: str, port: int, *extra: str, env: dict[str, str] | None = None) -> UpStack:
    with (root / "up.out").open("wb") as out, (root / "up.err").open("wb") as err:
        proc = subprocess.Popen(
            up_args(kind, port, *extra),
            cwd=root,
            env=env or up_env(),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return UpStack(proc=proc, root=root, port=port, kind=kind)


def children_of(pid: int) -> list[int]:
    """The pids of pid's children now; none once it has gone."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def processes_under(root: Path) -> dict[int, str]:
    """pid -> command line of every process whose working directory, command line or environment names root."""
    needle = str(root)
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if needle in cmdline or cwd.startswith(needle) or needle in environ:
            found[int(entry.name)] = cmdline.strip()
    return found


def stop(stack: UpStack) -> None:
    stop_group(stack.proc, timeout=40)


@dataclass
class Outcome:
    kind: str  # ok, status (a non-2xx answer), refused (never connected), unanswered (connected, no answer)
    status: int | None
    started: float
    ended: float
    detail: str = ""
    path: str = ""


@dataclass
class Loader:
    """Threads sending GET path on a new connection each (so no keep-alive race blurs the result).

    Bounded twice: at most max_requests in all and max_seconds of time; stop() ends it sooner.
    With tagged, each request's path carries its own number (?n=…), to find it in a server's log.
    """

    port: int
    path: str = "/api/ping"
    threads: int = 4
    max_requests: int = 3000
    max_seconds: float = 30.0
    tagged: bool = False
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    _sent: int = 0

    def start(self) -> Loader:
        self._deadline = time.monotonic() + self.max_seconds
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> list[Outcome]:
        self._stop.set()
        return self.join()

    def join(self) -> list[Outcome]:
        for worker in self._workers:
            worker.join(self.max_seconds + 30)
        return self.outcomes

    def _claim(self) -> str | None:
        """The path of the next request, or None when the loader is done."""
        with self._lock:
            over = time.monotonic() > self._deadline or len(self.outcomes) >= self.max_requests
            if over or self._stop.is_set():
                return None
            self._sent += 1
            if not self.tagged:
                return self.path
            return f"{self.path}{'&' if '?' in self.path else '?'}n={self._sent}"

    def _run(self) -> None:
        while (path := self._claim()) is not None:
            outcome = one_request(self.port, path)
            with self._lock:
                self.outcomes.append(outcome)
            if outcome.kind == "refused":
                time.sleep(0.01)

    def count(self, kind: str) -> int:
        return sum(1 for o in self.outcomes if o.kind == kind)


def one_request(port: int, path: str, timeout: float = 30.0) -> Outcome:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        try:
            conn.connect()
        except OSError as exc:
            return Outcome("refused", None, started, time.monotonic(), repr(exc), path)
        try:
            conn.request("GET", path, headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            return Outcome("unanswered", None, started, time.monotonic(), repr(exc), path)
        kind = "ok" if 200 <= response.status < 300 else "status"
        return Outcome(kind, response.status, started, time.monotonic(), path=path)
    finally:
        conn.close()


def summary(outcomes: list[Outcome]) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        key = o.kind if o.status is None else f"{o.kind} {o.status}"
        counts[key] = counts.get(key, 0) + 1
    odd = [o.detail for o in outcomes if o.detail][:5]
    return f"{counts} {odd}"


def iter_json_lines(text: str) -> Iterator[dict[str, Any]]:
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue
