"""`flaskprod up` with every worker busy: the app's deadline counts the time a request queued, as nginx's does.

nginx's read timeout (server.timeout + 2 s) counts from when it passed the request on, queue included. A
deadline counted from when a worker took the request let nginx answer 504 first, while the app ran the
request to the end for nobody and counted it as a 200.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support import free_port, wait_for
from tests.upstack import UpStack, start_up, stop, write_app

pytestmark = pytest.mark.integration

SERVER_TIMEOUT = 4  # server.timeout: the app's deadline (the review's)
PROXY_READ = SERVER_TIMEOUT + 2  # sizing.PROXY_MARGIN: nginx's 504
APP = """
import os
import signal
import time

from flask import Flask, request

from flaskprod import Production

app = Flask(__name__)
Production(app)
RAN = {ran!r}


def ran(what):
    with open(RAN, "a") as log:
        log.write(what + "\\n")


@app.get("/busy")
def busy():
    # Python-level work: the deadline stops it on either kind of worker.
    end = time.monotonic() + float(request.args["s"])
    while time.monotonic() < end:
        pass
    ran("busy finished")
    return "done"


@app.get("/stuck")
def stuck():
    # As one long C call: the timer's signal waits (a thread's sleep is never cut short), so the deadline
    # stops it only when it returns, and its worker is busy until then.
    ran("stuck")
    signal.pthread_sigmask(signal.SIG_BLOCK, {{signal.SIGALRM}})
    try:
        time.sleep(float(request.args["s"]))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {{signal.SIGALRM}})
    return "done"


@app.get("/touch")
def touch():
    ran("touched")
    return "touched"
"""


@pytest.fixture(
    scope="module",
    params=[("gunicorn", 2, 1), ("uwsgi", 2, 1), ("gunicorn", 1, 2), ("uwsgi", 1, 2)],
    ids=["gunicorn-sync", "uwsgi-sync", "gunicorn-threads", "uwsgi-threads"],
)
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpStack]:
    """Two requests at a time: two single-threaded workers (the deadline is a timer), or one with two threads
    (the watchdog raises in them)."""
    kind, workers, threads = request.param
    root = tmp_path_factory.mktemp(f"queue-{kind}-{threads}")
    write_app(root, APP.format(ran=str(root / "ran.log")))
    running = start_up(
        root, kind, free_port(),
        "--workers", str(workers), "--threads", str(threads), "--timeout", str(SERVER_TIMEOUT),
    )
    try:
        running.wait_ready()
        yield running
    finally:
        stop(running)


def ran(stack: UpStack) -> list[str]:
    """What the app's views did, in order."""
    log = stack.root / "ran.log"
    return log.read_text().splitlines() if log.exists() else []


def timed_get(stack: UpStack, path: str) -> tuple[requests.Response, float]:
    started = time.monotonic()
    response = stack.get(path, timeout=PROXY_READ + 10, headers={"Accept": "application/json"})
    return response, time.monotonic() - started


def assert_the_apps_504(response: requests.Response, *messages: str) -> None:
    """The app's own 504 (JSON, as asked), not nginx's (its HTML page, signed "nginx"), with one of these messages."""
    assert response.status_code == 504
    assert response.headers["Content-Type"] == "application/json", response.text
    assert response.json()["error"]["message"] in messages, response.text


