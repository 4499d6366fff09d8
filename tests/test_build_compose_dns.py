"""Compose's nginx follows the app service's addresses: real nginx with the rendered conf, its resolver pointed at a
tiny DNS server here that answers for `app` as Docker's does (TTL 600), and real app servers on 127.0.0.1 and
127.0.0.2 standing for the app container before and after Compose recreated it (or for two replicas)."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests

from flaskprod.render.compose import render_compose
from tests.buildkit import make_deployment, write_tree
from tests.support import BIN, free_port, running, wait_for
from tests.test_build import listening_nginx, native_nginx
from tests.test_nginx_error_pages import DESCRIPTIONS

# Each app server answers with its name, so a response says which address nginx reached.
WHO_APP = """import os


def app(environ, start_response):
    body = os.environ["WHO"].encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""
# Docker's embedded DNS answers container names with a TTL of 600 s: nginx must not wait for it.
DOCKER_TTL = 600
# Seconds after Docker's DNS names a recreated app container within which every request reaches it: nginx asks again
# valid= (1 s, counted in whole seconds: under 2 s) after the answer it holds. At valid=5s it was 5 to 6 s of 502s.
NEW_ADDRESS_WITHIN = 3


class Names:
    """A DNS server on 127.0.0.1 answering A queries for the names in `answers` (NXDOMAIN for any other name)."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        # change_after_next_answer's answers, and when the answer before them was sent.
        self.next_answers: dict[str, list[str]] | None = None
        self.changed = threading.Event()
        self.changed_at = 0.0

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                query, client = self.sock.recvfrom(512)
            except TimeoutError:
                continue
            self.sock.sendto(self.answer(query), client)
            if self.next_answers is not None:
                self.answers, self.next_answers = self.next_answers, None
                self.changed_at = time.monotonic()
                self.changed.set()

    def change_after_next_answer(self, answers: dict[str, list[str]]) -> None:
        """Answer the next query as now and every later one from answers: the asker holds the old answer for all of
        its valid=, counted from changed_at."""
        self.changed.clear()
        self.next_answers = answers

    def answer(self, query: bytes) -> bytes:
        labels, at = [], 12
        while query[at]:
            labels.append(query[at + 1 : at + 1 + query[at]].decode().lower())
            at += 1 + query[at]
        question = query[12 : at + 5]
        qtype = struct.unpack("!H", query[at + 1 : at + 3])[0]
        addresses = self.answers.get(".".join(labels))
        records = addresses if addresses is not None and qtype == 1 else []
        flags = 0x8180 if addresses is not None else 0x8183  # a response, recursion available; NXDOMAIN
        header = query[:2] + struct.pack("!HHHHH", flags, 1, len(records), 0, 0)
        # Each answer names the question's name by a pointer to it (offset 12).
        answers = b"".join(
            struct.pack("!HHHIH", 0xC00C, 1, 1, DOCKER_TTL, 4) + socket.inet_aton(address) for address in records
        )
        return header + question + answers

    @contextmanager
    def serving(self) -> Iterator[Names]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            self.thread.join(5)
            self.sock.close()


def app_server(server: str, address: str, port: int, who: str, folder: Path) -> list[str]:
    """A real app server for WHO_APP in folder: Gunicorn over HTTP, or uWSGI over the uwsgi protocol."""
    if server == "uwsgi":
        return [str(BIN / "uwsgi"), "--socket", f"{address}:{port}", "--wsgi-file", str(folder / "who.py"),
                "--callable", "app", "--need-app", "--die-on-term", "--disable-logging"]  # fmt: skip
    return [str(BIN / "gunicorn"), "--chdir", str(folder), "--bind", f"{address}:{port}", "who:app"]


@contextmanager
def compose_nginx(
    tmp_path: Path, server: str, names: Names, app_port: int, *, workers: int | None = None
) -> Iterator[str]:
    """Compose's nginx as built, run here: the app's name and port kept, its resolver the Names here, `workers` worker
    processes if given (each holds answers of its own); its URL."""
    project = tmp_path / "p"
    d = make_deployment(project, server=server, out="deploy/x")  # type: ignore[arg-type]
    out = write_tree(project / d.out, render_compose(d))
    port = free_port()
    nginx = native_nginx(project, out, tmp_path / "nginx", port=port, upstream=f"app:{app_port}")
    # Docker's DNS, in each container on a Compose network; `app` resolves nowhere else here.
    conf = (tmp_path / "nginx/nginx.conf").read_text()
    conf = conf.replace("resolver 127.0.0.11 ", f"resolver 127.0.0.1:{names.port} ")
    if workers is not None:
        conf, count = re.subn(r"(?m)^worker_processes \S+;$", f"worker_processes {workers};", conf)
        assert count == 1
    (tmp_path / "nginx/nginx.conf").write_text(conf)
    with listening_nginx(nginx, tmp_path, port):
        yield f"http://127.0.0.1:{port}"


def who(url: str) -> str:
    page = requests.get(f"{url}/", headers={"Host": "localhost"}, timeout=10)
    return f"{page.status_code} {page.text}"


@pytest.mark.integration
@pytest.mark.parametrize("server", ["gunicorn", "uwsgi"])
def test_compose_nginx_follows_the_app_to_its_new_address(tmp_path: Path, server: str) -> None:
    """nginx resolved `app` once, at start (a static upstream block): after `docker compose up -d --build` recreated
    the app container at a new address, every request was a 502 until nginx restarted. Now it asks the DNS again
    within the resolver's valid=, whatever the TTL, and reaches the new container."""
    (tmp_path / "who.py").write_text(WHO_APP)
    app_port = free_port()
    names = Names({"app": ["127.0.0.1"]})
    with ExitStack() as stack:
        stack.enter_context(names.serving())
        logs = {who: stack.enter_context((tmp_path / f"{who}.log").open("w")) for who in ("old", "new")}
        old = stack.enter_context(running(app_server(server, "127.0.0.1", app_port, "old", tmp_path),
                                          env={"WHO": "old"}, stdout=logs["old"], stderr=logs["old"]))  # fmt: skip
        stack.enter_context(running(app_server(server, "127.0.0.2", app_port, "new", tmp_path),
                                    env={"WHO": "new"}, stdout=logs["new"], stderr=logs["new"]))  # fmt: skip
        url = stack.enter_context(compose_nginx(tmp_path, server, names, app_port))
        wait_for(lambda: who(url) == "200 old", timeout=30, what="nginx to reach the app at its first address")
        # Compose replaced the container: the old address answers no more, and Docker's DNS names the new one.
        names.answers["app"] = ["127.0.0.2"]
        old.terminate()
        old.wait(10)
        # Each nginx worker keeps its own answer for valid=: every one of them reaches the new address after it.
        every = ["200 new"] * 10
        wait_for(lambda: [who(url) for _ in every] == every, timeout=30, what="nginx to reach the app's new address")


