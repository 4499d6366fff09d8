"""The monitoring files (`flaskprod build --with monitoring`) judged by promtool and yamllint, then run: a real
Prometheus loads them and scrapes a real `flaskprod serve`, its rules evaluate and fire on the app's own series,
and every dashboard query answers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import secrets
import subprocess
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from flaskprod.errors import BuildError
from flaskprod.render.compose import render_compose, render_swarm
from flaskprod.render.deployment import Deployment
from flaskprod.render.kubernetes import render_k8s
from flaskprod.render.monitoring import Monitored, Scrape, dashboard_uid, monitoring_files, prometheus_files, slow_bound
from flaskprod.render.systemd import render_systemd
from flaskprod.runtime.metrics import BUCKETS, LE_LABELS
from tests.buildkit import make_deployment, make_spec, run_tool, tool, write_tree
from tests.conftest import StartServer
from tests.support import free_port, running, wait_for
from tests.test_build import compose_config
from tests.test_serve import clean_env

YAMLLINT = "{extends: default, rules: {line-length: {max: 160}, document-start: disable}}"
SHOP = {"app.name": "shop", "app.version": "1.2.3"}
ALL_ALERTS = {
    "AppDown", "AppTargetsMissing", "ScrapesFailing", "HighErrorRatio", "SlowRequests", "WorkersSaturated",
    "ReadinessFailing", "RequestsQueued",
}


def render(
    tmp_path: Path, settings: Mapping[str, Any] | None = None, scrape: Scrape | None = None, *, probed: bool = True
) -> tuple[Deployment, dict[str, str], Path]:
    """The monitoring files of a shop deployment with dotted settings, written under tmp_path/deploy; probed: its
    readiness path is probed (as Kubernetes does), which brings ReadinessFailing."""
    d = make_deployment(tmp_path / "project", spec=make_spec(**SHOP, **(settings or {})))
    scrape = scrape or Scrape(job="shop", dns_names=("tasks.app",))
    files = monitoring_files(d, scrape)
    if probed:
        monitored = Monitored.of(d, readiness_probed=True)
        files |= {f"prometheus/{path}": text for path, text in prometheus_files(monitored, scrape).items()}
    return d, files, write_tree(tmp_path / "deploy", files)


def rules(out: Path) -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load((out / "prometheus" / "alerts.yml").read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def promtool_test(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("promtool"), "test", "rules", "alerts.test.yml"],
        cwd=out / "prometheus", capture_output=True, text=True, timeout=60,
    )


# --- judged by promtool and yamllint ----------------------------------------------------------------

SPECS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "one-second-deadline-sync-workers": {"server.timeout": 1, "server.threads": 1, "server.workers": 3},
    "long-drain-custom-paths": {
        "server.drain_delay": 120, "monitoring.ready_path": "/ready", "monitoring.metrics_path": "/prom",
    },
}


@pytest.mark.parametrize("name", SPECS)
def test_promtool_accepts_config_and_rules_and_each_alert_fires_and_stays_quiet(tmp_path: Path, name: str) -> None:
    _, files, out = render(tmp_path, SPECS[name])
    prometheus = out / "prometheus"
    run_tool([tool("promtool"), "check", "config", str(prometheus / "prometheus.yml")])
    run_tool([tool("promtool"), "check", "rules", str(prometheus / "alerts.yml")])
    result = promtool_test(out)
    assert result.returncode == 0, result.stdout + result.stderr
    # Each alert has a test that it fires and one that it stays quiet.
    tests = yaml.safe_load((prometheus / "alerts.test.yml").read_text())["tests"]
    assert {t["name"] for t in tests} == {f"{a} {case}" for a in ALL_ALERTS for case in ("fires", "stays quiet")}
    yamls = [str(out / path) for path in files if path.endswith(".yml")]
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *yamls])
    for path in yamls:
        assert Path(path).read_text().startswith("# "), f"{path} does not open with the generated-file comment"


def test_a_threshold_edited_by_hand_fails_its_unit_test(tmp_path: Path) -> None:
    _, _, out = render(tmp_path)
    path = out / "prometheus" / "alerts.yml"
    text = path.read_text()
    assert text.count("> 0.05") == 1
    path.write_text(text.replace("> 0.05", "> 0.5"))
    result = promtool_test(out)
    assert result.returncode != 0
    assert "HighErrorRatio" in result.stdout + result.stderr, result.stdout + result.stderr


def test_one_app_in_two_kubernetes_namespaces_alerts_for_each_apart(tmp_path: Path) -> None:
    # The Prometheus Operator gives every series its namespace: staging failing must not page as production.
    _, _, out = render(tmp_path)
    series = 'http_requests_total{{job="shop", namespace="{ns}", method="GET", endpoint="/", status="{status}"}}'
    case = {
        "rule_files": ["alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": series.format(ns="staging", status="500"), "values": "0+100x20"},
                {"series": series.format(ns="production", status="200"), "values": "0+1000x20"},
            ],
            "alert_rule_test": [{
                "eval_time": "15m",
                "alertname": "HighErrorRatio",
                "exp_alerts": [{
                    "exp_labels": {"job": "shop", "namespace": "staging", "severity": "critical"},
                    "exp_annotations": rules(out)["HighErrorRatio"]["annotations"]
                    | {"summary": "shop: more than 5% of requests fail"},
                }],
            }],
        }],
    }
    (out / "prometheus" / "namespaces.test.yml").write_text(yaml.safe_dump(case))
    result = subprocess.run(
        [tool("promtool"), "test", "rules", "namespaces.test.yml"],
        cwd=out / "prometheus", capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_thresholds_come_from_the_spec(tmp_path: Path) -> None:
    d, _, out = render(
        tmp_path, {"server.timeout": 5, "server.workers": 3, "server.threads": 4, "server.drain_delay": 120}
    )
    found = rules(out)
    assert set(found) == ALL_ALERTS
    # Half the 5 s deadline, on a bucket bound the runtime's histogram has.
    assert 'le="2.5"' in found["SlowRequests"]["expr"]
    assert "2.5s" in found["SlowRequests"]["annotations"]["summary"]
    assert (d.derived.workers, d.derived.threads) == (3, 4)
    assert found["WorkersSaturated"]["expr"].endswith(">= 10.8")  # 0.9 x 3 workers x 4 threads
    # Four drains of 120 s: a drain alone cannot make most probes fail.
    assert "[8m]" in found["ReadinessFailing"]["expr"]
    assert found["AppDown"]["for"] == "1m"
    assert {r["labels"]["severity"] for r in found.values()} == {"critical", "warning"}
    assert all(set(r["annotations"]) == {"summary", "description"} for r in found.values())


def test_readiness_alert_only_where_something_probes_readiness(tmp_path: Path) -> None:
    # Compose's and Swarm's health checks ask /healthz; `up` and systemd ask /readyz only while a release starts.
    # There no probe's answer is counted, and ReadinessFailing, with nothing to read, could never fire.
    _, _, out = render(tmp_path / "compose", probed=False)
    assert set(rules(out)) == ALL_ALERTS - {"ReadinessFailing"}
    assert promtool_test(out).returncode == 0
    # Kubernetes' readiness probe asks it through nginx every few seconds.
    d = make_deployment(tmp_path / "k8s", spec=make_spec(**SHOP), extras=["monitoring"], out="deploy/k8s")
    k8s = yaml.safe_load(render_k8s(d)["monitoring/alerts.yml"])
    assert "ReadinessFailing" in {rule["alert"] for group in k8s["groups"] for rule in group["rules"]}


def test_alerts_without_a_metric_to_read_are_left_out(tmp_path: Path) -> None:
    settings = {"server.worker_class": "gevent", "monitoring.health": False, "monitoring.queue_time": False}
    _, _, out = render(tmp_path, settings)
    assert set(rules(out)) == ALL_ALERTS - {"WorkersSaturated", "ReadinessFailing", "RequestsQueued"}
    assert promtool_test(out).returncode == 0


@pytest.mark.parametrize("timeout", [1, 2, 5, 10, 30, 300])
def test_slow_bound_is_a_bucket_bound_at_most_half_the_deadline(timeout: int) -> None:
    bound, le = slow_bound(timeout)
    assert bound in BUCKETS and LE_LABELS[BUCKETS.index(bound)] == le
    assert bound <= timeout / 2
    larger = [b for b in BUCKETS if b > bound]
    assert not larger or larger[0] > timeout / 2  # the largest such bound


def test_prometheus_scrapes_static_targets_and_dns_names_on_the_app_port(tmp_path: Path) -> None:
    scrape = Scrape(job="shop", targets=("10.0.0.5:8000",), dns_names=("app",), interval=5)
    _, files, _ = render(tmp_path, scrape=scrape)
    config = yaml.safe_load(files["prometheus/prometheus.yml"])
    assert config["global"] == {"scrape_interval": "5s", "evaluation_interval": "5s"}
    assert config["rule_files"] == ["alerts.yml"]
    app, itself = config["scrape_configs"]
    assert app["job_name"] == "shop" and app["metrics_path"] == "/metrics"
    assert app["static_configs"] == [{"targets": ["10.0.0.5:8000"]}]
    assert app["dns_sd_configs"] == [{"names": ["app"], "type": "A", "port": 8000, "refresh_interval": "30s"}]
    assert itself["job_name"] == "prometheus"


def test_files_go_under_the_prefix(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**SHOP))
    files = monitoring_files(d, Scrape(job="shop", targets=("app:8000",)), prefix="monitoring/")
    assert sorted(files) == [
        "monitoring/alertmanager/alertmanager.yml",
        "monitoring/grafana/dashboards/shop.json",
        "monitoring/grafana/provisioning/dashboards/shop.yml",
        "monitoring/grafana/provisioning/datasources/prometheus.yml",
        "monitoring/prometheus/alerts.test.yml",
        "monitoring/prometheus/alerts.yml",
        "monitoring/prometheus/prometheus.yml",
    ]


def test_refuses_a_port_that_speaks_the_uwsgi_protocol_with_advice_that_builds(tmp_path: Path) -> None:
    spec = make_spec(**SHOP, **{"deploy.app_port": 9000})
    d = make_deployment(tmp_path / "project", spec=spec, server="uwsgi", extras=["monitoring"])
    with pytest.raises(BuildError) as refused:
        monitoring_files(d, Scrape(job="shop", dns_names=("app",)))
    assert str(refused.value) == (
        "Prometheus would scrape each app container on port 9000, where uWSGI speaks the uwsgi protocol, not HTTP: "
        "pass --server gunicorn, or use --target k8s or systemd, whose Prometheus scrapes nginx"
    )
    # Each way out it names builds with monitoring (it once said to serve the metrics "on another port", which no
    # setting does).
    assert "monitoring/prometheus/prometheus.yml" in render_swarm(dataclasses.replace(d, server="gunicorn"))
    assert "monitoring/podmonitor.yaml" in render_k8s(d)
    assert "monitoring/prometheus.yml" in render_systemd(d)
    assert monitoring_files(d, Scrape(job="shop", dns_names=("app",), port=9117))


@pytest.mark.parametrize("render", [render_compose, render_swarm])
def test_compose_and_swarm_scrape_each_replicas_metrics_responder_whatever_protocol_it_speaks(
    tmp_path: Path, render: Callable[[Deployment], dict[str, str]]
) -> None:
    # Beside the app server, on the next port, in HTTP: a scrape never queues behind the replica's requests, and
    # uWSGI's replicas, which speak the uwsgi protocol on deploy.app_port, are scraped too.
    spec = make_spec(**SHOP, **{"deploy.app_port": 9000})
    d = make_deployment(tmp_path / "project", spec=spec, server="uwsgi", extras=["monitoring"])
    config = yaml.safe_load(render(d)["monitoring/prometheus/prometheus.yml"])
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "shop"]
    name = "app" if render is render_compose else "tasks.app"
    assert [(sd["names"], sd["port"]) for sd in job["dns_sd_configs"]] == [([name], 9001)]


def test_refuses_when_the_app_exports_no_metrics(tmp_path: Path) -> None:
    d = make_deployment(tmp_path / "project", spec=make_spec(**SHOP, **{"monitoring.metrics": False}))
    with pytest.raises(BuildError, match=r"monitoring\.metrics is false; set it to true"):
        monitoring_files(d, Scrape(job="shop", targets=("app:8000",)))


def test_scrape_needs_somewhere_to_look() -> None:
    with pytest.raises(ValueError, match="targets or dns_names"):
        Scrape(job="shop")


def test_dashboard_is_provisioned_with_a_stable_uid_and_the_provisioned_datasource(tmp_path: Path) -> None:
    _, files, _ = render(tmp_path)
    dashboard = json.loads(files["grafana/dashboards/shop.json"])
    again = json.loads(render(tmp_path / "again")[1]["grafana/dashboards/shop.json"])
    assert dashboard["uid"] == again["uid"] == "flaskprod-shop"
    assert dashboard["schemaVersion"] >= 39
    titles = [p["title"] for p in dashboard["panels"]]
    assert titles == [
        "Version", "Containers up", "Requests per second by status", "Error ratio (5xx)", "Latency",
        "Requests in flight vs capacity", "Waiting for the app",
    ]
    assert len({p["id"] for p in dashboard["panels"]}) == len(titles)
    # Without the wait counted there is nothing to show.
    off = json.loads(render(tmp_path / "off", {"monitoring.queue_time": False})[1]["grafana/dashboards/shop.json"])
    assert [p["title"] for p in off["panels"]] == titles[:-1]
    datasource = yaml.safe_load(files["grafana/provisioning/datasources/prometheus.yml"])["datasources"][0]
    assert (datasource["url"], datasource["jsonData"]["timeInterval"]) == ("http://prometheus:9090", "15s")
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"]
    provider = yaml.safe_load(files["grafana/provisioning/dashboards/shop.yml"])["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    long = dashboard_uid("a" * 63)
    assert len(long) <= 40 and long == dashboard_uid("a" * 63) != dashboard_uid("a" * 62 + "b")


# --- as Swarm runs them ------------------------------------------------------------------------------


@pytest.mark.parametrize("extras", [["monitoring"], ["logging"], ["monitoring", "logging"]])
def test_swarm_keeps_every_monitoring_and_logging_service_running_on_the_node_of_its_data(
    tmp_path: Path, extras: list[str]
) -> None:
    d = make_deployment(tmp_path / "p", spec=make_spec(**SHOP), extras=extras, out="deploy/swarm")
    text = render_swarm(d)["stack.yaml"]
    services = yaml.safe_load(text)["services"]
    ours = {"prometheus", "alertmanager", "grafana", "loki", "alloy"} & set(services)
    assert ours == {"grafana"} | ({"prometheus", "alertmanager"} if "monitoring" in extras else set()) | (
        {"loki", "alloy"} if "logging" in extras else set()
    )
    for name in ours:
        # Each exits 0 on the SIGTERM of a `docker stop`: under on-failure Swarm would never start it again, and a
        # stopped Prometheus alerts nobody. No attempt limit either: Swarm never replaces a task it gave up on.
        assert services[name]["deploy"]["restart_policy"] == {"condition": "any", "delay": "5s"}, name
    # Their volumes are local to a node: started on another, Prometheus would lose its history, Alertmanager its
    # silences, Grafana its users.
    for name in {"prometheus", "alertmanager", "grafana"} & ours:
        assert services[name]["deploy"]["placement"]["constraints"] == ["node.labels.shop-monitoring == true"]
        assert services[name]["deploy"]["update_config"]["order"] == "stop-first"
    assert "docker node update --label-add shop-monitoring=true NODE" in text


def size(value: str | int) -> int:
    """Bytes of a Compose memory size (512M, 1G: Docker's units are powers of 1024)."""
    text = str(value).lower().removesuffix("b")
    power = "kmg".find(text[-1]) + 1
    return int(float(text[:-1] if power else text) * 1024**power)


@pytest.mark.parametrize(("renderer", "file"), [(render_compose, "compose.yaml"), (render_swarm, "stack.yaml")])
def test_every_monitoring_and_logging_container_has_its_cpu_and_memory_bounded(
    tmp_path: Path, renderer: Callable[[Deployment], dict[str, str]], file: str
) -> None:
    d = make_deployment(tmp_path / "p", spec=make_spec(**SHOP), extras=["monitoring", "logging"], out="deploy/x")
    out = write_tree(tmp_path / "p" / d.out, renderer(d))
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": "x" * 20}
    services = compose_config(out / file, env)["services"]
    for name in ("prometheus", "alertmanager", "grafana", "loki", "alloy"):
        # Unbounded, Prometheus's series or a heavy Grafana query take the memory the app's workers were sized for.
        limits = services[name]["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0 and size(limits["memory"]) > 0, (name, limits)
    # Go collects harder as it nears the limit, before the kernel kills Prometheus at it.
    memory = size(services["prometheus"]["deploy"]["resources"]["limits"]["memory"])
    gomemlimit = services["prometheus"]["environment"]["GOMEMLIMIT"]
    assert gomemlimit.endswith("MiB") and 0.8 * memory <= int(gomemlimit.removesuffix("MiB")) * 2**20 < memory


@pytest.mark.parametrize(("renderer", "file"), [(render_compose, "compose.yaml"), (render_swarm, "stack.yaml")])
def test_prometheus_keeps_its_samples_for_the_retention_the_spec_gives(
    tmp_path: Path, renderer: Callable[[Deployment], dict[str, str]], file: str
) -> None:
    spec = make_spec(**SHOP, **{"monitoring.retention_days": 45})
    d = make_deployment(tmp_path / "p", spec=spec, extras=["monitoring"], out="deploy/x")
    out = write_tree(tmp_path / "p" / d.out, renderer(d))
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": "x" * 20}
    prometheus = compose_config(out / file, env)["services"]["prometheus"]
    # The image's own arguments are kept: where its config is given and where its data volume is.
    assert prometheus["command"] == [
        "--config.file=/etc/prometheus/prometheus.yml",
        "--storage.tsdb.path=/prometheus",
        "--storage.tsdb.retention.time=45d",
    ]
    mounted = {volume.split(":")[1] for volume in prometheus["volumes"]}  # docker-compose v1: source:target:mode
    assert "/prometheus" in mounted
    if renderer is render_compose:
        assert "/etc/prometheus" in mounted
    else:
        assert "/etc/prometheus/prometheus.yml" in {config["target"] for config in prometheus["configs"]}


# --- Alertmanager: where the alerts go -------------------------------------------------------------

HOOK = "secrets/alert_webhook_url"  # the file monitoring.alert_webhook_url_file names, from the project root
SECRET = "/run/secrets/alert_webhook_url"  # where Compose and Swarm mount it
VM_URL_FILE = "/etc/prometheus/alert_webhook_url"  # where the systemd README installs it
# Debian 12's amtool (0.25) predates url_file (Alertmanager 0.26, the containers' image is later): it reads the
# rest of the file with the URL itself in its place.
AMTOOL_0_25 = {"url_file": "url"}


def amtool_check(path: Path, *, url_file: str | None = None) -> None:
    """`amtool check-config` of an alertmanager.yml; url_file: the file it must read the webhook's URL from."""
    config = yaml.safe_load(path.read_text())
    hooks = [hook for receiver in config["receivers"] for hook in receiver.get("webhook_configs", [])]
    if url_file is None:
        assert hooks == [] and config["route"]["receiver"] == "ui-only"
        run_tool([tool("amtool"), "check-config", str(path)])
        return
    assert hooks == [{"url_file": url_file, "send_resolved": True}]
    older = path.with_name("alertmanager-0.25.yml")
    older.write_text(path.read_text().replace(f"url_file: {url_file}", "url: http://127.0.0.1:9/hook"))
    run_tool([tool("amtool"), "check-config", str(older)])


def alerting_targets(prometheus_yml: str) -> list[str]:
    config = yaml.safe_load(prometheus_yml)
    return [t for am in config["alerting"]["alertmanagers"] for c in am["static_configs"] for t in c["targets"]]


@pytest.mark.parametrize("hook", [None, HOOK])
def test_compose_runs_alertmanager_on_loopback_and_prometheus_sends_it_the_alerts(
    tmp_path: Path, hook: str | None
) -> None:
    settings = {**SHOP, **({"monitoring.alert_webhook_url_file": hook} if hook else {})}
    d = make_deployment(tmp_path / "p", spec=make_spec(**settings), extras=["monitoring"], out="deploy/compose")
    files = render_compose(d)
    out = write_tree(tmp_path / "p" / d.out, files)
    (tmp_path / "p" / "secrets").mkdir()
    (tmp_path / "p" / HOOK).write_text("https://chat.example.com/hooks/T0K3N\n")
    amtool_check(out / "monitoring/alertmanager/alertmanager.yml", url_file=SECRET if hook else None)
    run_tool([tool("promtool"), "check", "config", str(out / "monitoring/prometheus/prometheus.yml")])
    assert alerting_targets(files["monitoring/prometheus/prometheus.yml"]) == ["alertmanager:9093"]
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": "x" * 20}
    config = compose_config(out / "compose.yaml", env)
    alertmanager = config["services"]["alertmanager"]
    assert alertmanager["image"].startswith("prom/alertmanager:v0.")
    assert int(alertmanager["image"].split(".")[1]) >= 26  # url_file
    assert alertmanager["ports"] == ["127.0.0.1:9093:9093/tcp"]  # docker-compose v1's spelling
    assert {v.split(":")[1] for v in alertmanager["volumes"]} == {"/etc/alertmanager", "/alertmanager"}
    assert "--cluster.listen-address=" in alertmanager["command"]
    if hook:
        assert alertmanager["secrets"] == [{"source": "alert_webhook_url"}]
        # The user's file, found from the compose file's directory as Compose resolves it.
        assert Path(config["secrets"]["alert_webhook_url"]["file"]) == tmp_path / "p" / HOOK
        assert "T0K3N" not in "".join(files.values())
        assert f"posts them to the URL in {HOOK}" in files["compose.yaml"]
    else:
        assert "secrets" not in alertmanager and "keeps them in its UI" in files["compose.yaml"]


def test_swarm_gives_alertmanager_its_config_by_content_and_the_url_as_a_secret(tmp_path: Path) -> None:
    spec = make_spec(**SHOP, **{"monitoring.alert_webhook_url_file": HOOK})
    d = make_deployment(tmp_path / "p", spec=spec, extras=["monitoring"], out="deploy/swarm")
    files = render_swarm(d)
    out = write_tree(tmp_path / "p" / d.out, files)
    amtool_check(out / "monitoring/alertmanager/alertmanager.yml", url_file=SECRET)
    assert alerting_targets(files["monitoring/prometheus/prometheus.yml"]) == ["alertmanager:9093"]
    env = {**clean_env(), "FLASK_SECRET_KEY": secrets.token_hex(32)}
    stack = compose_config(out / "stack.yaml", env)
    alertmanager = stack["services"]["alertmanager"]
    # Swarm would publish it on every node's every address: Prometheus reaches it over the overlay.
    assert "ports" not in alertmanager
    assert alertmanager["secrets"] == [{"source": "shop_alert_webhook_url", "target": "alert_webhook_url"}]
    assert stack["secrets"]["shop_alert_webhook_url"]["external"] is True
    assert f"docker secret create shop_alert_webhook_url {HOOK}" in files["stack.yaml"]
    (config,) = alertmanager["configs"]
    assert config["target"] == "/etc/alertmanager/alertmanager.yml"
    text = files["monitoring/alertmanager/alertmanager.yml"]
    name = stack["configs"][config["source"]]["name"]
    assert name.endswith("_" + hashlib.sha256(text.encode()).hexdigest()[:12])


def test_systemd_wires_debians_alertmanager_on_loopback(tmp_path: Path) -> None:
    for hook in (None, HOOK):
        settings = {**SHOP, **({"monitoring.alert_webhook_url_file": hook} if hook else {})}
        d = make_deployment(tmp_path / str(bool(hook)), spec=make_spec(**settings), extras=["monitoring"])
        files = render_systemd(d)
        out = write_tree(tmp_path / str(bool(hook)) / d.out, files)
        amtool_check(out / "monitoring/alertmanager.yml", url_file=VM_URL_FILE if hook else None)
        assert alerting_targets(files["monitoring/prometheus.yml"]) == ["127.0.0.1:9093"]
        readme = files["README.md"]
        assert "--web.listen-address=127.0.0.1:9093 --cluster.listen-address=" in readme
        assert ("install -m 0640 -g prometheus secrets/alert_webhook_url" in readme) == bool(hook)


def test_kubernetes_routes_the_namespaces_alerts_to_the_webhook_in_a_secret(tmp_path: Path) -> None:
    spec = make_spec(**SHOP, **{"monitoring.alert_webhook_url_file": HOOK, "deploy.namespace": "prod"})
    d = make_deployment(tmp_path / "p", spec=spec, extras=["monitoring"], out="deploy/k8s")
    files = render_k8s(d)
    out = write_tree(tmp_path / "p" / d.out, files)
    kustomized = run_tool(["kubectl", "kustomize", str(out / "monitoring")])
    built = {doc["kind"]: doc for doc in yaml.safe_load_all(kustomized)}
    assert set(built) == {"PodMonitor", "PrometheusRule", "ConfigMap", "AlertmanagerConfig"}
    config = built["AlertmanagerConfig"]
    assert config["metadata"]["namespace"] == "prod"
    (receiver,) = config["spec"]["receivers"]
    assert receiver["webhookConfigs"] == [
        {"urlSecret": {"name": "shop-alert-webhook", "key": "alert_webhook_url"}, "sendResolved": True}
    ]
    # The grouping alertmanager.yml has elsewhere.
    elsewhere = yaml.safe_load(render_compose(d)["monitoring/alertmanager/alertmanager.yml"])["route"]
    route = config["spec"]["route"]
    assert (route["groupBy"], route["groupWait"], route["groupInterval"], route["repeatInterval"]) == (
        elsewhere["group_by"], elsewhere["group_wait"], elsewhere["group_interval"], elsewhere["repeat_interval"]
    )
    steps = files["monitoring/kustomization.yaml"]
    assert f"kubectl create secret generic shop-alert-webhook -n prod --from-file=alert_webhook_url={HOOK}" in steps
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *(str(p) for p in sorted((out / "monitoring").glob("*.yaml")))])
    # Without a webhook the cluster's Alertmanager routes them as it does every other app's.
    plain = make_deployment(tmp_path / "plain", spec=make_spec(**SHOP), extras=["monitoring"], out="deploy/k8s")
    assert "monitoring/alertmanagerconfig.yaml" not in render_k8s(plain)


