"""`flaskprod up --with monitoring` for real: a Prometheus beside nginx scrapes the app through nginx's loopback
listener, with the alert rules `flaskprod build --with monitoring` writes, and sends what fires to Debian's
Alertmanager, which posts it to a webhook the tests run; both are supervised, reloaded and stopped with the rest.

The stack tests share one stack and run in file order; the last one stops it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flaskprod.render.monitoring import Monitored, Scrape, prometheus_files
from flaskprod.render.nginx import NginxContext, render_nginx_conf
from flaskprod.sizing import derive
from flaskprod.spec import Spec
from flaskprod.stack.alertmanager import GROUP_WAIT
from tests.support import BIN, free_port, wait_for
from tests.upstack import UpStack, children_of, processes_under, start_up, stop, up_args, up_env, write_app

pytestmark = pytest.mark.integration

JOB = "shop"
# No ReadinessFailing: `up` asks the readiness path only while a release starts, so no probe is counted to read.
ALERTS = {
    "AppDown", "AppTargetsMissing", "ScrapesFailing", "HighErrorRatio", "SlowRequests", "WorkersSaturated",
    "RequestsQueued",
}
# Every scrape and rule evaluation comes within 5 s under `up`; Prometheus offsets its first scrape within that.
SCRAPED_WITHIN = 20.0
# The file naming the webhook's URL, in the project (relative, as a user would write it).
WEBHOOK_FILE = "alert-webhook-url"


class Webhook:
    """A receiver on 127.0.0.1 keeping the JSON bodies Alertmanager posts, by path."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                posts.append((self.path, json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def alerts(self, path: str, alertname: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(notification, alert) of every alert named alertname posted to path."""
        return [
            (body, alert)
            for posted, body in list(self.posts)
            if posted == path
            for alert in body["alerts"]
            if alert["labels"]["alertname"] == alertname
        ]


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    receiver = Webhook()
    receiver.thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()
        receiver.thread.join(10)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, webhook: Webhook) -> Iterator[UpStack]:
    root = tmp_path_factory.mktemp("up-monitoring")
    write_app(root)
    (root / WEBHOOK_FILE).write_text(webhook.url("/hook") + "\n")
    running = start_up(
        root,
        "gunicorn",
        free_port(),
        "--workers",
        "1",
        "--with",
        "monitoring",
        "--set",
        f"app.name={JOB}",
        "--set",
        f"monitoring.prometheus_port={free_port()}",
        "--set",
        f"monitoring.metrics_port={free_port()}",
        "--set",
        f"monitoring.alertmanager_port={free_port()}",
        "--set",
        f"monitoring.alert_webhook_url_file={WEBHOOK_FILE}",
        "--set",
        "monitoring.retention_days=30",
    )
    try:
        running.wait_ready()
        yield running
    finally:
        stop(running)


def table_value(stack: UpStack, row: str) -> str:
    """The value of one row of the table `up` prints."""
    for line in stack.stdout().splitlines():
        name, _, value = line.strip().partition("  ")
        if name == row:
            return value.strip()
    raise AssertionError(f"no {row!r} row in the table:\n{stack.output()}")


class PrometheusAPI:
    """Prometheus's HTTP API at the URL the table shows."""

    def __init__(self, stack: UpStack) -> None:
        self.base = table_value(stack, "prometheus").split()[0].rstrip("/")
        assert self.base.startswith("http://127.0.0.1:"), self.base

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.base + path, params=params, timeout=5)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def value(self, expr: str) -> float | None:
        """The single sample expr gives now, None when it gives none."""
        result = self.get("/api/v1/query", query=expr)["result"]
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def rules(self) -> dict[str, dict[str, Any]]:
        groups = self.get("/api/v1/rules")["groups"]
        return {rule["name"]: rule for group in groups for rule in group["rules"]}


class AlertmanagerAPI:
    """Alertmanager's HTTP API at the URL the table shows."""

    def __init__(self, stack: UpStack) -> None:
        self.base = table_value(stack, "alertmanager").split()[0].rstrip("/")
        assert self.base.startswith("http://127.0.0.1:"), self.base

    def get(self, path: str) -> Any:
        response = requests.get(self.base + path, timeout=5)
        assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
        return response.json()


