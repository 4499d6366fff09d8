"""Prometheus metrics: labels by route rule, private registries, multi-process mode."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask import Flask, Response, stream_with_context
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from flaskprod import Production
from flaskprod.runtime import mark_worker_dead, metricfiles, prepare_multiproc_dir
from flaskprod.runtime.metricfiles import ARCHIVE, FilesCollector
from flaskprod.runtime.metrics import MULTIPROC_ENV, HttpMetrics, Route, Slot, pid_of_file
from flaskprod.runtime.pipeline import seconds_since
from flaskprod.spec import Spec


@pytest.fixture(autouse=True)
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)


def make_app(**settings: object) -> tuple[Flask, Production]:
    app = Flask(__name__)
    app.config["SECRET_KEY"] = secrets.token_hex(32)

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> str:
        return str(item_id)

    @app.route("/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    @app.get("/export")
    def export() -> Response:
        def rows() -> Iterator[str]:  # a view whose work runs as the server reads the body
            for i in range(3):
                time.sleep(0.1)
                yield f"{i}\n"

        return Response(stream_with_context(rows()), mimetype="text/csv")

    @app.get("/export-fails")
    def export_fails() -> Response:
        def rows() -> Iterator[str]:
            yield "first\n"
            raise RuntimeError("failed mid-stream")

        return Response(stream_with_context(rows()), mimetype="text/csv")

    @app.get("/events")
    def events() -> Response:
        def stream() -> Iterator[str]:
            time.sleep(0.3)
            yield "data: 1\n\n"

        return Response(stream(), mimetype="text/event-stream")

    def room() -> str:
        time.sleep(0.3)
        return ""

    app.add_url_rule("/ws", "room", room, websocket=True)
    prod = Production(app, spec=Spec().replace(**settings))
    return app, prod


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(text: str, metric: str, **labels: str) -> float | None:
    return samples(text).get((metric, tuple(sorted(labels.items()))))


def test_endpoint_label_is_the_route_rule_not_the_path() -> None:
    app, _ = make_app()
    client = app.test_client()
    for i in range(3):
        client.get(f"/items/{i}")
    client.get("/no/such/page")
    client.get("/another/missing/page")
    text = client.get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 3
    assert value(text, "http_requests_total", method="GET", endpoint="<unmatched>", status="404") == 2
    assert "/items/1" not in text
    assert "/no/such/page" not in text
    count = value(text, "http_request_duration_seconds_count", method="GET", endpoint="/items/<int:item_id>")
    assert count == 3


def test_probes_are_counted_under_their_path() -> None:
    app, _ = make_app()
    client = app.test_client()
    client.get("/healthz")
    text = client.get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/healthz", status="200") == 1


def test_errors_are_counted_as_500() -> None:
    app, _ = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False
    client = app.test_client()
    assert client.get("/boom").status_code == 500
    text = client.get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/boom", status="500") == 1


def test_in_progress_returns_to_zero() -> None:
    app, _ = make_app()
    client = app.test_client()
    client.get("/items/1")
    text = client.get("/metrics").text
    assert value(text, "http_requests_in_progress", method="GET", endpoint="/items/<int:item_id>") == 0


def test_a_streamed_response_is_in_progress_and_timed_until_the_server_closes_it() -> None:
    app, _ = make_app()
    client = app.test_client()
    export = {"method": "GET", "endpoint": "/export"}
    with client.get("/export", buffered=False) as response:
        text = client.get("/metrics").text
        assert value(text, "http_requests_in_progress", **export) == 1
        assert value(text, "http_requests_total", **export, status="200") is None
        assert response.get_data() == b"0\n1\n2\n"
    text = client.get("/metrics").text
    assert value(text, "http_requests_in_progress", **export) == 0
    assert value(text, "http_requests_total", **export, status="200") == 1
    # The time the view spent making the body, not the microseconds before it returned.
    assert (value(text, "http_request_duration_seconds_sum", **export) or 0) >= 0.3
    assert value(text, "http_request_duration_seconds_bucket", **export, le="0.25") == 0


def test_conversations_are_counted_and_in_progress_but_no_requests_latency() -> None:
    """A WebSocket or an event stream lasts as long as its client listens: its minutes in the duration histogram
    would swamp the latencies (and fire SlowRequests), so it is left out of it, and counted and in progress."""
    app, _ = make_app()
    client = app.test_client()
    with client.get("/events", buffered=False) as response:
        text = client.get("/metrics").text
        assert value(text, "http_requests_in_progress", method="GET", endpoint="/events") == 1
        assert response.get_data() == b"data: 1\n\n"
    handshake = {"Upgrade": "websocket", "Connection": "Upgrade"}
    assert client.get("/ws", headers=handshake, environ_base={"wsgi.url_scheme": "ws"}).status_code == 200
    client.get("/items/1")
    text = client.get("/metrics").text
    for endpoint in ("/events", "/ws"):
        assert value(text, "http_requests_total", method="GET", endpoint=endpoint, status="200") == 1
        assert value(text, "http_requests_in_progress", method="GET", endpoint=endpoint) == 0
        assert value(text, "http_request_duration_seconds_count", method="GET", endpoint=endpoint) in (None, 0)
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/items/<int:item_id>") == 1


def test_unknown_methods_share_one_label() -> None:
    app, _ = make_app()
    client = app.test_client()
    client.open("/items/1", method="FOO")
    client.open("/items/1", method="BAR")
    text = client.get("/metrics").text
    assert "FOO" not in text and "BAR" not in text
    assert value(text, "http_requests_total", method="OTHER", endpoint="<unmatched>", status="405") == 2



def test_a_streamed_response_that_fails_midway_is_counted_and_logged_as_failed(
    capsys: pytest.CaptureFixture[str],
) -> None:
    app, _ = make_app()
    client = app.test_client()
    with pytest.raises(RuntimeError, match="failed mid-stream"):  # the server sees it, and cuts the body short
        client.get("/export-fails", buffered=True)
    text = client.get("/metrics").text
    export = {"method": "GET", "endpoint": "/export-fails"}
    assert value(text, "http_requests_total", **export, status="500") == 1
    assert value(text, "http_requests_total", **export, status="200") is None
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "while streaming" in line]
    assert line["message"] == "exception while streaming the response to GET /export-fails"
    assert line["log.level"] == "error" and line["error"]["message"] == "failed mid-stream"
    assert len(line["http"]["request"]["id"]) == 32

def count_from_threads(app: Flask, threads: int, each: int) -> None:
    def work() -> None:
        client = app.test_client()
        for i in range(each):
            assert client.get(f"/items/{i}").status_code == 200

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)


def test_threads_count_without_losing_a_request() -> None:
    """Each thread counts in its own slot; the exposition sums them."""
    app, _ = make_app()
    count_from_threads(app, threads=8, each=150)
    text = app.test_client().get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 1200
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/items/<int:item_id>") == 1200
    assert value(text, "http_requests_in_progress", method="GET", endpoint="/items/<int:item_id>") == 0


def test_a_finished_threads_slot_goes_to_the_next_thread() -> None:
    """Servers that start a thread per request must not grow a slot per request."""
    app, prod = make_app()
    for _ in range(5):
        count_from_threads(app, threads=3, each=2)
    assert prod._metrics is not None and len(prod._metrics._slots) <= 3
    text = app.test_client().get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 30


def test_app_info_carries_name_and_version() -> None:
    app, _ = make_app(**{"app.name": "shop", "app.version": "1.2.3"})
    text = app.test_client().get("/metrics").text
    assert value(text, "app_info", name="shop", version="1.2.3") == 1


def test_each_instance_has_its_own_registry() -> None:
    first, prod1 = make_app()
    second, prod2 = make_app()
    assert prod1.registry is not None and prod1.registry is not prod2.registry
    first.test_client().get("/items/1")
    text = second.test_client().get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") is None


def test_metrics_path_and_switch() -> None:
    app, _ = make_app(**{"monitoring.metrics_path": "/-/metrics"})
    client = app.test_client()
    response = client.get("/-/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    assert client.get("/metrics").status_code == 404
    off, prod = make_app(**{"monitoring.metrics": False})
    assert prod.registry is None
    assert off.test_client().get("/metrics").status_code == 404


def queue_buckets(text: str) -> dict[str, float]:
    return {
        dict(labels)["le"]: count
        for (name, labels), count in samples(text).items()
        if name == "http_request_queue_seconds_bucket"
    }


def test_the_wait_before_the_app_is_counted_from_a_trusted_proxys_request_start() -> None:
    app, _ = make_app(**{"proxy.trusted_hops": 1})
    client = app.test_client()
    # As nginx sends it ("t=" and $msec): passed on 20 ms before the app started the request.
    client.get("/items/1", headers={"X-Request-Start": f"t={time.time() - 0.02:.3f}"})
    client.get("/items/2")  # no header: not counted
    client.get("/items/3", headers={"X-Request-Start": "t=soon"})  # not a time: not counted
    text = client.get("/metrics").text
    assert value(text, "http_request_queue_seconds_count") == 1
    assert 0.015 < value(text, "http_request_queue_seconds_sum") < 0.5  # type: ignore[operator]
    buckets = queue_buckets(text)
    assert len(buckets) == 15
    assert buckets["0.01"] == 0 and buckets["0.5"] == 1


@pytest.mark.parametrize("settings", [{}, {"proxy.trusted_hops": 1, "monitoring.queue_time": False}])
def test_a_request_start_is_ignored_without_a_trusted_proxy_or_when_off(settings: dict[str, object]) -> None:
    app, _ = make_app(**settings)
    client = app.test_client()
    client.get("/items/1", headers={"X-Request-Start": f"t={time.time() - 5:.3f}"})
    text = client.get("/metrics").text
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 1
    assert "http_request_queue_seconds" not in text


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1733400000.250", 0.75),  # nginx's $msec: seconds, millisecond steps
        ("t=1733400000250", 0.75),  # milliseconds (Heroku's router)
        ("1733400000250000", 0.75),  # microseconds, without the t=
        ("t=1733400001.5", 0.0),  # ahead of this clock by less than a minute: rounding, so no wait
        ("t=1733500000", None),  # a day ahead: not a time this proxy sent
        ("t=-5", None),
        ("t=", None),
        ("t=1e400", None),
        ("t=nan", None),
    ],
)
def test_request_start_is_read_in_each_common_unit(header: str, expected: float | None) -> None:
    got = seconds_since(header, 1733400001.0)
    assert got == pytest.approx(expected) if expected is not None else got is None


WORKER = """
import os, sys, threading, time
import flaskprod  # prometheus_client is imported before the directory is known, as in the CLI
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from flask import Flask
from flaskprod import Production
from flaskprod.spec import Spec
app = Flask("worker")
app.config["SECRET_KEY"] = os.urandom(32).hex()
app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: "ok")
queue = sys.argv[3] == "queue"  # behind a proxy that says when it passed each request on
Production(app, spec=Spec().replace(**{"logging.access_log": False, "proxy.trusted_hops": int(queue)}))
client = app.test_client()
for i in range(int(sys.argv[2])):
    client.get(f"/items/{i}", headers={"X-Request-Start": f"t={time.time() - 0.02:.3f}"} if queue else {})
