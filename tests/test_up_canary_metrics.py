"""A canary under `flaskprod up --with monitoring` is scraped as a release of its own: nginx's metrics listener
serves each running release's metrics at a path naming it, Prometheus scrapes each as a target labelled with its
release, and the alert rules judge each release apart, so a broken canary raises HighErrorRatio. When the canary
ends, its target goes.
"""

from __future__ import annotations

import dataclasses
import http.server
import json
import os
import pwd
import signal
import socketserver
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flaskprod.render.nginx import NginxContext, render_nginx
from flaskprod.sizing import derive
from flaskprod.spec import Spec
from flaskprod.stack.nginx import find_nginx, foreground_command
from flaskprod.stack.prometheus import TARGETS_FILE, Prometheus
from flaskprod.stack.rundir import StackDir
from tests.buildkit import run_tool, tool
from tests.support import BIN, free_port, running, wait_for
from tests.upstack import APP, Loader, UpStack, children_of, start_up, stop, summary, up_env, write_app

pytestmark = pytest.mark.integration

JOB = "shop"
# A scrape every 5 s, file_sd applied within Prometheus's 5 s discovery throttle, a rule evaluation every 5 s.
SCRAPED_WITHIN = 30.0

VERSIONED = (
    APP
    + """

from flask import abort

BROKEN = False


@app.get("/")
def index():
    if BROKEN:
        abort(500)
    return "ok"
"""
)


def write_version(root: Path, *, broken: bool) -> None:
    write_app(root, VERSIONED.replace("BROKEN = False", f"BROKEN = {broken}"))


def flaskprod(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "flaskprod"), *args], cwd=root, env=up_env(), capture_output=True, text=True, timeout=120
    )


@dataclasses.dataclass
class Monitoring:
    stack: UpStack
    prometheus: str  # Prometheus's base URL
    metrics_port: int  # nginx's listener for it

    def api(self, path: str, **params: Any) -> Any:
        body = requests.get(self.prometheus + path, params=params, timeout=5).json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def targets(self) -> dict[str, dict[str, Any]]:
        """The app's active targets by their release label."""
        active = self.api("/api/v1/targets")["activeTargets"]
        return {t["labels"].get("release", ""): t for t in active if t["labels"]["job"] == JOB}

    def scraped(self, *releases: str) -> bool:
        """Whether the app's targets are these releases', each scraped and up."""
        found = self.targets()
        return sorted(found) == sorted(releases) and all(t["health"] == "up" for t in found.values())

    def listener(self, path: str) -> requests.Response:
        return requests.get(f"http://127.0.0.1:{self.metrics_port}{path}", timeout=5)


@pytest.fixture
def monitored(tmp_path: Path) -> Iterator[Monitoring]:
    write_version(tmp_path, broken=False)
    prometheus_port, metrics_port = free_port(), free_port()
    running = start_up(
        tmp_path, "gunicorn", free_port(), "--workers", "1", "--threads", "4", "--with", "monitoring",
        "--set", f"app.name={JOB}", "--set", f"monitoring.prometheus_port={prometheus_port}",
        "--set", f"monitoring.metrics_port={metrics_port}", "--set", f"monitoring.alertmanager_port={free_port()}",
    )  # fmt: skip
    try:
        running.wait_ready()
        yield Monitoring(stack=running, prometheus=f"http://127.0.0.1:{prometheus_port}", metrics_port=metrics_port)
    finally:
        stop(running)