def children(stack: UpStack) -> dict[str, int]:
    """name -> pid of the processes `up` started: nginx, the app server, alertmanager, prometheus."""
    found = {}
    for pid in children_of(stack.proc.pid):
        program = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
        # nginx shows itself as "nginx: master process ..."; the app server is `python -m flaskprod serve`;
        # Debian's Alertmanager is prometheus-alertmanager.
        name = next((n for n in ("nginx", "alertmanager", "prometheus") if n in program), "app server")
        found[name] = pid
    return found


def test_the_table_shows_prometheus_and_the_metrics_listener(stack: UpStack) -> None:
    api = PrometheusAPI(stack)
    assert requests.get(f"{api.base}/-/ready", timeout=5).status_code == 200
    metrics = table_value(stack, "metrics").split()[0]
    assert metrics.startswith("http://127.0.0.1:") and metrics.endswith("/metrics")
    assert "# TYPE http_requests_total counter" in requests.get(metrics, timeout=5).text
    # The scraper's listener serves the metrics path alone; nginx's public port no longer serves it.
    assert requests.get(metrics.replace("/metrics", "/api/ping"), timeout=5).status_code == 404
    assert stack.get("/metrics").status_code == 404
    assert sorted(children(stack)) == ["alertmanager", "app server", "nginx", "prometheus"]
    # Prometheus's own reading of its flags: samples kept for monitoring.retention_days.
    assert api.get("/api/v1/status/flags")["storage.tsdb.retention.time"] == "30d"


def test_alertmanager_runs_on_loopback_alone_with_the_webhook_in_a_config_its_user_reads(
    stack: UpStack, webhook: Webhook
) -> None:
    api, prometheus = AlertmanagerAPI(stack), PrometheusAPI(stack)
    assert requests.get(f"{api.base}/-/ready", timeout=5).status_code == 200
    status = api.get("/api/v2/status")
    assert status["cluster"]["status"] == "disabled"  # --cluster.listen-address= : no gossip port
    config = stack.run_dir / "alertmanager" / "alertmanager.yml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    route = yaml.safe_load(config.read_text())
    hook = {"url": webhook.url("/hook"), "send_resolved": True}
    assert route["receivers"] == [{"name": "webhook", "webhook_configs": [hook]}]
    assert route["route"]["group_by"] == ["alertname", "namespace", "job"]
    assert yaml.safe_load(status["config"]["original"])["route"]["group_wait"] == f"{GROUP_WAIT}s"
    # Prometheus sends its alerts there.
    wait_for(
        lambda: [a["url"] for a in prometheus.get("/api/v1/alertmanagers")["activeAlertmanagers"]]
        == [f"{api.base}/api/v2/alerts"],
        timeout=SCRAPED_WITHIN,
        what="Prometheus to find its Alertmanager",
    )


def test_prometheus_scrapes_the_app_through_nginx_and_counts_its_requests(stack: UpStack) -> None:
    api = PrometheusAPI(stack)
    wait_for(lambda: api.value(f'up{{job="{JOB}"}}') == 1.0, timeout=SCRAPED_WITHIN, what="the app's target up")
    targets = [t for t in api.get("/api/v1/targets")["activeTargets"] if t["labels"]["job"] == JOB]
    # Each running release is a target of its own, at the listener's path naming it (test_up_canary_metrics.py).
    release_path = table_value(stack, "metrics").split()[0].replace("/metrics", "/releases/1/metrics")
    assert [(t["scrapeUrl"], t["labels"]["release"]) for t in targets] == [(release_path, "1")]

    sent = 7
    assert [stack.get("/api/ping").status_code for _ in range(sent)] == [200] * sent
    counted = f'sum(http_requests_total{{job="{JOB}", endpoint="/api/ping", status="200"}})'
    wait_for(lambda: api.value(counted) == sent, timeout=SCRAPED_WITHIN, what=f"{sent} requests counted")


