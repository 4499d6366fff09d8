"""Prometheus metrics under multi-process servers: the totals at /metrics equal the requests made across workers."""

from __future__ import annotations

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from flaskprod.runtime.metrics import pid_of_file
from tests.conftest import Server, StartServer

pytestmark = pytest.mark.integration

APP = """
import os

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/items/<int:item_id>")
def item(item_id):
    return {"item": item_id, "pid": os.getpid()}
"""

WORKERS = 4
REQUESTS = 200
CLIENTS = 8
RULE = "/items/<int:item_id>"


def fetch_item(server: Server, item_id: int) -> int:
    """One request on its own connection (so any worker may accept it); the pid of the worker that served it."""
    response = server.get(f"/items/{item_id}", headers={"Connection": "close"}, timeout=10)
    assert response.status_code == 200, response.text
    return int(response.json()["pid"])


def samples_named(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Every sample called name in a Prometheus exposition, as (labels, value)."""
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


RECYCLE_AFTER = 30


# Recycled: each worker exits after 30 requests and a new one takes its place mid-load; the dead
# workers' counts must stay in the totals and their in-progress gauges must leave them. Preloaded: the
# master imports the app, and with it writes metric files, before it forks the workers.
@pytest.mark.parametrize("mode", ["steady-workers", "recycled-workers", "preloaded"])
def test_request_totals_across_four_workers_equal_the_requests_made(serve_app: StartServer, mode: str) -> None:
    recycle = mode == "recycled-workers"
    args = {
        "steady-workers": (),
        "recycled-workers": ("--set", f"server.max_requests={RECYCLE_AFTER}", "--set", "server.max_requests_jitter=0"),
        "preloaded": ("--set", "server.preload=true"),
    }[mode]
    server = serve_app(APP, workers=WORKERS, args=args)
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENTS) as pool:
        pids = Counter(pool.map(lambda i: fetch_item(server, i), range(REQUESTS), timeout=60))
    assert time.monotonic() - started < 60
    assert sum(pids.values()) == REQUESTS
    assert len(pids) > 1, f"one worker served everything ({pids}); the test would not cover multi-process metrics"
    if recycle:
        assert len(pids) > WORKERS, f"no worker was recycled ({pids}); max_requests did not reach the server"

    # A path that matches no route must not become a label value either: scanners would explode the series.
    assert server.get("/no-such-page/12345").status_code == 404

    response = server.get("/metrics")
    assert response.status_code == 200, f"{response.status_code}: {response.text[:500]}\n{server.output()[-3000:]}"
    text = response.text
    samples = samples_named(text, "http_requests_total")
    ours = [(labels, value) for labels, value in samples if labels.get("endpoint") == RULE]
    assert ours, f"no http_requests_total sample with endpoint={RULE!r}: {samples}"
    assert sum(value for _, value in ours) == REQUESTS
    for labels, _ in ours:
        assert labels["method"] == "GET"
        assert labels["status"] == "200"
    # The raw path would give one series per item id and grow without bound.
    endpoints = {labels.get("endpoint", "") for labels, _ in samples}
    raw = {e for e in endpoints if e.startswith(("/items/", "/no-such-page")) and e != RULE}
    assert not raw, f"endpoint labelled by raw path: {raw}"
    gauges = samples_named(text, "http_requests_in_progress")
    in_progress = [value for labels, value in gauges if labels.get("endpoint") == RULE]
    assert sum(in_progress) == 0, f"requests still counted in progress after all were answered: {in_progress}"


APP_NAME, APP_VERSION = "shop", "1.2.3"


def test_metrics_is_prometheus_text_with_latency_and_app_info(serve_app: StartServer) -> None:
    env: dict[str, str | None] = {"FLASKPROD_APP__NAME": APP_NAME, "FLASKPROD_APP__VERSION": APP_VERSION}
    server = serve_app(APP, workers=2, env=env)
    assert server.get("/items/1").status_code == 200
    response = server.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    latency = [f for name, f in families.items() if name.startswith("http_request_duration")]
    assert latency and latency[0].type == "histogram", sorted(families)
    buckets = [s for s in latency[0].samples if s.name.endswith("_count") and s.labels.get("endpoint") == RULE]
    assert sum(s.value for s in buckets) == 1
    assert "app_info" in families, sorted(families)
    info = families["app_info"].samples
    assert [(s.labels["name"], s.labels["version"], s.value) for s in info] == [(APP_NAME, APP_VERSION, 1.0)]


@pytest.mark.parametrize("kind", ["uwsgi", "gunicorn"])
def test_workers_past_their_memory_bound_are_recycled_and_keep_their_counts(serve_app: StartServer, kind: str) -> None:
    # A 1 MiB bound: every worker is past it, so each is recycled once it has lived 10 s (the supervisor
    # looks once a second); a request every 0.5 s for at most 30 s sees that.
    server = serve_app(APP, workers=2, args=("--server", kind, "--set", "server.recycle_memory_mb=1"))
    pids: list[int] = []
    deadline = time.monotonic() + 30
    while len(set(pids)) <= 2 and time.monotonic() < deadline:
        pids.append(fetch_item(server, len(pids)))
        time.sleep(0.5)
    assert len(set(pids)) > 2, f"no worker was recycled in 30 s ({pids}); recycle_memory_mb did not reach {kind}"
    text = server.get("/metrics").text
    ours = [value for labels, value in samples_named(text, "http_requests_total") if labels.get("endpoint") == RULE]
    assert sum(ours) == len(pids)


STREAMING_APP = """
import time
from pathlib import Path

from flask import Flask, Response, stream_with_context

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/export")
def export():
    def rows():
        for i in range(10):
            time.sleep(0.1)
            yield f"{i}\\n"

    return Response(stream_with_context(rows()), mimetype="text/csv")
"""


def export_samples(text: str, name: str) -> list[float]:
    return [value for labels, value in samples_named(text, name) if labels.get("endpoint") == "/export"]


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_a_streamed_response_is_timed_to_its_end_even_when_the_client_leaves(
    serve_app: StartServer, kind: str
) -> None:
    server = serve_app(STREAMING_APP, workers=2, args=("--server", kind))
    assert server.get("/export").text == "".join(f"{i}\n" for i in range(10))
    with server.get("/export", stream=True) as response:  # a client that reads one row and leaves
        next(response.iter_content(2))
    deadline = time.monotonic() + 10
    while True:  # the worker notices the client gone at its next write
        text = server.get("/metrics").text
        in_progress = export_samples(text, "http_requests_in_progress")
        if (in_progress and sum(in_progress) == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert sum(in_progress) == 0, f"a streamed request left counted in progress: {in_progress}"
    assert export_samples(text, "http_request_duration_seconds_count") == [2]
    # The rows take a second to make: the time of the body, not the microseconds before the view returned.
    assert export_samples(text, "http_request_duration_seconds_sum")[0] >= 1.0


# Gunicorn alone: uWSGI recycles no worker younger than min-worker-lifetime (10 s), so it would take minutes to
# recycle enough; its reap_metrics archives as child_exit does (the memory-bound test above keeps the totals there).
def test_recycled_workers_leave_their_counts_but_not_their_files(serve_app: StartServer, tmp_path: Path) -> None:
    """Each recycled worker's files are folded into one archive: the directory a scrape reads stays the size of the
    live workers', however many came and went, and the totals stay exact."""
    directory = tmp_path / "metrics"
    workers, threads = 2, 4
    server = serve_app(APP, workers=workers, args=(
        "--server", "gunicorn", "--threads", str(threads), "--set", "server.max_requests=10",
        "--set", "server.max_requests_jitter=0", "--set", f"monitoring.multiproc_dir={directory}",
    ))
    with ThreadPoolExecutor(CLIENTS) as pool:
        pids = Counter(pool.map(lambda i: fetch_item(server, i), range(REQUESTS), timeout=60))
    assert len(pids) > 5 * workers, f"too few workers recycled ({pids}) for the bound to show"
    # A live worker writes a counter, a histogram and an in-progress file per thread, and prometheus_client's
    # app_info; one worker more may be between its exit and the arbiter's reaping it; and the archive.
    bound = (workers + 1) * (3 * threads + 1) + 1
    deadline = time.monotonic() + 10
    while len(files := sorted(f.name for f in directory.iterdir())) > bound and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(files) <= bound, files
    text = server.get("/metrics").text
    ours = [value for labels, value in samples_named(text, "http_requests_total") if labels.get("endpoint") == RULE]
    assert sum(ours) == REQUESTS


@pytest.mark.parametrize("kind", ["gunicorn", "uwsgi"])
def test_replaced_workers_files_are_archived_and_their_counts_kept(
    serve_app: StartServer, tmp_path: Path, kind: str
) -> None:
    """Gunicorn's child_exit and the uWSGI supervisor's sweep both archive an exited worker's files."""
    directory = tmp_path / "metrics"
    server = serve_app(APP, workers=2, args=("--server", kind, "--set", f"monitoring.multiproc_dir={directory}"))
    old = {fetch_item(server, i) for i in range(20)}
    server.proc.send_signal(signal.SIGHUP)  # new workers for old

    def old_files() -> list[str]:
        return [f.name for f in directory.iterdir() if pid_of_file(f.name) in old]

    made, deadline = 20, time.monotonic() + 20
    while time.monotonic() < deadline:
        served_by = fetch_item(server, made)
        made += 1
        if served_by not in old and not old_files():
            break
        time.sleep(0.2)
    assert not old_files(), f"the replaced workers' files are still there: {old_files()}"
    text = server.get("/metrics").text
    ours = [value for labels, value in samples_named(text, "http_requests_total") if labels.get("endpoint") == RULE]
    assert sum(ours) == made
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    assert not list(directory.iterdir()), "a configured directory is left empty, the archive gone with the files"