def test_the_alerting_settings_stay_out_of_the_apps_environment(tmp_path: Path) -> None:
    """build and up read them, the app never does: a host's path in the image's ENV and the pods' env would change
    the image and roll the pods (and name a new release Job) whenever the file moved."""
    spec = make_spec(**SHOP, **{"monitoring.alert_webhook_url_file": HOOK, "monitoring.alertmanager_port": "9193"})
    for renderer in (render_compose, render_swarm, render_k8s, render_systemd):
        d = make_deployment(tmp_path / renderer.__name__, spec=spec, extras=["monitoring"])
        assert d.app_env().keys().isdisjoint({"FLASKPROD_MONITORING__ALERT_WEBHOOK_URL_FILE",
                                              "FLASKPROD_MONITORING__ALERTMANAGER_PORT"})  # fmt: skip
        text = "".join(renderer(d).values())
        assert "ALERT_WEBHOOK_URL_FILE" not in text and "ALERTMANAGER_PORT" not in text, renderer.__name__


# --- a real Prometheus scraping a real app ----------------------------------------------------------

APP = """
import time

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
prod = Production(app)


@prod.readiness_check("queue")
def queue():
    return False  # never ready: ReadinessFailing must see it


@app.get("/")
def index():
    return "ok"


@app.get("/fail")
def fail():
    return "boom", 500


@app.get("/slow")
def slow():
    time.sleep(0.6)  # past the 0.5 s bound a 1 s deadline gives
    return "slow"
"""
# Grafana's $__rate_interval, long enough here to span the whole test.
RATE_INTERVAL = "1m"


