"""Prometheus metrics: labels by route rule, private registries, multi-process mode."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask, Response, stream_with_context
from prometheus_client.parser import text_string_to_metric_families

from flaskprod import Production
from flaskprod.runtime import mark_worker_dead, prepare_multiproc_dir
from flaskprod.runtime.metrics import MULTIPROC_ENV, pid_of_file
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


def test_mark_worker_dead_drops_its_live_gauges(tmp_path: Path) -> None:
    run_worker(tmp_path, 1)
    live = list(tmp_path.glob("gauge_livesum_*.db"))
    assert len(live) == 1
    pid = pid_of_file(live[0].name)
    assert pid is not None
    mark_worker_dead(pid, str(tmp_path))
    assert not list(tmp_path.glob("gauge_livesum_*.db"))
    assert list(tmp_path.glob("counter_*.db")), "counters of a dead worker still count"


def test_pid_of_file_reads_both_layouts() -> None:
    assert pid_of_file("gauge_livesum_4242.db") == 4242
    assert pid_of_file("counter_17-http3.db") == 17
    assert pid_of_file("keep.txt") is None and pid_of_file("counter_17-other.db") is None


def test_prepare_multiproc_dir_wipes_stale_files(tmp_path: Path) -> None:
    target = tmp_path / "metrics"
    prepare_multiproc_dir(str(target))
    assert target.is_dir()
    (target / "counter_123.db").write_bytes(b"stale")
    (target / "keep.txt").write_text("not ours")
    prepare_multiproc_dir(str(target))
    assert not (target / "counter_123.db").exists()
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
