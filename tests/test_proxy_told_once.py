"""The warning of an app's own ProxyFix trusting other hops than proxy.trusted_hops, once per `flaskprod serve`
start: serve's probe, which loads the app before the app server does, tells it; Gunicorn's workers and uWSGI's
master, each loading the app again (at start, and at a reload), do not."""

from __future__ import annotations

import os
import signal

import pytest

from tests.conftest import Server, StartServer
from tests.support import wait_for
from tests.upstack import iter_json_lines

INNER_TOLD = (
    "the app's ProxyFix trusts x_for=2 but proxy.trusted_hops = 1: the app reads another client address from "
    "X-Forwarded-* than flaskprod's layer does (its logs, metrics allow list, HSTS); remove the app's ProxyFix, "
    "or, if that many proxies really are in front, set proxy.trusted_hops = 2 (FP-C008)"
)
OUTER_TOLD = (
    "the app's ProxyFix, wrapped after Production(app), trusts x_for=2 but proxy.trusted_hops = 1: flaskprod's layer "
    "inside it reads X-Forwarded-* again, so the app gets flaskprod's client address, not its ProxyFix's; remove the "
    "app's ProxyFix, or, if that many proxies really are in front, set proxy.trusted_hops = 2 (FP-C008)"
)

APP = """
import os

from flask import Flask, request
from werkzeug.middleware.proxy_fix import ProxyFix

from flaskprod import Production

app = Flask(__name__)
if not {wrap_after}:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)
Production(app)
if {wrap_after}:
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=2)


@app.get("/pid")
def pid():
    return str(os.getpid())
"""


def told(server: Server) -> list[str]:
    """Every warning about the app's ProxyFix the serve process tree wrote, on stdout (the app's logs) and stderr
    (the probe's output, relayed as JSON)."""
    lines = [*iter_json_lines(server.stdout()), *iter_json_lines(server.stderr())]
    return [line["message"] for line in lines if line.get("log.level") == "warning" and "ProxyFix" in line["message"]]


def workers_serving(server: Server, count: int) -> set[str]:
    """The pids of count workers, each having answered (and so loaded the app and settled it at its first request)."""
    seen: set[str] = set()

    def all_answered() -> bool:
        seen.add(server.get("/pid").text)
        return len(seen) >= count

    wait_for(all_answered, timeout=30, what=f"{count} workers answering")
    return seen


@pytest.mark.integration
@pytest.mark.parametrize(
    ("kind", "wrap_after"),
    [("gunicorn", False), ("gunicorn", True), ("uwsgi", True)],
    ids=["gunicorn-before-production", "gunicorn-after-production", "uwsgi-after-production"],
)
def test_a_server_of_four_workers_tells_the_apps_proxy_fix_once_and_not_again_at_a_reload(
    serve_app: StartServer, kind: str, wrap_after: bool
) -> None:
    """Before the fix: Gunicorn's 4 workers told it 4 times on stdout, and serve's probe a 5th on stderr; uWSGI's
    master once more than the probe, and again at each reload (SIGHUP)."""
    server = serve_app(
        APP.format(wrap_after=wrap_after),
        workers=4,
        args=("--server", kind),
        env={"FLASKPROD_PROXY__TRUSTED_HOPS": "1"},
    )
    first = workers_serving(server, 4)
    assert told(server) == [OUTER_TOLD if wrap_after else INNER_TOLD], server.output()

    os.kill(server.proc.pid, signal.SIGHUP)  # serve reloads the app server: its workers load the app afresh
    wait_for(lambda: server.get("/pid").text not in first, timeout=30, what="a reloaded worker answering")
    workers_serving(server, 4)
    assert told(server) == [OUTER_TOLD if wrap_after else INNER_TOLD], server.output()
