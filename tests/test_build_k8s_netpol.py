"""`flaskprod build --target k8s --with monitoring`: the NetworkPolicy admits the Prometheus Operator's Prometheus
to the scraper's port, and no other pod; its comment says how to admit another, and that way works.

The port rule had no `from`: every pod in every namespace could read the app's metrics."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.buildkit import checkov, run_tool, tool
from tests.test_build_k8s import CHECKOV_SKIPS, PRODUCTION, YAMLLINT, Tree, render

# The labels every Prometheus the Prometheus Operator runs carries on its pods (its StatefulSet's selector).
OPERATOR_PROMETHEUS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator"}


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Tree:
    return render(tmp_path_factory.mktemp("netpol"), PRODUCTION, extras=("monitoring",))


def metrics_rules(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [rule for rule in policy["spec"]["ingress"] if any(p["port"] == "metrics" for p in rule["ports"])]


def test_only_the_operators_prometheus_reaches_the_metrics_port(monitored: Tree) -> None:
    policy = monitored.object("NetworkPolicy")
    [rule] = metrics_rules(policy)
    assert rule["from"] == [{"namespaceSelector": {}, "podSelector": {"matchLabels": OPERATOR_PROMETHEUS}}]
    # The app's port stays open to clients (the Ingress controller), as before.
    assert {"ports": [{"protocol": "TCP", "port": "http"}]} in policy["spec"]["ingress"]
    # The PodMonitor scrapes that port.
    monitor = yaml.safe_load(monitored.files["monitoring/podmonitor.yaml"])
    assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def test_the_file_says_who_may_scrape_and_how_to_admit_another(monitored: Tree) -> None:
    text = monitored.files["networkpolicy.yaml"]
    header = "".join(line[2:] + "\n" for line in text.splitlines() if line.startswith("#"))
    port = monitored.d.spec.monitoring.metrics_port
    assert f"The metrics port ({port}) admits the Prometheus Operator's Prometheus pods alone" in header
    assert "app.kubernetes.io/name: prometheus, app.kubernetes.io/managed-by: prometheus-operator" in header
    assert "kustomize patch" in header and "kubernetes.io/metadata.name" in header


def test_the_patch_the_comment_describes_admits_another_prometheus(monitored: Tree, tmp_path: Path) -> None:
    # An overlay over the built tree, adding a plain Prometheus in namespace `metrics` to the rule.
    index = next(i for i, rule in enumerate(monitored.object("NetworkPolicy")["spec"]["ingress"]) if "from" in rule)
    peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "metrics"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    kustomization = {
        "resources": [os.path.relpath(monitored.path, overlay)],  # kustomize takes no absolute path
        "patches": [
            {
                "target": {"kind": "NetworkPolicy", "name": "shop"},
                "patch": yaml.safe_dump([{"op": "add", "path": f"/spec/ingress/{index}/from/-", "value": peer}]),
            }
        ],
    }
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    built = list(yaml.safe_load_all(run_tool(["kubectl", "kustomize", str(overlay)])))
    policy = next(doc for doc in built if doc["kind"] == "NetworkPolicy" and doc["metadata"]["name"] == "shop")
    [rule] = metrics_rules(policy)
    assert rule["from"][1] == peer and len(rule["from"]) == 2


def test_the_tools_accept_the_policy(monitored: Tree, tmp_path: Path) -> None:
    built = tmp_path / "built.yaml"
    built.write_text(run_tool(["kubectl", "kustomize", str(monitored.path)]))
    output = run_tool([tool("kubernetes-validate"), "--strict", "-k", "1.29.0", str(built)])
    assert "passed for resource networkpolicy/shop" in output
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, str(monitored.path / "networkpolicy.yaml")])
    summary = checkov(monitored.path, "kubernetes", skip=list(CHECKOV_SKIPS))
    assert summary["failed"] == 0
