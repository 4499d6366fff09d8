"""`flaskprod build --target k8s`: the manifests agree with the derived values and the images' files, and
are judged by real tools (kubectl kustomize, kubernetes-validate, yamllint, checkov, nginx -t, gixy-ng).

There is no cluster here: the objects are validated against the API schemas, not applied.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from flaskprod.errors import BuildError
from flaskprod.render.deployment import Deployment, ServerKind
from flaskprod.render.kubernetes import (
    GRAFANA_DASHBOARD_LABEL,
    POD_NETWORK_RANGES,
    ingress_hosts,
    probe_host,
    render_k8s,
    secret_name,
)
from tests.buildkit import checkov, make_deployment, make_spec, run_tool, tool, write_tree
from tests.support import BIN, copy_taskboard
from tests.test_serve import clean_env

YAMLLINT = "{extends: default, rules: {line-length: {max: 160}, document-start: disable}}"
# What checkov cannot see met in files written before their images exist, and why.
CHECKOV_SKIPS = {
    "CKV_K8S_43": "image digests: the images are built from these files, so only the spec's tags are known",
    "CKV_K8S_35": "DATABASE_URL: the runtime reads database.url_env from the environment only; "
    "FLASK_SECRET_KEY is a mounted file",
}
# A production-like spec: a registry image, a namespace, real host names.
PRODUCTION = {
    "app.name": "shop",
    "app.version": "1.2.3",
    "deploy.image": "registry.example.com/shop:1.2.3",
    "deploy.namespace": "shop-prod",
    "proxy.server_name": "shop.example.com www.shop.example.com",
}
EVERY_KIND = {"ServiceAccount", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"}


@dataclass(frozen=True)
class Tree:
    d: Deployment
    files: dict[str, str]
    path: Path  # the output directory, written

    def object(self, kind: str) -> dict[str, Any]:
        return next(doc for doc in self.objects() if doc["kind"] == kind)

    def objects(self) -> list[dict[str, Any]]:
        return [yaml.safe_load(text) for name, text in self.files.items() if _is_manifest(name)]


def _is_manifest(name: str) -> bool:
    """An object of the app's kustomization (monitoring/ is a kustomization of its own)."""
    return name.endswith(".yaml") and name != "kustomization.yaml" and "/" not in name


def render(
    root: Path, settings: Mapping[str, str] | None = None, *, server: ServerKind = "uwsgi", extras: tuple[str, ...] = ()
) -> Tree:
    """The k8s target of a small project under root, for dotted settings as a config file would give them."""
    spec = make_spec(**{"app.name": "shop", "app.version": "1.2.3", **(settings or {})})
    d = make_deployment(root / "project", spec=spec, server=server, extras=extras, out="deploy/k8s")
    files = render_k8s(d)
    return Tree(d=d, files=files, path=write_tree(root / "project" / d.out, files))


def pod(tree: Tree) -> dict[str, Any]:
    spec: dict[str, Any] = tree.object("Deployment")["spec"]["template"]["spec"]
    return spec


def container(tree: Tree, name: str) -> dict[str, Any]:
    return next(c for c in pod(tree)["containers"] if c["name"] == name)


def env_of(tree: Tree) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container(tree, "app")["env"]}


