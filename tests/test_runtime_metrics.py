"""Prometheus metrics: labels by route rule, private registries, multi-process mode."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from flaskprod import Production
from flaskprod.runtime import mark_worker_dead, prepare_multiproc_dir
from flaskprod.runtime.metrics import MULTIPROC_ENV
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


def test_unknown_methods_share_one_label() -> None:
    app, _ = make_app()
    client = app.test_client()
    client.open("/items/1", method="FOO")
    client.open("/items/1", method="BAR")
    text = client.get("/metrics").text
    assert "FOO" not in text and "BAR" not in text
    assert value(text, "http_requests_total", method="OTHER", endpoint="<unmatched>", status="405") == 2


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


WORKER = """
import os, sys
import flaskprod  # prometheus_client is imported before the directory is known, as in the CLI
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
from flask import Flask
from flaskprod import Production
from flaskprod.spec import Spec
app = Flask("worker")
app.config["SECRET_KEY"] = os.urandom(32).hex()
app.add_url_rule("/items/<int:item_id>", "item", lambda item_id: "ok")
Production(app, spec=Spec().replace(**{"logging.access_log": False}))
client = app.test_client()
for i in range(int(sys.argv[2])):
    client.get(f"/items/{i}")
if sys.argv[3] == "scrape":
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


def test_mark_worker_dead_drops_its_live_gauges(tmp_path: Path) -> None:
    run_worker(tmp_path, 1)
    live = list(tmp_path.glob("gauge_livesum_*.db"))
    assert len(live) == 1
    pid = int(live[0].stem.rsplit("_", 1)[1])
    mark_worker_dead(pid, str(tmp_path))
    assert not list(tmp_path.glob("gauge_livesum_*.db"))
    assert list(tmp_path.glob("counter_*.db")), "counters of a dead worker still count"


def test_prepare_multiproc_dir_wipes_stale_files(tmp_path: Path) -> None:
    target = tmp_path / "metrics"
    prepare_multiproc_dir(str(target))
    assert target.is_dir()
    (target / "counter_123.db").write_bytes(b"stale")
    (target / "keep.txt").write_text("not ours")
    prepare_multiproc_dir(str(target))
    assert not (target / "counter_123.db").exists()
    assert (target / "keep.txt").exists()