if sys.argv[3] == "fork":  # as uWSGI does: a worker forked from a process that has served requests
    child = os.fork()
    if child == 0:
        for i in range(3):
            client.get(f"/items/{i}")
        os._exit(0)
    os.waitpid(child, 0)
if sys.argv[3] == "threads":  # as a threaded worker does: every thread counts in its own files
    def work():
        c = app.test_client()
        for i in range(50):
            c.get(f"/items/{i}")
    pool = [threading.Thread(target=work) for _ in range(4)]
    [t.start() for t in pool]
    [t.join() for t in pool]
if sys.argv[3] in ("scrape", "fork", "threads", "queue"):
    sys.stdout.write(client.get("/metrics").text)
"""


def run_worker(directory: Path, requests: int, action: str = "") -> str:
    result = subprocess.run(
        [sys.executable, "-c", WORKER, str(directory), str(requests), action or "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout


def test_multiprocess_mode_adds_up_every_process(tmp_path: Path) -> None:
    prepare_multiproc_dir(str(tmp_path))
    run_worker(tmp_path, 2)
    run_worker(tmp_path, 3)
    assert list(tmp_path.glob("counter_*.db")), "counters must be written to the shared directory"
    text = run_worker(tmp_path, 0, "scrape")
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 5
    assert value(text, "app_info", name="flaskapp", version="0.0.0") == 1


def test_a_scrape_skips_a_file_a_starting_worker_has_not_sized_yet(tmp_path: Path) -> None:
    prepare_multiproc_dir(str(tmp_path))
    run_worker(tmp_path, 2)
    (tmp_path / "counter_999999-http0.db").touch()  # created, header not yet written
    text = run_worker(tmp_path, 0, "scrape")
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 2


def test_multiprocess_histogram_has_every_bucket(tmp_path: Path) -> None:
    text = run_worker(tmp_path, 4, "scrape")
    buckets = {
        labels["le"]: count
        for (name, label_items), count in samples(text).items()
        if name == "http_request_duration_seconds_bucket"
        for labels in [dict(label_items)]
        if labels["endpoint"] == "/items/<int:item_id>"
    }
    assert len(buckets) == 15 and buckets["+Inf"] == 4
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/items/<int:item_id>") == 4
    assert value(text, "http_requests_in_progress", method="GET", endpoint="/items/<int:item_id>") == 0


def test_multiprocess_mode_adds_up_every_workers_waits(tmp_path: Path) -> None:
    prepare_multiproc_dir(str(tmp_path))
    run_worker(tmp_path, 2, "queue")
    text = run_worker(tmp_path, 3, "queue")
    assert value(text, "http_request_queue_seconds_count") == 5
    buckets = queue_buckets(text)
    assert len(buckets) == 15 and buckets["0.01"] == 0 and buckets["+Inf"] == 5


def test_multiprocess_mode_sums_every_threads_files(tmp_path: Path) -> None:
    text = run_worker(tmp_path, 0, "threads")
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 200
    assert len(list(tmp_path.glob("counter_*-http*.db"))) >= 2, "threads must write files of their own"


def test_a_forked_worker_counts_only_its_own_requests(tmp_path: Path) -> None:
    text = run_worker(tmp_path, 2, "fork")
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 5
    assert value(text, "http_requests_in_progress", method="GET", endpoint="/items/<int:item_id>") == 0
    pids = {pid_of_file(f.name) for f in tmp_path.glob("counter_*-http*.db")}
    assert len(pids) == 2, "the child must write its own files"


GROWING = """
import os, sys
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from flask import Flask
from flaskprod import Production
from flaskprod.spec import Spec
app = Flask("worker")
app.config["SECRET_KEY"] = os.urandom(32).hex()
for i in range(60):
    app.add_url_rule(f"/r{i}", f"r{i}", lambda: "ok")