def cpus_of(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def bytes_of(quantity: str) -> int:
    for suffix, unit in (("Ki", 1024), ("Mi", 1024**2), ("Gi", 1024**3)):
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * unit
    return int(quantity)


# --- judged by the tools ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Tree]:
    """uwsgi: the target's default server, with monitoring, a drain and an Ingress; gunicorn: without them;
    defaults: nothing set but the name. The first two are production-like and go to checkov."""
    base = tmp_path_factory.mktemp("k8s")
    return {
        "uwsgi": render(
            base / "checked" / "uwsgi",
            # A scraper port of its own choosing: the one every object and nginx.conf name, as under systemd and up.
            {**PRODUCTION, "server.drain_delay": "5", "deploy.ingress_class": "nginx",
             "monitoring.metrics_port": "9555"},
            extras=("monitoring",),
        ),
        "gunicorn": render(
            base / "checked" / "gunicorn", {**PRODUCTION, "proxy.server_name": "shop"}, server="gunicorn"
        ),
        "defaults": render(base / "defaults"),
    }


@pytest.fixture(scope="module")
def kustomized(trees: dict[str, Tree], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`kubectl kustomize` of each tree, as the file kubectl apply -k would send."""
    base = tmp_path_factory.mktemp("kustomized")
    built = {}
    for name, tree in trees.items():
        built[name] = base / f"{name}.yaml"
        built[name].write_text(run_tool(["kubectl", "kustomize", str(tree.path)]))
    return built


@pytest.fixture(scope="module")
def checkov_summary(trees: dict[str, Tree]) -> dict[str, Any]:
    """One checkov run over both production-like trees (it takes seconds)."""
    return checkov(trees["uwsgi"].path.parents[3], "kubernetes", skip=list(CHECKOV_SKIPS))


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("uwsgi", EVERY_KIND | {"HorizontalPodAutoscaler", "Ingress"}),
        ("gunicorn", EVERY_KIND | {"HorizontalPodAutoscaler"}),
        ("defaults", EVERY_KIND | {"HorizontalPodAutoscaler"}),
    ],
)
def test_kustomize_builds_every_object(
    trees: dict[str, Tree], kustomized: dict[str, Path], name: str, kinds: set[str]
) -> None:
    built = list(yaml.safe_load_all(kustomized[name].read_text()))
    assert {(doc["kind"], doc["metadata"]["name"]) for doc in built} == {(kind, "shop") for kind in kinds}
    listed = yaml.safe_load(trees[name].files["kustomization.yaml"])["resources"]
    assert sorted(listed) == sorted(n for n in trees[name].files if _is_manifest(n))
    namespace = trees[name].d.spec.deploy.namespace
    assert {doc["metadata"].get("namespace") for doc in built} == {namespace}


@pytest.mark.parametrize("version", ["1.29.0", "1.37.0"])
def test_kubernetes_validate_accepts_every_object_strictly(kustomized: dict[str, Path], version: str) -> None:
    files = [str(kustomized[name]) for name in sorted(kustomized)]
    output = run_tool([tool("kubernetes-validate"), "--strict", "-k", version, *files])
    objects = sum(len(list(yaml.safe_load_all(Path(f).read_text()))) for f in files)
    assert output.count(" passed for resource ") == objects, output


def test_yamllint_accepts_every_file(trees: dict[str, Tree]) -> None:
    files = sorted(str(path) for tree in trees.values() for path in tree.path.glob("*.yaml"))
    assert len(files) == 8 + 7 + 7
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *files])


def test_checkov_passes_the_manifests(checkov_summary: dict[str, Any]) -> None:
    # 7 + 6 objects, and the two kustomization files checkov reads as resources too.
    assert checkov_summary["resource_count"] >= 13
    assert checkov_summary["failed"] == 0


@pytest.mark.parametrize("name", ["uwsgi", "gunicorn"])
def test_nginx_and_gixy_accept_the_pod_nginx_conf(trees: dict[str, Tree], tmp_path: Path, name: str) -> None:
    conf = trees[name].path / "nginx" / "nginx.conf"
    run_tool([shutil.which("nginx") or "nginx", "-t", "-q", "-p", str(tmp_path), "-c", str(conf)])
    run_tool([tool("gixy"), str(conf)])


# --- every shared number comes from one place -----------------------------------------------------------


def test_the_grace_period_outwaits_the_drain_and_the_graceful_stop(tmp_path: Path) -> None:
    tree = render(tmp_path, {"server.drain_delay": "3", "server.graceful_timeout": "20"})
    timeouts = tree.d.derived.timeouts
    assert pod(tree)["terminationGracePeriodSeconds"] == timeouts.shutdown_grace == 28
    # nginx stops accepting when the app does (after its drain), then finishes for as long as the app.
    assert container(tree, "nginx")["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "3"]
    assert "lifecycle" not in container(tree, "app")
    assert "worker_shutdown_timeout 20s;" in tree.files["nginx/nginx.conf"]


def test_without_a_drain_both_containers_wait_for_the_endpoint_removal(tmp_path: Path) -> None:
    tree = render(tmp_path, {"server.drain_delay": "0", "server.graceful_timeout": "30"})
    timeouts = tree.d.derived.timeouts
    waits = [container(tree, name)["lifecycle"]["preStop"]["exec"]["command"] for name in ("app", "nginx")]
    assert waits[0] == waits[1]
    seconds = int(waits[0][1])
    assert seconds > 0 and seconds + timeouts.graceful < pod(tree)["terminationGracePeriodSeconds"]


def test_the_app_container_gets_what_its_workers_were_sized_for(tmp_path: Path) -> None:
    tree = render(tmp_path, {"deploy.cpus": "1.5", "deploy.memory": "768M"})
    resources = container(tree, "app")["resources"]
    assert resources["limits"] == resources["requests"] == {"cpu": "1500m", "memory": "768Mi"}
    machine = tree.d.derived.machine
    assert cpus_of(resources["limits"]["cpu"]) == machine.cpus == 1.5
    assert bytes_of(resources["limits"]["memory"]) == machine.memory == 768 * 1024**2


@pytest.mark.parametrize(("server", "passes"), [("uwsgi", "uwsgi_pass"), ("gunicorn", "proxy_pass http://")])
def test_nginx_and_the_app_meet_on_one_socket(tmp_path: Path, server: ServerKind, passes: str) -> None:
    tree = render(tmp_path, server=server)
    bind = env_of(tree)["FLASKPROD_SERVER__BIND"]["value"]
    assert bind.startswith("unix:/")
    conf = tree.files["nginx/nginx.conf"]
    assert f"server {bind} fail_timeout=0;" in conf
    assert passes in conf
    assert f"FLASKPROD_SERVER__BIND={bind} " in tree.files["Dockerfile"]
    socket_dir = bind[len("unix:") :].rsplit("/", 1)[0]
    mounts = [{m["mountPath"]: m["name"] for m in container(tree, c)["volumeMounts"]} for c in ("app", "nginx")]
    assert mounts[0][socket_dir] == mounts[1][socket_dir]
    # Two users; the socket must be writable by nginx's, through the group both containers share.
    users = {container(tree, c)["securityContext"]["runAsUser"] for c in ("app", "nginx")}
    assert len(users) == 2 and pod(tree)["securityContext"]["fsGroup"]


def test_the_secret_is_referenced_never_written(trees: dict[str, Tree]) -> None:
    tree = trees["uwsgi"]
    assert all(doc["kind"] != "Secret" for doc in tree.objects())
    env = env_of(tree)
    assert "FLASK_SECRET_KEY" not in env
    key_file = env["FLASK_SECRET_KEY_FILE"]["value"]
    mounts = {m["name"]: m for m in container(tree, "app")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod(tree)["volumes"]}
    mount = next(m for m in mounts.values() if key_file.startswith(m["mountPath"] + "/"))
    assert mount["readOnly"] is True
    secret = volumes[mount["name"]]["secret"]
    assert secret["secretName"] == secret_name(tree.d) == "shop-secrets"
    assert {"key": "FLASK_SECRET_KEY", "path": key_file.rsplit("/", 1)[1]} in secret["items"]
    assert env["DATABASE_URL"] == {
        "name": "DATABASE_URL",
        "valueFrom": {"secretKeyRef": {"name": "shop-secrets", "key": "DATABASE_URL", "optional": True}},
    }
    assert "kubectl create secret generic shop-secrets -n shop-prod" in tree.files["kustomization.yaml"]


def test_the_namespace_is_set_only_when_configured(trees: dict[str, Tree]) -> None:
    for name, expected in (("uwsgi", "shop-prod"), ("defaults", None)):
        tree = trees[name]
        assert yaml.safe_load(tree.files["kustomization.yaml"]).get("namespace") == expected
        assert {doc["metadata"].get("namespace") for doc in tree.objects()} == {expected}


def test_monitoring_is_scraped_on_nginx_own_port_only_with_the_extra(trees: dict[str, Tree]) -> None:
    monitored, plain = trees["uwsgi"], trees["gunicorn"]
    port = monitored.d.spec.monitoring.metrics_port
    assert port == 9555  # monitoring.metrics_port, as systemd and up take it (k8s kept 9117)
    annotations = monitored.object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(port)
    assert annotations["prometheus.io/path"] == monitored.d.spec.monitoring.metrics_path
    metrics_port = {"name": "metrics", "containerPort": port, "protocol": "TCP"}
    assert metrics_port in container(monitored, "nginx")["ports"]
    conf = monitored.files["nginx/nginx.conf"]
    assert "9117" not in conf
    scraper_server = conf.split(f"listen 0.0.0.0:{port};", 1)[1]
    # The default (loopback only) would refuse the scraper, which comes from the pod network.
    assert all(f"allow {cidr};" in scraper_server for cidr in POD_NETWORK_RANGES)
    policy_ports = [rule["ports"][0]["port"] for rule in monitored.object("NetworkPolicy")["spec"]["ingress"]]
    assert policy_ports == ["http", "metrics"]

    plain_annotations = plain.object("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(key.startswith("prometheus.io/") for key in plain_annotations)
    assert [p["name"] for p in container(plain, "nginx")["ports"]] == ["http"]
    assert str(plain.d.spec.monitoring.metrics_port) not in plain.files["nginx/nginx.conf"]


def test_the_prometheus_operator_scrapes_every_pod_and_loads_the_rules_promtool_accepts(
    trees: dict[str, Tree]
) -> None:
    monitored = trees["uwsgi"]
    out = monitored.path / "monitoring"
    built = {doc["kind"]: doc for doc in yaml.safe_load_all(run_tool(["kubectl", "kustomize", str(out)]))}
    assert set(built) == {"PodMonitor", "PrometheusRule", "ConfigMap"}
    assert {doc["metadata"].get("namespace") for doc in built.values()} == {monitored.d.spec.deploy.namespace}
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *(str(path) for path in sorted(out.glob("*.y*ml")))])
    # The PodMonitor selects the app's pods, on a port nginx has, at the path the app serves metrics on.
    monitor = built["PodMonitor"]["spec"]
    template = monitored.object("Deployment")["spec"]["template"]
    assert monitor["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    (endpoint,) = monitor["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container(monitored, "nginx")["ports"]}
    assert endpoint["path"] == monitored.d.spec.monitoring.metrics_path
    # Its job is the pods' label value, the job every rule selects.
    job = template["metadata"]["labels"][monitor["jobLabel"]]
    rules = yaml.safe_load((out / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    assert exprs and all(f'job="{job}"' in expr for expr in exprs)
    # The PrometheusRule holds the very groups promtool checks and tests here.
    assert built["PrometheusRule"]["spec"]["groups"] == rules["groups"]
    run_tool([tool("promtool"), "check", "rules", str(out / "alerts.yml")])
    tested = subprocess.run([tool("promtool"), "test", "rules", "alerts.test.yml"], cwd=out, capture_output=True,
                            text=True, timeout=60)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The rule tests' series come from the scraper's port monitoring.metrics_port names.
    assert f'instance="shop:{monitored.d.spec.monitoring.metrics_port}"' in (out / "alerts.test.yml").read_text()
    # The dashboard every target gets, for Grafana's sidecar, on the same job.
    dashboard = built["ConfigMap"]
    assert dashboard["metadata"]["labels"][GRAFANA_DASHBOARD_LABEL] == "1"
    (panels,) = [json.loads(text)["panels"] for text in dashboard["data"].values()]
    queries = [t["expr"] for panel in panels for t in panel["targets"] if "job=" in t["expr"]]
    assert queries and all(f'job="{job}"' in q for q in queries)
    assert not any(name.startswith("monitoring/") for name in trees["gunicorn"].files)


def test_a_chosen_metrics_allow_list_is_kept(tmp_path: Path) -> None:
    tree = render(tmp_path, {"monitoring.metrics_allow": "10.42.0.0/16"}, extras=("monitoring",))
    scraper_server = tree.files["nginx/nginx.conf"].split("listen 0.0.0.0:9117;", 1)[1]
    assert "allow 10.42.0.0/16;" in scraper_server
    assert "192.168.0.0/16" not in tree.files["nginx/nginx.conf"]


def test_readiness_is_asked_through_nginx_with_a_host_it_serves(trees: dict[str, Tree]) -> None:
    tree = trees["uwsgi"]
    probe = container(tree, "nginx")["readinessProbe"]
    assert probe["httpGet"]["path"] == tree.d.spec.monitoring.ready_path
    assert probe["httpGet"]["httpHeaders"] == [{"name": "Host", "value": "shop.example.com"}]
    assert "server_name shop.example.com www.shop.example.com;" in tree.files["nginx/nginx.conf"]
    # The app answers after its checks' own timeout at the latest: the probe waits longer.
    assert probe["timeoutSeconds"] > tree.d.spec.monitoring.check_timeout


def test_the_autoscaler_owns_the_replica_count(trees: dict[str, Tree], tmp_path: Path) -> None:
    tree = trees["uwsgi"]
    hpa = tree.object("HorizontalPodAutoscaler")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (tree.d.spec.deploy.replicas, tree.d.spec.deploy.max_replicas)
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "shop"}
    # Set here too, each `kubectl apply` would scale a busy app back down to it.
    assert "replicas" not in tree.object("Deployment")["spec"]

    fixed = render(tmp_path, {"deploy.replicas": "3", "deploy.max_replicas": "3"})
    assert fixed.object("Deployment")["spec"]["replicas"] == 3
    assert "horizontalpodautoscaler.yaml" not in fixed.files


def test_the_ingress_passes_what_nginx_and_the_app_accept(trees: dict[str, Tree]) -> None:
    tree = trees["uwsgi"]
    ingress = tree.object("Ingress")
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["shop.example.com", "www.shop.example.com"]
    annotations = ingress["metadata"]["annotations"]
    body = tree.d.derived.max_body_bytes
    assert annotations["nginx.ingress.kubernetes.io/proxy-body-size"] == str(body)
    assert f"client_max_body_size {body};" in tree.files["nginx/nginx.conf"]
    # The pod's nginx gives up (a 504 of its own) before the Ingress does: an Ingress timing out first would
    # retry the request on another pod (ingress-nginx's proxy-next-upstream is "error timeout", 3 tries).
    read = tree.d.derived.timeouts.proxy_read
    assert f"uwsgi_read_timeout {read}s;" in tree.files["nginx/nginx.conf"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"]) == read + 2
    # An event stream stays open at the pod's nginx while quiet for proxy.event_stream_timeout, and the Ingress,
    # which cannot tell one from the rest, waits as long: it cut them at server.timeout + 4 s.
    streams = tree.d.spec.proxy.event_stream_timeout
    assert f"uwsgi_read_timeout {streams}s;" in tree.files["nginx/nginx.conf"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) == streams + 2 > read + 2
    # localhost and single-label names are nothing an Ingress can route.
    assert "ingress.yaml" not in trees["defaults"].files and "ingress.yaml" not in trees["gunicorn"].files


def test_the_ingress_outwaits_the_pods_nginx_whichever_timeout_is_longer(tmp_path: Path) -> None:
    tree = render(tmp_path, {**PRODUCTION, "server.timeout": "60", "proxy.event_stream_timeout": "20"})
    annotations = tree.object("Ingress")["metadata"]["annotations"]
    assert "uwsgi_read_timeout 62s;" in tree.files["nginx/nginx.conf"]
    assert "uwsgi_read_timeout 20s;" in tree.files["nginx/nginx.conf"]  # the event streams' location
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert annotations[f"nginx.ingress.kubernetes.io/{timeout}"] == "64"


def test_the_apps_own_server_name_gets_an_ingress_as_nginx_answers_it(tmp_path: Path) -> None:
    # nginx answers the name the app's SERVER_NAME gives; the Ingress, written from proxy.server_name alone, did not
    # exist unless that was set too.
    d = make_deployment(tmp_path / "project", spec=make_spec(**{"app.name": "shop"}), server="uwsgi", out="deploy/k8s")
    files = render_k8s(dataclasses.replace(d, app_names=("portal.example.test",)))
    assert "server_name localhost portal.example.test;" in files["nginx/nginx.conf"]
    ingress = yaml.safe_load(files["ingress.yaml"])
    assert [rule["host"] for rule in ingress["spec"]["rules"]] == ["portal.example.test"]
    assert "ingress.yaml" not in render_k8s(d)


def test_the_ingress_and_the_acme_solver_go_to_the_named_ingress_class(
    trees: dict[str, Tree], tmp_path: Path
) -> None:
    assert trees["uwsgi"].object("Ingress")["spec"]["ingressClassName"] == "nginx"
    assert "names no class" not in trees["uwsgi"].files["kustomization.yaml"]
    tree = render(tmp_path / "tls", {**PRODUCTION, "deploy.ingress_class": "nginx"}, extras=("tls",))
    assert tree.object("Ingress")["spec"]["ingressClassName"] == "nginx"
    # cert-manager's solver Ingress answers Let's Encrypt's challenge: on the controller the names point at.
    solvers = tree.object("Issuer")["spec"]["acme"]["solvers"]
    assert solvers == [{"http01": {"ingress": {"ingressClassName": "nginx"}}}]
    # Unset: the cluster's default class, and the operator is told ingress-nginx takes none without one.
    default = render(tmp_path / "default", PRODUCTION, extras=("tls",))
    assert "ingressClassName" not in default.object("Ingress")["spec"]
    assert default.object("Issuer")["spec"]["acme"]["solvers"] == [{"http01": {"ingress": {}}}]
    assert "The Ingress names no class" in default.files["kustomization.yaml"]
    assert "deploy.ingress_class=nginx" in default.files["kustomization.yaml"]


@pytest.mark.parametrize(
    ("names", "hosts", "probe"),
    [
        ("localhost", [], "localhost"),
        (".example.com www.example.org 10.1.2.3", ["example.com", "*.example.com", "www.example.org"], "example.com"),
        ("~^api\\. *.shop.io", ["*.shop.io"], "probe.shop.io"),
    ],
)
def test_server_names_become_ingress_hosts_and_the_probe_host(
    tmp_path: Path, names: str, hosts: list[str], probe: str
) -> None:
    d = make_deployment(tmp_path, spec=make_spec(**{"proxy.server_name": names}))
    assert (ingress_hosts(d), probe_host(d)) == (hosts, probe)


def test_both_images_are_built_from_the_output(trees: dict[str, Tree]) -> None:
    tree = trees["uwsgi"]
    for name in ("Dockerfile", "nginx/Dockerfile", "nginx/nginx.conf", "nginx/mime.types"):
        assert name in tree.files
    assert [c["image"] for c in pod(tree)["containers"]] == [tree.d.image, tree.d.nginx_image]


def test_a_named_image_is_always_pulled_and_a_local_one_if_missing(trees: dict[str, Tree]) -> None:
    assert {c["imagePullPolicy"] for c in pod(trees["uwsgi"])["containers"]} == {"Always"}
    assert {c["imagePullPolicy"] for c in pod(trees["defaults"])["containers"]} == {"IfNotPresent"}


@pytest.mark.parametrize(
    ("settings", "extras", "message"),
    [
        ({"monitoring.health": "false"}, (), "--target k8s probes the app's health and readiness paths"),
        ({"monitoring.metrics": "false"}, ("monitoring",), "--with monitoring needs the app's metrics"),
        ({"proxy.server_name": "~^shop"}, (), "no plain host name for the kubelet's probes"),
        # nginx listened twice on its own port, and below 1024 the pod's nginx, without a capability, could not.
        (
            {"monitoring.metrics_port": "8080"},
            ("monitoring",),
            "^monitoring.metrics_port 8080 is the pod's nginx port too: the scraper's listener needs a port of its "
            "own; set monitoring.metrics_port to another, such as 9117$",
        ),
        (
            {"monitoring.metrics_port": "90"},
            ("monitoring",),
            "^monitoring.metrics_port 90: the pod's nginx runs without privileges and cannot listen below 1024; set "
            "monitoring.metrics_port to one above, such as 9117$",
        ),
    ],
)
def test_what_kubernetes_cannot_run_is_refused(
    tmp_path: Path, settings: dict[str, str], extras: tuple[str, ...], message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        render(tmp_path, settings, extras=extras)


# --- the command ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_flaskprod_build_writes_the_k8s_target(tmp_path: Path) -> None:
    project = tmp_path / "taskboard"
    copy_taskboard(project)
    result = subprocess.run(
        [str(BIN / "flaskprod"), "build", "--target", "k8s", "--with", "monitoring"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == (
        "next: build and push the images, create the secret, then kubectl apply -k deploy/k8s"
    )
    built = list(yaml.safe_load_all(run_tool(["kubectl", "kustomize", str(project / "deploy/k8s")])))
    assert {doc["kind"] for doc in built} == EVERY_KIND | {"HorizontalPodAutoscaler"}