def requests_counted(stack: UpStack) -> dict[tuple[str, str], float]:
    """http_requests_total by (endpoint, status), as the scraper reads it through nginx."""
    return {
        (sample.labels["endpoint"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(stack.get("/metrics").text)
        for sample in family.samples
        if sample.name == "http_requests_total"
    }


def test_requests_queued_behind_busy_workers_get_the_apps_504_at_the_deadline(stack: UpStack) -> None:
    """The review's case: four 3 s requests, two at a time, a 4 s timeout. The two that waited for a worker have
    1 s left when they start: the app stops them at 4 s (nginx's 504 came at 6 s, and they ran on)."""
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda n: timed_get(stack, f"/busy?s=3&n={n}"), range(4)))
    statuses = [response.status_code for response, _ in results]
    # Two, unless a busy host held up one of the first two by a second: then it is past its deadline too.
    assert statuses.count(504) >= 2 and statuses.count(200) + statuses.count(504) == 4, statuses
    for response, elapsed in results:
        if response.status_code == 504:
            # Stopped; or, on a host slow by a second more, handed to the app past its deadline and not run.
            assert_the_apps_504(
                response,
                "The request took too long and was stopped.",
                "The request waited too long for the app and was not run.",
            )
            assert SERVER_TIMEOUT - 0.2 <= elapsed < PROXY_READ - 0.5
    assert ran(stack) == ["busy finished"] * statuses.count(200)  # the stopped ones never finish, for nobody
    # What the clients got is what the app counted.
    counts = requests_counted(stack)
    assert counts.get(("/busy", "200"), 0) == statuses.count(200), counts
    assert counts.get(("/busy", "504")) == statuses.count(504), counts


def test_a_request_that_waited_past_its_deadline_is_answered_at_once_and_never_run(stack: UpStack) -> None:
    """Both workers (or threads) stuck for 5 s: requests sent meanwhile reach the app about 5 s later, past their
    4 s deadline. The app answers them 504 at once, without running their view (they ran, and counted 200)."""
    with ThreadPoolExecutor(4) as pool:
        stuck = [pool.submit(timed_get, stack, "/stuck?s=5") for _ in range(2)]
        wait_for(lambda: ran(stack).count("stuck") == 2, timeout=3, what="both /stuck requests in the app")
        touched = [pool.submit(timed_get, stack, f"/touch?n={n}") for n in range(2)]
        stuck_results = [future.result() for future in stuck]
        touched_results = [future.result() for future in touched]
    for response, elapsed in stuck_results:
        assert_the_apps_504(response, "The request took too long and was stopped.")
        assert 5 <= elapsed < PROXY_READ
    for response, elapsed in touched_results:
        assert_the_apps_504(response, "The request waited too long for the app and was not run.")
        assert elapsed < PROXY_READ - 0.5  # answered as a worker came free, about 5 s after it was sent
    assert "touched" not in ran(stack)
    counts = requests_counted(stack)
    assert counts.get(("/touch", "504")) == 2 and ("/touch", "200") not in counts, counts
    assert counts.get(("/stuck", "504")) == 2, counts
    # Logged: the app's lines reach up's output through serve's relay, the second a moment after its answer.
    waited = "The request waited too long for the app and was not run."
    wait_for(lambda: stack.stdout().count(waited) >= 2, timeout=10, what="both 504s logged")


def test_with_metrics_off_the_deadline_still_counts_from_nginx(tmp_path_factory: pytest.TempPathFactory) -> None:
    """nginx sends X-Request-Start for the deadline, not only for the wait's histogram: with metrics off a request
    that waited past its deadline was run as ever (nginx sent no start, the app counted from its own)."""
    root = tmp_path_factory.mktemp("queue-metrics-off")
    write_app(root, APP.format(ran=str(root / "ran.log")))
    running = start_up(root, "uwsgi", free_port(), "--workers", "1", "--threads", "1", "--timeout",
                       str(SERVER_TIMEOUT), "--set", "monitoring.metrics=false")  # fmt: skip
    try:
        running.wait_ready()
        with ThreadPoolExecutor(2) as pool:
            stuck = pool.submit(timed_get, running, "/stuck?s=5")
            wait_for(lambda: ran(running) == ["stuck"], timeout=3, what="the /stuck request in the app")
            touched = pool.submit(timed_get, running, "/touch")
            assert_the_apps_504(stuck.result()[0], "The request took too long and was stopped.")
            response, elapsed = touched.result()
        assert_the_apps_504(response, "The request waited too long for the app and was not run.")
        assert elapsed < PROXY_READ - 0.5
        assert ran(running) == ["stuck"]
    finally:
        stop(running)