Production(app, spec=Spec().replace(**{"logging.access_log": False}))
client = app.test_client()
client.get("/r0")
for i in range(60):  # 60 routes' series outgrow the files' first 64 KB: they are mapped again, larger
    client.get(f"/r{i}")
for _ in range(3):
    client.get("/r0")
sys.stdout.write(client.get("/metrics").text)
"""


def test_values_written_before_a_file_grows_keep_counting_after(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", GROWING, str(tmp_path)], capture_output=True, text=True, timeout=60, check=True
    )
    assert max(f.stat().st_size for f in tmp_path.glob("histogram_*-http*.db")) > 1 << 16
    text = result.stdout
    assert value(text, "http_requests_total", method="GET", endpoint="/r0", status="200") == 5
    assert value(text, "http_request_duration_seconds_count", method="GET", endpoint="/r0") == 5
    assert value(text, "http_requests_total", method="GET", endpoint="/r59", status="200") == 1
    assert value(text, "http_requests_in_progress", method="GET", endpoint="/r0") == 0


def test_the_apps_own_metrics_add_up_beside_flaskprods(tmp_path: Path) -> None:
    """flaskprod writes its own files: the app's prometheus_client metrics (same types) must not clobber them."""
    script = WORKER.replace(
        "client = app.test_client()",
        "from flask import request\n"
        "from prometheus_client import Counter, Gauge\n"
        "orders = Counter('orders', 'Orders.', ['item'])\n"
        "busy = Gauge('busy', 'Busy.', ['item'], multiprocess_mode='livesum')\n"
        # A new series each request: prometheus_client adds entries to its files between flaskprod's writes.
        "app.before_request(lambda: (orders.labels(request.path).inc(), busy.labels(request.path).set(2), None)[-1])\n"
        "client = app.test_client()",
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), "3", "scrape"], capture_output=True, text=True, timeout=60,
        check=True,
    )
    text = result.stdout
    assert [value(text, "orders_total", item=f"/items/{i}") for i in range(3)] == [1, 1, 1]
    assert [value(text, "busy", item=f"/items/{i}") for i in range(3)] == [2, 2, 2]
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 3