@pytest.mark.integration
def test_compose_nginx_passes_a_request_on_to_another_address_of_the_app(tmp_path: Path) -> None:
    """Where `app` names several containers (deploy.replicas) and one is gone, a request refused there is passed to
    the next address of the name (proxy_next_upstream), as the upstream block did: no client sees a 502."""
    (tmp_path / "who.py").write_text(WHO_APP)
    app_port = free_port()
    # Nothing listens at 127.0.0.1:app_port: the replica that is gone, listed first or second (nginx rotates them).
    names = Names({"app": ["127.0.0.1", "127.0.0.2"]})
    with ExitStack() as stack:
        stack.enter_context(names.serving())
        log = stack.enter_context((tmp_path / "live.log").open("w"))
        stack.enter_context(running(app_server("gunicorn", "127.0.0.2", app_port, "live", tmp_path),
                                    env={"WHO": "live"}, stdout=log, stderr=log))  # fmt: skip
        url = stack.enter_context(compose_nginx(tmp_path, "gunicorn", names, app_port))
        wait_for(lambda: who(url) == "200 live", timeout=30, what="nginx to reach the live replica")
        assert [who(url) for _ in range(30)] == ["200 live"] * 30
    # Some of them were refused at the address that is gone first, and passed on.
    assert "Connection refused" in (tmp_path / "nginx.log").read_text()