def test_a_canary_is_scraped_and_alerted_as_its_own_release_until_it_ends(monitored: Monitoring) -> None:
    stack = monitored.stack
    # One release: one target, labelled with its number, at the listener's path naming it.
    wait_for(lambda: monitored.scraped("1"), timeout=SCRAPED_WITHIN, what="release 1 scraped")
    assert monitored.targets()["1"]["scrapeUrl"] == f"http://127.0.0.1:{monitored.metrics_port}/releases/1/metrics"
    assert "# TYPE http_requests_total counter" in monitored.listener("/releases/1/metrics").text
    # The listener's own metrics path still answers, from the release that serves; no other release has a path.
    assert monitored.listener("/metrics").status_code == 200
    assert monitored.listener("/releases/2/metrics").status_code == 404

    # A canary answering 500 on every request.
    write_version(stack.root, broken=True)
    canary = flaskprod(stack.root, "deploy", "--canary", "20")
    assert canary.returncode == 0, canary.stderr
    wait_for(lambda: monitored.scraped("1", "2"), timeout=SCRAPED_WITHIN, what="both releases scraped")
    # nginx's config with both releases' metrics paths, graded as every generated one is.
    run_tool([tool("gixy"), str(stack.run_dir / "nginx.conf")])

    # Traffic across scrapes, as a rate needs; the rules judge the canary on its own requests, all failing. `for`
    # is 5 minutes, so pending is as far as a test goes; the release it names is the canary.
    def error_alerts() -> list[dict[str, Any]]:
        alerts = monitored.api("/api/v1/alerts")["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "HighErrorRatio"]

    loader = Loader(stack.port, path="/", threads=1, max_requests=20000, max_seconds=SCRAPED_WITHIN + 10).start()
    try:
        raised = wait_for(error_alerts, timeout=SCRAPED_WITHIN, what="HighErrorRatio for the canary")
    finally:
        outcomes = loader.stop()
    assert [(a["labels"]["release"], a["state"]) for a in raised] in ([("2", "pending")], [("2", "firing")]), raised
    answered = Counter(o.status for o in outcomes)
    assert set(answered) == {200, 500} and answered[500] >= answered[200] / 8, summary(outcomes)  # about a fifth

    # Each release's counters, read by Prometheus through the path naming it: the canary's 500s are its own.
    query = f'sum by (release, status) (http_requests_total{{job="{JOB}", endpoint="/"}})'

    def counted() -> dict[tuple[str, str], int]:
        result = monitored.api("/api/v1/query", query=query)["result"]
        return {(r["metric"]["release"], r["metric"]["status"]): int(float(r["value"][1])) for r in result}

    expected = {("1", "200"): answered[200], ("2", "500"): answered[500]}
    wait_for(lambda: counted() == expected, timeout=SCRAPED_WITHIN, what=f"{expected} in Prometheus")
    assert 'status="500"' in monitored.listener("/releases/2/metrics").text
    assert 'status="500"' not in monitored.listener("/releases/1/metrics").text

    # Rolled back, the canary leaves the targets, and the listener serves no path for it.
    rolled = flaskprod(stack.root, "rollback")
    assert rolled.returncode == 0, rolled.stderr
    wait_for(lambda: monitored.scraped("1"), timeout=SCRAPED_WITHIN, what="release 2 no longer scraped")
    assert monitored.listener("/releases/2/metrics").status_code == 404
    targets = json.loads((stack.run_dir / "prometheus" / TARGETS_FILE).read_text())
    assert [group["labels"]["release"] for group in targets] == ["1"]

    # Promoted, the canary is the one target left: the release it replaced is no longer scraped.
    write_version(stack.root, broken=False)
    assert flaskprod(stack.root, "deploy", "--canary", "50").returncode == 0
    wait_for(lambda: monitored.scraped("1", "3"), timeout=SCRAPED_WITHIN, what="release 3 scraped beside 1")
    promoted = flaskprod(stack.root, "deploy", "--promote")
    assert promoted.returncode == 0, promoted.stderr
    wait_for(lambda: monitored.scraped("3"), timeout=SCRAPED_WITHIN, what="release 3 alone scraped")
    assert monitored.listener("/releases/1/metrics").status_code == 404
    assert monitored.listener("/releases/3/metrics").status_code == 200
    # A release that stopped left the targets; none stayed down long enough to page anyone.
    firing = [a["labels"] for a in monitored.api("/api/v1/alerts")["alerts"] if a["state"] == "firing"]
    down = ("AppDown", "AppTargetsMissing", "ScrapesFailing")
    assert not [labels for labels in firing if labels["alertname"] in down], firing


def test_a_deploy_under_monitoring_moves_links_and_never_reloads_nginx(monitored: Monitoring) -> None:
    """Before, nginx.conf had a location and an upstream per running release for Prometheus, so every deploy under
    --with monitoring changed it and reloaded nginx (closing every client's idle keep-alive connection); now the
    release's scrape path goes through its link, as its requests do."""
    stack = monitored.stack
    wait_for(lambda: monitored.scraped("1"), timeout=SCRAPED_WITHIN, what="release 1 scraped")
    nginx = int((stack.run_dir / "nginx.pid").read_text())
    workers = children_of(nginx)
    config = (stack.run_dir / "nginx.conf").read_text()
    for version in ("2", "3"):
        write_version(stack.root, broken=False)
        deployed = flaskprod(stack.root, "deploy")
        assert deployed.returncode == 0, deployed.stderr
        assert f"nginx sends requests to release {version} (its link repointed, no reload)" in deployed.stderr
        assert "nginx reloaded" not in deployed.stderr
        # Prometheus scrapes the new release at its own path, and the one it replaced no longer.
        wait_for(lambda v=version: monitored.scraped(v), timeout=SCRAPED_WITHIN, what=f"release {version} scraped")
        assert "# TYPE http_requests_total counter" in monitored.listener(f"/releases/{version}/metrics").text
        assert monitored.listener(f"/releases/{int(version) - 1}/metrics").status_code == 404
    assert children_of(nginx) == workers  # the same nginx workers throughout: it was never reloaded
    assert (stack.run_dir / "nginx.conf").read_text() == config
    assert "reload" not in stack.stderr().lower()  # nor did up, or nginx's log, say it reloaded
    assert sorted(p.name for p in (stack.run_dir / "scrapes").iterdir()) == ["3"]


# --- what `up` renders ---------------------------------------------------------------------------------------


class Responder(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A stand-in for an app server's metrics responder on a unix socket: its name and the path asked for."""

    daemon_threads = True

    def __init__(self, path: Path, name: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = f"{name} {self.path}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def address_string(self) -> str:
                return "unix"

            def log_message(self, format: str, *args: Any) -> None:
                pass

        super().__init__(str(path), Handler)
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


def test_the_scraper_port_has_one_path_for_every_release_through_its_link(tmp_path: Path) -> None:
    """nginx.conf names no release: each running release's path goes through its link in the run dir's scrapes/
    (before, a location and an upstream per release, so every deploy under --with monitoring reloaded nginx)."""
    spec = Spec().replace(**{"monitoring.metrics_allow": "127.0.0.1 ::1"})
    run = StackDir(tmp_path)
    run.make()
    port, metrics_port = free_port(), free_port()
    ctx = run.nginx_context(
        upstream=run.serving_socket(0), host="127.0.0.1", port=port, protocol="http", static=(),
        user=pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None, metrics=("127.0.0.1", metrics_port),
        canary=(run.app_socket(2), 20),
    )  # fmt: skip
    files = render_nginx(spec, derive(spec), ctx)
    text = files["nginx.conf"]
    assert "flaskprod_release_" not in text and "/releases/1/" not in text and "/releases/2/" not in text
    public = text[: text.index("# The scraper's own port")]
    assert "/releases/" not in public  # the scraper's alone
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    run_tool([tool("gixy"), str(tmp_path / "nginx.conf")])
    servers = [Responder(tmp_path / "app-1.prom", "one"), Responder(tmp_path / "app-2.1.prom", "two")]
    try:
        run.point_scrapes({1: tmp_path / "app-1.prom", 2: tmp_path / "app-2.1.prom"})
        command = foreground_command(find_nginx("nginx"), run)
        with running(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as nginx:

            def scrape(path: str) -> tuple[int, str]:
                answer = requests.get(f"http://127.0.0.1:{metrics_port}{path}", timeout=5)
                return answer.status_code, answer.text

            wait_for(lambda: scrape("/releases/1/metrics")[0] == 200, what="nginx's scraper port")
            # Each release's responder is asked for the app's own metrics path.
            assert scrape("/releases/1/metrics") == (200, "one /metrics")
            assert scrape("/releases/2/metrics") == (200, "two /metrics")
            # A release that is not running is a 404, as any other path; so is a number with a leading zero.
            assert scrape("/releases/3/metrics")[0] == 404
            assert scrape("/releases/01/metrics")[0] == 404
            assert scrape("/releases/1/metrics/")[0] == 404
            # Release 1 stops, release 2 is reloaded onto its other socket: the links alone move.
            run.point_scrapes({2: tmp_path / "app-2.prom"})
            assert scrape("/releases/1/metrics")[0] == 404
            assert scrape("/releases/2/metrics")[0] == 502  # app-2.prom: nothing listens there
            servers.append(Responder(tmp_path / "app-2.prom", "two again"))
            assert scrape("/releases/2/metrics") == (200, "two again /metrics")
            assert sorted(p.name for p in run.scrapes_dir.iterdir()) == ["2"]
            nginx.send_signal(signal.SIGQUIT)
            _, errors = nginx.communicate(timeout=30)
        # The stopped release's 404 was no failed connection: nginx logged only the one to nothing listening.
        failed = [line for line in errors.splitlines() if "connect()" in line]
        assert len(failed) == 1 and "GET /releases/2/metrics" in failed[0], errors
    finally:
        for server in servers:
            server.close()


def test_without_the_scraper_port_no_release_path_is_served(tmp_path: Path) -> None:
    # The containers' nginx has no listener of `up`'s: one release per container, scraped at the metrics path.
    spec = Spec()
    ctx = NginxContext(
        host="127.0.0.1", port=18080, upstream="unix:/run/app.sock", protocol="http", conf_dir="/c",
        pid_file="/c/nginx.pid", temp_dir="/c/tmp", access_log="/c/access.log", error_log="stderr",
        responders=True, release_scrapes="/run/scrapes",
    )  # fmt: skip
    text = render_nginx(spec, derive(spec), ctx)["nginx.conf"]
    assert "flaskprod_release" not in text and "/run/scrapes" not in text


def test_each_release_is_a_target_of_its_own_and_a_failing_canary_alerts_apart(tmp_path: Path) -> None:
    """The rules sum by release: a canary with 2% of the requests, every one failing, is 2% of the job's requests
    (under the 5% line) but all of its own. promtool runs the rules on such series."""
    spec = Spec()
    run = StackDir(tmp_path / "run")
    run.path.mkdir()
    prometheus = Prometheus(
        binary="prometheus", host="127.0.0.1", port=9090, scrape_port=9117, job=JOB,
        retention="--storage.tsdb.retention.time=15d", alertmanager="127.0.0.1:9093",
    )  # fmt: skip
    prometheus.write_config(run, spec, derive(spec))
    prometheus.write_targets(run, spec, [1, 2])
    config = yaml.safe_load((run.prometheus_dir / "prometheus.yml").read_text())
    assert config["scrape_configs"][0]["file_sd_configs"] == [{"files": [TARGETS_FILE]}]
    assert "static_configs" not in config["scrape_configs"][0]
    assert json.loads((run.prometheus_dir / TARGETS_FILE).read_text()) == [
        {"targets": ["127.0.0.1:9117"], "labels": {"release": str(n), "__metrics_path__": f"/releases/{n}/metrics"}}
        for n in (1, 2)
    ]
    run_tool([tool("promtool"), "check", "config", str(run.prometheus_dir / "prometheus.yml")])

    rules = yaml.safe_load((run.prometheus_dir / "alerts.yml").read_text())["groups"][0]["rules"]
    description = next(r for r in rules if r["alert"] == "HighErrorRatio")["annotations"]["description"]
    labels = 'job="shop", instance="127.0.0.1:9117", method="GET", endpoint="/"'
    series = "http_requests_total{{" + labels + ', release="{r}", status="{s}"}}'
    case = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": series.format(r="1", s="200"), "values": "0+980x20"},
                {"series": series.format(r="2", s="500"), "values": "0+20x20"},
            ],
            "alert_rule_test": [{
                "eval_time": "15m",
                "alertname": "HighErrorRatio",
                "exp_alerts": [{
                    "exp_labels": {"job": JOB, "release": "2", "severity": "critical"},
                    "exp_annotations": {"summary": f"{JOB}: more than 5% of requests fail", "description": description},
                }],
            }],
        }],
    }  # fmt: skip
    (run.prometheus_dir / "canary.test.yml").write_text(yaml.safe_dump(case))
    run_tool([tool("promtool"), "test", "rules", "canary.test.yml"], cwd=run.prometheus_dir)
    # The rules' own cases, series without a release as the containers' are, still hold.
    run_tool([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=run.prometheus_dir)