def test_mark_worker_dead_drops_its_live_gauges_and_archives_its_counts(tmp_path: Path) -> None:
    run_worker(tmp_path, 1)
    live = list(tmp_path.glob("gauge_livesum_*.db"))
    assert len(live) == 1
    pid = pid_of_file(live[0].name)
    assert pid is not None
    mark_worker_dead(pid, str(tmp_path))
    assert not [f for f in tmp_path.glob("*.db") if pid_of_file(f.name) == pid], "the dead worker's files stay"
    assert (tmp_path / ARCHIVE).exists()
    text = run_worker(tmp_path, 0, "scrape")
    assert value(text, "http_requests_total", method="GET", endpoint="/items/<int:item_id>", status="200") == 1


# Beyond any pid Linux gives (pid_max is at most 2**22): these workers are made up.
LIVE_PID, FIRST_DEAD_PID = 5_000_000, 5_000_001
ITEM = {"method": "GET", "endpoint": "/items/<int:item_id>"}


def write_worker(directory: Path, pid: int, *, slots: int = 3) -> None:
    """The files a threaded worker of pid leaves: flaskprod's, one set per thread slot, and prometheus_client's own
    for an app's metrics, a file per kind. Durations and values are multiples of 1/8, so any sum of them is exact."""
    writer = HttpMetrics.__new__(HttpMetrics)  # its counting alone: __init__ would switch prometheus_client's mode
    for n in range(slots):
        slot = Slot(str(directory), pid)
        route = Route(ITEM["method"], ITEM["endpoint"], slot)
        for i in range(n + 2):
            writer.started(route)
            writer.finished(route, 404 if i == 2 else 200, 0.125 * (pid % 5 + i), was_started=True, queued=0.5)
        for file in slot.files.values():
            file.close()  # type: ignore[attr-defined]
    for kind, metric, sample, number in app_series(pid):
        values = MmapedDict(str(directory / f"{kind}_{pid}.db"))
        values.write_value(mmap_key(metric, sample, [], [], f"{metric}."), number, float(pid))
        values.close()