def test_the_rules_are_those_build_writes_and_evaluate_healthy(stack: UpStack) -> None:
    api = PrometheusAPI(stack)
    written = yaml.safe_load((stack.run_dir / "prometheus" / "alerts.yml").read_text())
    assert [group["name"] for group in written["groups"]] == [JOB]

    def evaluated() -> dict[str, dict[str, Any]]:
        found = api.rules()
        # Raised, not returned: wait_for's message then shows the last answer.
        assert all(r["health"] == "ok" and r["lastEvaluation"][:4] != "0001" for r in found.values()), found
        return found

    found = wait_for(evaluated, timeout=SCRAPED_WITHIN, what="every rule evaluated")
    assert set(found) == ALERTS
    # Prometheus prints each query back in its own spelling: the labels and annotations are compared instead.
    assert {r["alert"]: (r["labels"], r["annotations"]) for r in written["groups"][0]["rules"]} == {
        name: (r["labels"], r["annotations"]) for name, r in found.items()
    }
    # An evaluation may come before the first scrape (absent(up) holds then): once the app is scraped, none is left.
    wait_for(lambda: api.value(f'up{{job="{JOB}"}}') == 1.0, timeout=SCRAPED_WITHIN, what="the app scraped")
    wait_for(
        lambda: not api.get("/api/v1/alerts")["alerts"], timeout=SCRAPED_WITHIN, what="a healthy app to raise no alert"
    )


def test_a_killed_prometheus_is_restarted(stack: UpStack) -> None:
    api = PrometheusAPI(stack)
    os.kill(children(stack)["prometheus"], signal.SIGKILL)
    wait_for(lambda: "prometheus restarted" in stack.stderr(), timeout=20, what="prometheus restarted")
    wait_for(
        lambda: requests.get(f"{api.base}/-/ready", timeout=2).status_code == 200, timeout=20, what="ready again"
    )
    wait_for(lambda: api.value(f'up{{job="{JOB}"}}') == 1.0, timeout=SCRAPED_WITHIN, what="scraping again")


def test_a_firing_alert_reaches_the_webhook(stack: UpStack, webhook: Webhook) -> None:
    """A rule that fires soon, added to the rules Prometheus runs (the next SIGHUP to `up` writes them again):
    Prometheus sends it to Alertmanager, which posts it, grouped, to the webhook's URL."""
    rules = stack.run_dir / "prometheus" / "alerts.yml"
    written = yaml.safe_load(rules.read_text())
    # `for`, as every rule of up's has: a reload starts Prometheus's discovery of its Alertmanager again, and an alert
    # firing meanwhile is dropped, to be sent again a minute later (--rules.alert.resend-delay).
    labels = {"job": JOB, "severity": "warning"}
    test_rule = {"alert": "AlwaysFiring", "expr": "vector(1)", "for": "10s", "labels": labels}
    written["groups"].append({"name": "test", "rules": [test_rule]})
    rules.write_text(yaml.safe_dump(written))
    os.kill(children(stack)["prometheus"], signal.SIGHUP)
    api = AlertmanagerAPI(stack)
    wait_for(
        lambda: [a for a in api.get("/api/v2/alerts") if a["labels"]["alertname"] == "AlwaysFiring"],
        timeout=SCRAPED_WITHIN + 10,
        what="Alertmanager to hold the alert",
    )
    # Its first notification waits for the group's fellows (group_wait), then comes at once.
    posted = wait_for(
        lambda: webhook.alerts("/hook", "AlwaysFiring"), timeout=GROUP_WAIT + 20.0, what="the alert at the webhook"
    )
    notification, alert = posted[0]
    assert alert["status"] == "firing" and alert["labels"]["job"] == JOB
    assert notification["groupLabels"] == {"alertname": "AlwaysFiring", "job": JOB}
    assert notification["receiver"] == "webhook"