class PrometheusAPI:
    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def get(self, path: str, **params: Any) -> Any:
        response = requests.get(self.base + path, params=params, timeout=5)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, expr: str) -> list[dict[str, Any]]:
        end = time.time()
        data = self.get("/api/v1/query_range", query=expr, start=end - 60, end=end, step=1)
        assert data["resultType"] == "matrix", data
        result: list[dict[str, Any]] = data["result"]
        return result


@pytest.mark.integration
def test_real_prometheus_scrapes_the_app_evaluates_every_rule_and_answers_every_panel(
    tmp_path: Path, serve_app: StartServer
) -> None:
    # Behind a proxy, as every target runs it: the requests say when "nginx" passed them on.
    env = {"FLASKPROD_APP__NAME": "shop", "FLASKPROD_APP__VERSION": "1.2.3", "FLASKPROD_PROXY__TRUSTED_HOPS": "1"}
    server = serve_app(APP, env=env)
    app_target, dead_target = f"127.0.0.1:{server.port}", f"127.0.0.1:{free_port()}"
    scrape = Scrape(job="shop", targets=(app_target, dead_target), interval=1)
    d, files, out = render(tmp_path, {"server.timeout": 1}, scrape)
    port = free_port()
    log = tmp_path / "prometheus.log"
    args = [
        tool("prometheus"),
        f"--config.file={out / 'prometheus' / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    api = PrometheusAPI(port)
    with log.open("w") as output, running(args, stdout=output, stderr=subprocess.STDOUT) as proc:

        def ready() -> bool:
            assert proc.poll() is None, f"prometheus exited {proc.returncode}:\n{log.read_text()[-3000:]}"
            return requests.get(f"{api.base}/-/ready", timeout=2).status_code == 200

        wait_for(ready, timeout=20, what="prometheus ready")

        def hit(path: str) -> int:
            sent = {"X-Request-Start": f"t={time.time() - 0.03:.3f}"}  # 30 ms ago
            return requests.get(server.url(path), headers=sent, timeout=10).status_code

        # Every series exists before Prometheus's first look, so rate() sees the traffic after it grow.
        assert [hit(p) for p in ("/", "/fail", "/slow", "/readyz")] == [200, 500, 200, 503]
        endpoints = {"/", "/fail", "/slow", "/readyz"}
        wait_for(
            lambda: endpoints <= {s["metric"]["endpoint"] for s in api.query('http_requests_total{job="shop"}')},
            timeout=15, what="the first scrape of every endpoint",
        )
        paths = ["/"] * 30 + ["/fail"] * 6 + ["/slow"] * 3 + ["/readyz"] * 5
        with ThreadPoolExecutor(4) as pool:
            statuses = list(pool.map(hit, paths))
        assert statuses.count(500) == 6 and statuses.count(503) == 5

        targets = {t["labels"]["instance"]: t for t in api.get("/api/v1/targets")["activeTargets"]}
        assert targets[app_target]["health"] == "up", targets[app_target]
        assert targets[app_target]["scrapeUrl"].endswith("/metrics")

        # The rules loaded and evaluate without error on the app's real series ...
        def evaluated() -> dict[str, dict[str, Any]]:
            groups = api.get("/api/v1/rules")["groups"]
            found = {r["name"]: r for g in groups for r in g["rules"]}
            # Raised, not returned: wait_for's message then shows the last answer.
            assert all(r["health"] == "ok" for r in found.values()), {n: r["health"] for n, r in found.items()}
            return found

        found = wait_for(evaluated, timeout=15, what="every rule evaluated")
        assert set(found) == ALL_ALERTS, found

        # ... and those that should, go pending on them (their `for` keeps them from firing in a test).
        expected = {
            ("AppDown", dead_target), ("HighErrorRatio", ""), ("SlowRequests", ""), ("ReadinessFailing", app_target),
            # No scrape of it answered: under AppDown, which silences the job's warnings in Alertmanager.
            ("ScrapesFailing", dead_target),
        }

        def pending() -> set[tuple[str, str]]:
            alerts = api.get("/api/v1/alerts")["alerts"]
            seen = {(a["labels"]["alertname"], a["labels"].get("instance", "")) for a in alerts}
            assert expected <= seen, f"pending or firing: {seen}"
            return seen

        assert wait_for(pending, timeout=15, what=f"alerts {expected} pending") == expected

        # Every dashboard query answers, as Grafana would send it, with the data the traffic made.
        dashboard = json.loads(files["grafana/dashboards/shop.json"])
        answers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
                api.query_range(expr)
                answers[panel["title"], target["legendFormat"]] = api.query(expr)

        def values(title: str, legend: str) -> list[float]:
            return [float(s["value"][1]) for s in answers[title, legend]]

        assert [s["metric"]["version"] for s in answers["Version", "{{version}}"]] == ["1.2.3"]
        assert (values("Containers up", "up"), values("Containers up", "found")) == ([1.0], [2.0])
        statuses_seen = {s["metric"]["status"] for s in answers["Requests per second by status", "{{status}}"]}
        assert statuses_seen == {"200", "500"}, "probe answers (the 503s of /readyz) must not count as traffic"
        assert values("Error ratio (5xx)", "5xx ratio")[0] > 0.05
        p99 = values("Latency", "p99")
        assert len(p99) == 1 and 0.5 <= p99[0] <= 0.75, p99  # the /slow requests, in the (0.5, 0.75] bucket
        assert [s["metric"]["instance"] for s in answers["Requests in flight vs capacity", "{{instance}}"]] == [
            app_target
        ]
        capacity = d.derived.workers * d.derived.threads
        assert values("Requests in flight vs capacity", "capacity per container") == [float(capacity)]
        waited = values("Waiting for the app", "p50")
        assert len(waited) == 1 and 0.025 < waited[0] <= 0.075, waited  # each sent 30 ms before the app had it
        assert not math.isnan(values("Error ratio (5xx)", "5xx ratio")[0])