def app_series(pid: int) -> list[tuple[str, str, str, float]]:
    """(file kind, metric, sample, value): every kind that outlives its process, an "all" gauge a series per pid."""
    return [
        ("counter", "orders", "orders_total", pid % 3 + 1.0),
        ("summary", "payload", "payload_sum", pid % 4 * 0.25),
        ("gauge_max", "app_info", "app_info", 1.0),
        ("gauge_max", "peak", "peak", pid % 7 * 1.0),
        ("gauge_min", "low", "low", pid % 7 * 1.0),
        ("gauge_sum", "held", "held", pid % 2 * 1.0),
        ("gauge_mostrecent", "latest", "latest", pid * 1.0),
        ("gauge_all", "temperature", "temperature", pid % 9 * 1.0),
    ]


APP_FILES = len({kind for kind, *_ in app_series(0)})  # a worker's files of prometheus_client's, one per kind


Found = dict[tuple[str, tuple[tuple[str, str], ...]], float]  # samples(): each sample's value by name and labels


def scrape(directory: Path) -> Found:
    registry = CollectorRegistry()
    registry.register(FilesCollector(str(directory)))
    return samples(generate_latest(registry).decode())


def upstream_scrape(directory: Path) -> Found:
    """What prometheus_client's own collector reads from the same files, none of them archived."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, str(directory))  # type: ignore[no-untyped-call]
    return samples(generate_latest(registry).decode())


def value_of(found: Found, metric: str, **labels: str) -> float | None:
    return found.get((metric, tuple(sorted(labels.items()))))


def test_dead_workers_files_are_folded_into_one_archive_and_every_value_stays(tmp_path: Path) -> None:
    """Recycled workers leave no files behind, and /metrics reads as if every file were still there."""
    archived, kept = tmp_path / "archived", tmp_path / "kept"
    archived.mkdir()
    kept.mkdir()
    for directory in (archived, kept):
        write_worker(directory, LIVE_PID)
    live_files = len(list(archived.iterdir()))
    for pid in range(FIRST_DEAD_PID, FIRST_DEAD_PID + 40):  # 40 generations of one worker each
        for directory in (archived, kept):
            write_worker(directory, pid)
        mark_worker_dead(pid, str(archived))
        assert sorted(f.name for f in archived.iterdir() if pid_of_file(f.name) != LIVE_PID) == [ARCHIVE]
        assert len(list(archived.iterdir())) == live_files + 1
    assert len(list(kept.iterdir())) == 41 * live_files
    got = scrape(archived)
    assert got == upstream_scrape(kept)
    assert value_of(got, "http_requests_total", **ITEM, status="200") == 41 * (2 + 2 + 3)
    assert value_of(got, "latest") == FIRST_DEAD_PID + 39
    assert value_of(got, "temperature", pid=str(FIRST_DEAD_PID)) == FIRST_DEAD_PID % 9


def test_a_scrape_at_each_step_of_archiving_a_worker_counts_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between the archive's rename and the removal of the worker's files, and at each removal, the sums stay."""
    for pid in (LIVE_PID, FIRST_DEAD_PID, FIRST_DEAD_PID + 1):
        write_worker(tmp_path, pid)
    mark_worker_dead(FIRST_DEAD_PID, str(tmp_path))  # an archive in place already
    expected = scrape(tmp_path)
    seen: list[Found] = []
    replace = metricfiles._Archive.replace

    def replace_then_scrape(archive: metricfiles._Archive, directory: str) -> None:
        replace(archive, directory)
        seen.append(scrape(tmp_path))

    def remove_scraping_after_each(names: Iterable[str]) -> None:
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)
            seen.append(scrape(tmp_path))

    monkeypatch.setattr(metricfiles._Archive, "replace", replace_then_scrape)
    monkeypatch.setattr(metricfiles, "_remove", remove_scraping_after_each)
    mark_worker_dead(FIRST_DEAD_PID + 1, str(tmp_path))
    files = 3 * 2 + APP_FILES  # a counter and a histogram file per slot, and prometheus_client's
    assert len(seen) == 2 + files, "a scrape after each rename and each removal"
    assert all(found == expected for found in seen)
    assert scrape(tmp_path) == expected


