"""A scrape is answered while every worker is busy: under `flaskprod up --with monitoring` nginx's metrics listener
passes scrapes to the app server's metrics responder (servers/responder.py), beside the worker pool, not through
the app server's socket, where they waited behind every queued request: with each worker thread asleep in a
request, a scrape got nginx's 504 after seconds, Prometheus read `up` 0 and AppDown hid the alerts naming the
overload.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.support import free_port, wait_for
from tests.upstack import Loader, UpStack, start_up, stop, summary, write_app

pytestmark = pytest.mark.integration

JOB = "shop"
WORKERS, THREADS = 2, 2
SLEEP = 1.0
# Clients of the sleeping handler: eight for each worker thread. A Gunicorn gthread worker accepts connections while
# its threads are busy, so with a few clients one worker could hold them all and leave the other's threads idle.
# The longest wait (every client queued at one worker: 16 sleeps of 1 s) stays within server.timeout (60) and the
# load's own client timeout (30 s: with 2 s sleeps, 2 of 40 requests timed out in CI).
CLIENTS = 8 * WORKERS * THREADS
# Seconds a scrape may take while every worker is busy; the responder answers in milliseconds.
PROMPTLY = 1.0
PINGS = 25


def sample(text: str, metric: str, **labels: str) -> float:
    """The sum of metric's series that carry these labels, among others (0 when none)."""
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(r"([a-z_]+)\{(.*)\} (\S+)", line)
        if match and match[1] == metric:
            have = dict(re.findall(r'(\w+)="([^"]*)"', match[2]))
            if all(have.get(key) == value for key, value in labels.items()):
                total += float(match[3])
    return total


@pytest.fixture(params=["gunicorn", "uwsgi"])
def saturable(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[UpStack, int]]:
    write_app(tmp_path)
    metrics_port = free_port()
    stack = start_up(
        tmp_path, request.param, free_port(), "--workers", str(WORKERS), "--threads", str(THREADS),
        "--timeout", "60", "--with", "monitoring", "--set", f"app.name={JOB}",
        "--set", f"monitoring.prometheus_port={free_port()}", "--set", f"monitoring.metrics_port={metrics_port}",
        "--set", f"monitoring.alertmanager_port={free_port()}",
    )  # fmt: skip
    try:
        stack.wait_ready()
        yield stack, metrics_port
    finally:
        stop(stack)


def test_a_scrape_is_answered_at_once_and_exactly_while_every_worker_is_busy(saturable: tuple[UpStack, int]) -> None:
    stack, metrics_port = saturable

    def scrape(path: str = "/metrics") -> tuple[requests.Response, float]:
        started = time.monotonic()
        response = requests.get(f"http://127.0.0.1:{metrics_port}{path}", timeout=15)
        return response, time.monotonic() - started

    for _ in range(PINGS):
        assert stack.get("/api/ping").status_code == 200
    loader = Loader(stack.port, path=f"/slow?s={SLEEP}", threads=CLIENTS, max_requests=6 * CLIENTS, max_seconds=5.0)
    loader.start()
    try:
        busy = WORKERS * THREADS

        def saturated() -> bool:
            return sample(scrape()[0].text, "http_requests_in_progress", endpoint="/slow") == busy

        wait_for(saturated, timeout=10, interval=0.05, what="every worker thread busy in /slow")
        # While every thread sleeps and more requests queue: each scrape answers promptly, with exact counts.
        for path in ("/metrics", "/releases/1/metrics", "/metrics"):
            response, took = scrape(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:300])
            assert took < PROMPTLY, f"{path} took {took:.2f}s with every worker busy"
            assert response.headers["Content-Type"].startswith("text/plain; version=")
            assert sample(response.text, "http_requests_in_progress", endpoint="/slow") == busy
            assert sample(response.text, "http_requests_total", endpoint="/api/ping", status="200") == PINGS
            assert sample(response.text, "app_info", name=JOB) == 1
    finally:
        outcomes = loader.join()
    assert loader.count("ok") == len(outcomes), summary(outcomes)

    # Once the load is over, every request is counted once: the responder reads what the workers wrote.
    final, _ = scrape()
    assert sample(final.text, "http_requests_total", endpoint="/slow", status="200") == len(outcomes)
    assert sample(final.text, "http_requests_in_progress", endpoint="/slow") == 0
    assert sample(final.text, "http_requests_total", endpoint="/api/ping", status="200") == PINGS
    # Scrapes never reach the app's workers: none is counted among its requests.
    assert sample(final.text, "http_requests_total", endpoint="/metrics") == 0