def test_sighup_gives_prometheus_the_rules_and_alertmanager_the_webhook_of_the_edited_config(
    stack: UpStack, webhook: Webhook
) -> None:
    api, alertmanager = PrometheusAPI(stack), AlertmanagerAPI(stack)
    before = api.rules()["SlowRequests"]["query"]
    assert 'le="10.0"' in before  # half the default 30 s deadline is past the histogram's top finite bound
    (stack.root / "flaskprod.toml").write_text("[server]\ntimeout = 5\n")
    os.kill(stack.proc.pid, signal.SIGHUP)
    wait_for(lambda: 'le="2.5"' in api.rules()["SlowRequests"]["query"], timeout=20, what="the new slow bound")
    # The rules are written again: the test's own rule is gone.
    wait_for(lambda: "AlwaysFiring" not in api.rules(), timeout=20, what="the rules as up writes them")
    assert "reloading alertmanager" not in stack.stderr()  # its config had not changed

    # A URL its file no longer holds: logged, and the running config stays.
    (stack.root / WEBHOOK_FILE).write_text("not a URL\n")
    os.kill(stack.proc.pid, signal.SIGHUP)
    wait_for(lambda: "alertmanager not reloaded" in stack.stderr(), timeout=20, what="the refusal logged")
    refusal = next(line for line in stack.stderr().splitlines() if "alertmanager not reloaded" in line)
    assert "monitoring.alert_webhook_url_file" in refusal and "not a URL" not in refusal

    # A new URL in the file: Alertmanager reads its config again.
    (stack.root / WEBHOOK_FILE).write_text(webhook.url("/other") + "\n")
    os.kill(stack.proc.pid, signal.SIGHUP)
    wait_for(lambda: "reloading alertmanager" in stack.stderr(), timeout=20, what="alertmanager reloaded")
    wait_for(
        lambda: webhook.url("/other") in alertmanager.get("/api/v2/status")["config"]["original"],
        timeout=20,
        what="Alertmanager to run the new URL",
    )
    assert stack.proc.poll() is None


def test_sigterm_stops_nginx_the_app_server_prometheus_and_alertmanager(stack: UpStack) -> None:
    """Last of the stack's tests: it stops the stack."""
    api, alertmanager = PrometheusAPI(stack), AlertmanagerAPI(stack)
    started = children(stack)
    assert sorted(started) == ["alertmanager", "app server", "nginx", "prometheus"]
    os.kill(stack.proc.pid, signal.SIGTERM)
    assert stack.proc.wait(40) == 0, stack.output()
    assert not [name for name, pid in started.items() if Path(f"/proc/{pid}").exists()]
    assert processes_under(stack.root) == {}
    for base in (api.base, alertmanager.base):
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{base}/-/ready", timeout=2)


# --- mistakes: one line, a non-zero exit, nothing started ----------------------------------------------------