def test_a_scrape_that_an_archiving_overtakes_reads_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape holding the archive from before a worker was archived lists the files after: it must not miss the
    worker, whose files are gone and whose values are only in the archive it did not read."""
    for pid in (LIVE_PID, FIRST_DEAD_PID, FIRST_DEAD_PID + 1):
        write_worker(tmp_path, pid)
    mark_worker_dead(FIRST_DEAD_PID, str(tmp_path))
    expected = scrape(tmp_path)
    overtaken = []

    def glob_after_an_archiving(pattern: str) -> list[str]:
        if not overtaken:
            overtaken.append(FIRST_DEAD_PID + 1)
            mark_worker_dead(FIRST_DEAD_PID + 1, str(tmp_path))
        return glob.glob(pattern)

    monkeypatch.setattr(metricfiles, "glob", SimpleNamespace(glob=glob_after_an_archiving))
    assert scrape(tmp_path) == expected
    assert overtaken and not list(tmp_path.glob(f"*_{FIRST_DEAD_PID + 1}*.db"))


SCRAPER = """
import os, sys
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from flaskprod.runtime.metricfiles import FilesCollector
directory, stop = sys.argv[1:]
registry = CollectorRegistry()
registry.register(FilesCollector(directory))
while not os.path.exists(stop):
    text = generate_latest(registry).decode()
    totals = {"http_requests_total": 0.0, "orders_total": 0.0, "http_request_duration_seconds_count": 0.0}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name in totals:
                totals[s.name] += s.value
    print(sorted(totals.items()), flush=True)