@pytest.mark.integration
def test_compose_nginx_reaches_the_apps_new_address_within_seconds(tmp_path: Path) -> None:
    """Compose stopped the old app container and started its replacement at a new address: nginx answered 502 for as
    long as it held the old address, valid=5s in whole seconds (5 to 6 s after the answer, for a worker that had
    just asked). With valid=1s every request reaches the new one within NEW_ADDRESS_WITHIN seconds."""
    (tmp_path / "who.py").write_text(WHO_APP)
    app_port = free_port()
    names = Names({"app": ["127.0.0.1"]})
    with ExitStack() as stack:
        stack.enter_context(names.serving())
        logs = {who: stack.enter_context((tmp_path / f"{who}.log").open("w")) for who in ("old", "new")}
        old = stack.enter_context(running(app_server("gunicorn", "127.0.0.1", app_port, "old", tmp_path),
                                          env={"WHO": "old"}, stdout=logs["old"], stderr=logs["old"]))  # fmt: skip
        stack.enter_context(running(app_server("gunicorn", "127.0.0.2", app_port, "new", tmp_path),
                                    env={"WHO": "new"}, stdout=logs["new"], stderr=logs["new"]))  # fmt: skip
        # One worker: the one that gets the last answer naming the old address takes every request after it.
        url = stack.enter_context(compose_nginx(tmp_path, "gunicorn", names, app_port, workers=1))
        wait_for(lambda: who(url) == "200 old", timeout=30, what="nginx to reach the app at its first address")
        old.terminate()
        old.wait(10)
        # nginx's next question still gets the old address (held for valid=), every later one the new container's.
        names.change_after_next_answer({"app": ["127.0.0.2"]})
        seen: list[tuple[float, str]] = []
        for _ in range(2000):  # bounded: requests every 20 ms until a while past NEW_ADDRESS_WITHIN after the change
            sent = time.monotonic()
            answer = who(url)
            seen.append((sent, answer if answer.startswith("200 ") else answer[:3]))  # a 502's page has a request id
            if names.changed.is_set() and sent - names.changed_at > NEW_ADDRESS_WITHIN + 1.5:
                break
            time.sleep(0.02)
    assert names.changed.is_set(), "nginx never asked for the app's address again"
    late = [answer for sent, answer in seen if sent - names.changed_at > NEW_ADDRESS_WITHIN]
    window = Counter(answer for sent, answer in seen if sent >= names.changed_at)
    assert late and set(late) == {"200 new"}, f"{NEW_ADDRESS_WITHIN} s after the change: {Counter(late)}, all: {window}"


@pytest.mark.integration
@pytest.mark.parametrize("dns", ["refusing", "silent"])
def test_compose_nginx_answers_the_apps_502_when_the_dns_does_not_answer(tmp_path: Path, dns: str) -> None:
    """Docker's DNS down (its port refusing) or not answering: nginx waited its own resolver_timeout, 30 s, before its
    502. Now the app's 502 page comes within proxy_connect_timeout, as for an app server that does not accept."""
    (tmp_path / "who.py").write_text(WHO_APP)
    app_port = free_port()
    names = Names({"app": ["127.0.0.1"]})  # never serving: a query waits in its socket unanswered
    with ExitStack() as stack:
        stack.callback(names.sock.close)
        if dns == "refusing":
            names.sock.close()
        log = stack.enter_context((tmp_path / "app.log").open("w"))
        stack.enter_context(running(app_server("gunicorn", "127.0.0.1", app_port, "app", tmp_path),
                                    env={"WHO": "app"}, stdout=log, stderr=log))  # fmt: skip
        url = stack.enter_context(compose_nginx(tmp_path, "gunicorn", names, app_port))
        conf = (tmp_path / "nginx/nginx.conf").read_text()
        connect_timeout = int(re.findall(r"proxy_connect_timeout (\d+)s;", conf)[0])
        page = requests.get(f"{url}/", headers={"Host": "localhost", "Accept": "application/json"},
                            timeout=connect_timeout + 5)  # fmt: skip
    assert page.status_code == 502, page.text
    rid = page.headers["X-Request-ID"]
    assert page.json()["error"] == {"status": 502, "message": DESCRIPTIONS[502][1], "request_id": rid}
    assert "could not be resolved (110: Operation timed out)" in (tmp_path / "nginx.log").read_text()