def run_up(
    root: Path, *args: str, port: int | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        up_args("gunicorn", port or free_port(), *args),
        cwd=root,
        env=env or up_env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
        start_new_session=True,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def test_an_unknown_extra_is_one_line_naming_the_valid_ones(tmp_path: Path) -> None:
    write_app(tmp_path)
    error = one_line_error(run_up(tmp_path, "--with", "monitoring,grafana"))
    assert error == "Error: --with grafana: unknown for `flaskprod up`; choose from monitoring, postgres"
    assert not (tmp_path / ".flaskprod").exists()


@pytest.mark.parametrize(("extra", "instead"), [("logging", "the access log its table names"), ("tls", "--tls")])
def test_an_extra_of_build_names_what_up_does_instead(tmp_path: Path, extra: str, instead: str) -> None:
    write_app(tmp_path)
    error = one_line_error(run_up(tmp_path, "--with", extra))
    assert error.startswith(f"Error: --with {extra} is for `flaskprod build`; under `flaskprod up` ")
    assert instead in error
    assert not (tmp_path / ".flaskprod").exists()


@pytest.mark.parametrize("setting", ["monitoring.prometheus_port", "monitoring.alertmanager_port"])
def test_a_monitoring_port_in_use_names_the_setting(tmp_path: Path, setting: str) -> None:
    write_app(tmp_path)
    ports = {key: free_port() for key in ("prometheus_port", "alertmanager_port", "metrics_port")}
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports[setting.partition(".")[2]] = port
        result = run_up(tmp_path, "--with", "monitoring", *(f"--set=monitoring.{k}={v}" for k, v in ports.items()))
    error = one_line_error(result)
    assert f"127.0.0.1:{port} is already in use" in error
    assert f"--set {setting}=PORT" in error
    assert processes_under(tmp_path) == {}


def test_a_port_of_nginx_is_refused_for_prometheus(tmp_path: Path) -> None:
    write_app(tmp_path)
    port = free_port()
    result = run_up(tmp_path, "--with", "monitoring", "--set", f"monitoring.metrics_port={port}", port=port)
    assert one_line_error(result) == (
        f"Error: monitoring.metrics_port = {port} is also proxy.port: set one of them to another port"
    )


def test_prometheus_missing_says_how_to_install_it(tmp_path: Path) -> None:
    write_app(tmp_path)
    env = up_env(PATH=f"/usr/sbin:{BIN}")  # nginx, but no /usr/bin/prometheus
    result = run_up(tmp_path, "--with", "monitoring", env=env)
    assert "apt-get install prometheus`" in one_line_error(result)
    assert processes_under(tmp_path) == {}


def test_alertmanager_missing_says_how_to_install_it(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    write_app(tmp_path)  # the project at tmp_path itself: a folder deeper, its run dir's sockets may not fit
    programs = tmp_path_factory.mktemp("bin")
    (programs / "prometheus").symlink_to("/usr/bin/prometheus")
    env = up_env(PATH=f"/usr/sbin:{programs}:{BIN}")  # nginx and Prometheus, no prometheus-alertmanager
    result = run_up(tmp_path, "--with", "monitoring", env=env)
    assert one_line_error(result) == (
        "Error: prometheus-alertmanager not found on PATH: --with monitoring runs it; "
        "install it with `apt-get install prometheus-alertmanager` (Debian, Ubuntu)"
    )
    assert processes_under(tmp_path) == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read it (No such file or directory); point it at a file holding the webhook's URL"),
        ("secret-token\n", "holds no http:// or https:// URL alone; write the webhook's URL, nothing else, in it"),
        ("https://a.example/x https://b.example/y\n", "holds no http:// or https:// URL alone"),
        ("http://[::1/hook\n", "holds no http:// or https:// URL alone"),
    ],
)
def test_a_webhook_file_without_a_url_is_one_line_that_never_shows_its_text(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    write_app(tmp_path)
    if text is not None:
        (tmp_path / "hook").write_text(text)
    result = run_up(
        tmp_path, "--with", "monitoring", "--set", "monitoring.alert_webhook_url_file=hook",
        "--set", f"monitoring.prometheus_port={free_port()}", "--set", f"monitoring.metrics_port={free_port()}",
        "--set", f"monitoring.alertmanager_port={free_port()}",
    )  # fmt: skip
    error = one_line_error(result)
    assert error.startswith("Error: monitoring.alert_webhook_url_file hook: ") and problem in error
    assert "secret-token" not in error and "example" not in error
    assert processes_under(tmp_path) == {}
    assert not (tmp_path / ".flaskprod" / "run" / "alertmanager").exists()


# --- what `up` renders ---------------------------------------------------------------------------------------


def test_nginx_listens_for_the_scraper_on_loopback_whatever_its_public_address() -> None:
    spec = Spec().replace(**{"proxy.host": "0.0.0.0"})
    ctx = NginxContext(
        host="0.0.0.0", port=8000, upstream="unix:/run/app.sock", protocol="http", conf_dir="/c",
        pid_file="/c/nginx.pid", temp_dir="/c/tmp", access_log="/c/access.log", error_log="stderr",
        metrics_host="127.0.0.1", metrics_port=9117,
    )  # fmt: skip
    conf = render_nginx_conf(spec, derive(spec), ctx)
    assert "listen 0.0.0.0:8000;" in conf and "listen 127.0.0.1:9117;" in conf
    assert "0.0.0.0:9117" not in conf


def test_up_writes_the_rules_build_writes_with_its_own_header() -> None:
    spec = Spec()
    app = Monitored(name=JOB, spec=spec, derived=derive(spec), server="gunicorn", app_port=9117)
    scrape = Scrape(job=JOB, targets=("127.0.0.1:9117",), interval=5)
    built, ran = prometheus_files(app, scrape), prometheus_files(app, scrape, itself="127.0.0.1:9090", by="up")
    assert yaml.safe_load(built["alerts.yml"]) == yaml.safe_load(ran["alerts.yml"])
    assert ran["alerts.yml"].startswith("# alerts.yml: written by `flaskprod up` from the spec")
    config = yaml.safe_load(ran["prometheus.yml"])
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    assert config["scrape_configs"][1]["static_configs"] == [{"targets": ["127.0.0.1:9090"]}]