"""


def test_scrapes_in_other_processes_while_workers_are_archived_see_exact_totals(tmp_path: Path) -> None:
    """Workers' processes scrape while the arbiter archives: every scrape sees the same totals, none fails."""
    directory = tmp_path / "metrics"
    directory.mkdir()
    dead = range(FIRST_DEAD_PID, FIRST_DEAD_PID + 80)
    for pid in (LIVE_PID, *dead):
        write_worker(directory, pid, slots=2)
    stop = tmp_path / "stop"
    outputs = [tmp_path / f"scraper-{n}.out" for n in range(2)]
    scrapers = []
    for output in outputs:
        with output.open("w") as out:
            scrapers.append(subprocess.Popen([sys.executable, "-c", SCRAPER, str(directory), str(stop)], stdout=out))
    try:
        deadline = time.monotonic() + 30
        while not all(o.read_text() for o in outputs) and time.monotonic() < deadline:
            time.sleep(0.05)
        before = {line for o in outputs for line in o.read_text().splitlines()}
        assert len(before) == 1, before
        lines_before = sum(len(o.read_text().splitlines()) for o in outputs)
        for pid in dead:
            mark_worker_dead(pid, str(directory))
            time.sleep(0.005)
        assert len(list(directory.glob("*.db"))) == 2 * 3 + APP_FILES  # the live worker's
    finally:
        stop.touch()
        exits = [scraper.wait(timeout=30) for scraper in scrapers]
    assert exits == [0, 0], "a scraper failed (its error is above)"
    lines = [line for o in outputs for line in o.read_text().splitlines()]
    assert set(lines) == before, "a scrape saw a dead worker's values twice or not at all"
    assert len(lines) - lines_before >= 10, "too few scrapes ran while the workers were archived"


def test_pid_of_file_reads_both_layouts() -> None:
    assert pid_of_file("gauge_livesum_4242.db") == 4242
    assert pid_of_file("counter_17-http3.db") == 17
    assert pid_of_file("keep.txt") is None and pid_of_file("counter_17-other.db") is None


def test_prepare_multiproc_dir_wipes_stale_files(tmp_path: Path) -> None:
    target = tmp_path / "metrics"
    prepare_multiproc_dir(str(target))
    assert target.is_dir()
    (target / "counter_123.db").write_bytes(b"stale")
    (target / ARCHIVE).write_text('{"absorbed": [], "values": []}')
    (target / "keep.txt").write_text("not ours")
    prepare_multiproc_dir(str(target))
    assert not (target / "counter_123.db").exists()
    assert not (target / ARCHIVE).exists()
    assert (target / "keep.txt").exists()


@pytest.mark.parametrize(
    ("settings", "address", "status"),
    [
        ({}, "127.0.0.1", 200),
        ({}, "::1", 200),
        ({}, "203.0.113.9", 403),  # serve and the single image face clients: the app is the only guard
        ({"monitoring.metrics_allow": "10.0.0.0/8"}, "10.1.2.3", 200),
        ({"monitoring.metrics_allow": "all"}, "203.0.113.9", 200),
        ({"monitoring.metrics_allow": None}, "203.0.113.9", 200),
        ({"proxy.trusted_hops": 1}, "203.0.113.9", 200),  # behind nginx, which guards the path itself
    ],
)
def test_metrics_are_read_from_monitoring_metrics_allow_where_the_app_faces_clients(
    settings: dict[str, object], address: str, status: int
) -> None:
    app, _ = make_app(**settings)
    response = app.test_client().get("/metrics", environ_base={"REMOTE_ADDR": address})
    assert response.status_code == status
    assert (b"http_requests_total" in response.data) == (status == 200)
