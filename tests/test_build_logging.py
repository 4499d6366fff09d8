"""`flaskprod build --with logging`: Loki, Grafana Alloy and Grafana's Loki datasource for Compose and Swarm.

Neither Loki nor Alloy can be installed here (not in Debian, PyPI or npm), so their files are judged by
docker-compose and yamllint, checked against what Loki refuses at start, and Alloy's pipeline is run in
part for real: its JSON expressions, evaluated by a JMESPath implementation, on the lines a real app and
nginx write under `flaskprod up`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from pathlib import Path
from typing import Any

import jmespath
import pytest
import requests
import yaml

from flaskprod.errors import SpecError
from flaskprod.render import logs
from flaskprod.render.compose import render_compose, render_swarm
from tests.buildkit import make_deployment, make_spec, run_tool, tool, write_tree
from tests.support import free_port
from tests.test_build import YAMLLINT, compose_config
from tests.test_integration_logs import APP
from tests.test_serve import clean_env
from tests.upstack import start_up, stop, write_app

STACKS = {"compose": (render_compose, "compose.yaml"), "swarm": (render_swarm, "stack.yaml")}
# What the files ask of whoever runs them; the password file is any file that exists.
ENV = {
    "FLASK_SECRET_KEY": secrets.token_hex(32), "GRAFANA_ADMIN_PASSWORD": "x" * 20, "POSTGRES_PASSWORD_FILE": __file__,
}


def build(tmp_path: Path, target: str, extras: list[str], **settings: Any) -> tuple[Path, dict[str, Any]]:
    """target's files with extras, written out, and docker-compose's reading of its stack file."""
    renderer, file = STACKS[target]
    spec = make_spec(**{"app.name": "shop", "app.version": "1.2.3", **settings})
    d = make_deployment(tmp_path / "p", spec=spec, extras=extras, out=f"deploy/{target}")
    out = write_tree(tmp_path / "p" / d.out, renderer(d))
    return out, compose_config(out / file, {**clean_env(), **ENV})


def mounted_sources(resolved: dict[str, Any]) -> list[Path]:
    """Every host file a service mounts or is given as a config (docker-compose resolves them to absolute)."""
    volumes = [v for service in resolved["services"].values() for v in service.get("volumes", [])]
    mounted = [v.split(":")[0] for v in volumes if isinstance(v, str)]
    mounted += [v["source"] for v in volumes if isinstance(v, dict) and v.get("type") == "bind"]
    mounted += [c["file"] for c in resolved.get("configs", {}).values()]
    return [Path(m) for m in mounted if m.startswith("/")]


@pytest.mark.parametrize("target", STACKS)
@pytest.mark.parametrize("extras", [["logging"], ["logging", "monitoring"]])
def test_docker_compose_and_yamllint_accept_the_stack_and_every_file_it_mounts_is_written(
    tmp_path: Path, target: str, extras: list[str]
) -> None:
    out, resolved = build(tmp_path, target, extras)
    services = resolved["services"]
    monitoring = {"prometheus", "alertmanager"} if "monitoring" in extras else set()
    expected = {"app", "nginx", "loki", "alloy", "grafana"} | monitoring
    assert set(services) == expected
    sources = mounted_sources(resolved)
    # Besides the host's Docker socket, which Alloy reads, each is a file or folder build wrote.
    assert Path(logs.DOCKER_SOCKET) in sources
    written = [path for path in sources if path != Path(logs.DOCKER_SOCKET)]
    assert all(path.exists() and out in path.parents for path in written), written
    # Loki's and Alloy's own files are among them, mounted as a folder (Compose) or a config (Swarm).
    for config in (out / "logging/loki/loki.yaml", out / "logging/alloy/config.alloy"):
        assert config in written or config.parent in written, written
    (socket,) = [v for v in services["alloy"]["volumes"] if "docker.sock" in str(v)]
    assert socket.get("read_only") if isinstance(socket, dict) else socket.endswith(":ro")
    # Only Alloy holds the socket.
    assert [name for name, s in services.items() if "docker.sock" in json.dumps(s.get("volumes", []))] == ["alloy"]
    yamls = [out / STACKS[target][1], *out.rglob("*.yaml"), *out.rglob("*.yml")]
    run_tool([tool("yamllint"), "-s", "-d", YAMLLINT, *map(str, yamls)])


@pytest.mark.parametrize("target", STACKS)
def test_every_container_carries_the_labels_alloy_selects_and_names_it_by(tmp_path: Path, target: str) -> None:
    tls = {"proxy.server_name": "shop.example.com", "tls.email": "ops@shop.example.com"}
    out, resolved = build(tmp_path, target, ["logging", "monitoring", "postgres", "tls"], **tls)
    assert {"postgres", "certbot", "certbot-init", "prometheus"} <= set(resolved["services"])
    wanted = f"{logs.APP_LABEL}=shop"
    alloy = (out / "logging/alloy/config.alloy").read_text()
    assert f"values = [{json.dumps(wanted)}]" in alloy
    assert f'"__meta_docker_container_label_{logs.SERVICE_LABEL.replace(".", "_")}"' in alloy
    for name, service in resolved["services"].items():
        assert service["labels"] == {logs.APP_LABEL: "shop", logs.SERVICE_LABEL: name}, name


def test_without_logging_no_container_is_labelled(tmp_path: Path) -> None:
    _, resolved = build(tmp_path, "compose", [])
    assert all("labels" not in service for service in resolved["services"].values())


@pytest.mark.parametrize("target", STACKS)
def test_grafana_reads_loki_beside_prometheus_which_stays_the_default(tmp_path: Path, target: str) -> None:
    for extras, directory in ((["logging"], "logging"), (["logging", "monitoring"], "monitoring")):
        out, _ = build(tmp_path / directory, target, extras)
        datasources = out / directory / "grafana/provisioning/datasources"
        loki = yaml.safe_load((datasources / "loki.yml").read_text())["datasources"]
        assert [(s["type"], s["url"], s["isDefault"]) for s in loki] == [
            ("loki", logs.LOKI_URL, directory == "logging")
        ]
        assert (datasources / "prometheus.yml").exists() == (directory == "monitoring")


def test_swarm_places_loki_by_its_node_label_and_runs_alloy_on_every_node(tmp_path: Path) -> None:
    out, resolved = build(tmp_path, "swarm", ["logging"])
    loki, alloy = resolved["services"]["loki"], resolved["services"]["alloy"]
    assert loki["deploy"]["placement"]["constraints"] == ["node.labels.shop-logs == true"]
    assert loki["deploy"]["replicas"] == 1 and "ports" not in loki
    assert alloy["deploy"]["mode"] == "global"
    # The header says how to label that node.
    assert "docker node update --label-add shop-logs=true NODE" in (out / "stack.yaml").read_text()


# --- what Loki checks when it starts -----------------------------------------------------------------


@pytest.mark.parametrize("days", [1, 14, 90])
def test_loki_keeps_lines_for_the_retention_the_spec_gives(tmp_path: Path, days: int) -> None:
    out, _ = build(tmp_path, "compose", ["logging"], **{"logging.retention_days": days})
    config = yaml.safe_load((out / "logging/loki/loki.yaml").read_text())
    assert config["limits_config"]["retention_period"] == f"{24 * days}h"
    # What Loki 3 refuses to start without, or silently ignores:
    # retention needs the compactor's retention on and a delete-request store, and a 24h index period.
    assert config["compactor"]["retention_enabled"] is True
    assert config["compactor"]["delete_request_store"] == "filesystem"
    (schema,) = config["schema_config"]["configs"]
    assert schema["index"]["period"] == "24h"
    # Structured metadata (the request id) needs schema v13 on a TSDB index.
    assert (schema["schema"], schema["store"]) == ("v13", "tsdb")
    # Every path is under the data volume the container mounts.
    paths = [config["common"]["path_prefix"], config["compactor"]["working_directory"],
             *config["common"]["storage"]["filesystem"].values()]
    assert all(p.startswith(logs.LOKI_DATA_DIR) for p in paths)
    assert config["server"]["http_listen_port"] == logs.LOKI_PORT


def test_a_retention_under_a_day_is_refused_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"logging\.retention_days") as raised:
        make_spec(**{"logging.retention_days": 0})
    assert "\n" not in str(raised.value)


# --- Alloy's pipeline --------------------------------------------------------------------------------

BLOCK = re.compile(r'^\s*([a-z_]+(?:\.[a-z_]+)+) "([a-z_]+)" \{$', re.M)
REFERENCE = re.compile(r"\b((?:discovery|loki)\.[a-z_]+(?:\.[a-z_]+)?)\.([a-z_]+)\.(targets|rules|receiver|output)\b")
STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def test_alloy_config_references_only_components_it_defines(tmp_path: Path) -> None:
    out, _ = build(tmp_path, "compose", ["logging"])
    text = (out / "logging/alloy/config.alloy").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//"))
    defined = set(BLOCK.findall(code))
    assert defined == {
        ("discovery.docker", "containers"), ("discovery.relabel", "containers"),
        ("loki.source.docker", "containers"), ("loki.process", "lines"), ("loki.write", "loki"),
    }
    used = {(component, label) for component, label, _ in REFERENCE.findall(code)}
    assert used and used <= defined, used - defined
    # Each string is one JSON can read (Alloy's escapes are Go's), and the braces close.
    for literal in STRING.findall(code):
        json.loads(literal)
    bare = STRING.sub('""', code)
    assert bare.count("{") == bare.count("}")
    assert f'url = "{logs.LOKI_URL}/loki/api/v1/push"' in code


@pytest.mark.integration
def test_alloy_reads_the_level_and_the_request_id_from_the_lines_the_app_and_nginx_write(tmp_path: Path) -> None:
    """The expressions Alloy's stage.json evaluates (JMESPath) on a real app's and a real nginx's JSON lines:
    the app's record gives its level, and both give the request id of the request they came from."""
    write_app(tmp_path, APP)
    stack = start_up(tmp_path, "uwsgi", free_port())
    try:
        stack.wait_ready()
        request_id = secrets.token_hex(16)
        assert requests.get(stack.url("/hello"), headers={"X-Request-ID": request_id}, timeout=15).ok
    finally:
        stop(stack)
    # Read once stopped: nginx buffers its access log, and writes it out as it stops.
    app_lines = [json.loads(line) for line in stack.stdout().splitlines() if line.startswith("{")]
    nginx_lines = stack.nginx_access()
    level = jmespath.compile(logs.LEVEL_EXPRESSION)
    request = jmespath.compile(logs.REQUEST_ID_EXPRESSION)
    (record,) = [line for line in app_lines if line.get("message") == "hello from the view"]
    assert level.search(record) == "info"
    assert request.search(record) == request_id
    access = [line for line in nginx_lines if line["uri"] == "/hello"]
    assert len(access) == 1, nginx_lines
    assert request.search(access[0]) == request_id
    # nginx's access line has no level: it gets no level label, rather than a wrong one.
    assert level.search(access[0]) is None


def test_the_containers_write_the_lines_alloy_reads_on_stdout(tmp_path: Path) -> None:
    out, _ = build(tmp_path, "compose", ["logging"])
    assert "access_log /dev/stdout flaskprod_json" in (out / "nginx/nginx.conf").read_text()


# --- beside monitoring ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", STACKS)
def test_the_dashboard_shows_the_apps_warnings_from_the_provisioned_loki(tmp_path: Path, target: str) -> None:
    out, resolved = build(tmp_path, target, ["monitoring", "logging"])
    (dashboard,) = (out / "monitoring/grafana/dashboards").glob("*.json")
    panels = json.loads(dashboard.read_text())["panels"]
    (panel,) = [p for p in panels if p["type"] == "logs"]
    provisioned = yaml.safe_load((out / "monitoring/grafana/provisioning/datasources/loki.yml").read_text())
    assert panel["datasource"]["uid"] == provisioned["datasources"][0]["uid"]
    (query,) = panel["targets"]
    # Each label it selects on is one Alloy sets: the app's name, a service of this stack, the level.
    assert query["expr"] == f'{{app="shop", service="app", level=~"{logs.WARNING_OR_WORSE}"}}'
    assert "app" in resolved["services"]
    alloy = (out / "logging/alloy/config.alloy").read_text()
    assert 'external_labels = { app = "shop" }' in alloy
    assert 'values = { level = "" }' in alloy
    # Without logging, no panel asks a Loki that is not there.
    out, _ = build(tmp_path / "without", target, ["monitoring"])
    (dashboard,) = (out / "monitoring/grafana/dashboards").glob("*.json")
    assert all(p["datasource"]["type"] == "prometheus" for p in json.loads(dashboard.read_text())["panels"])


def test_the_warning_level_regex_takes_the_levels_ecs_logging_writes_from_warning_up() -> None:
    pattern = re.compile(logs.WARNING_OR_WORSE)
    for number in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL):
        name = logging.getLevelName(number).lower()  # as ecs_logging writes log.level
        assert bool(pattern.fullmatch(name)) == (number >= logging.WARNING), name


def header_of(path: Path) -> str:
    """A file's header comment, a line continued with a backslash joined to the next."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    return header.replace("\\\n#", "")


def test_the_compose_run_line_sets_grafanas_password_when_the_stack_has_a_grafana(tmp_path: Path) -> None:
    for extras in ([], ["logging"], ["monitoring"], ["logging", "postgres"]):
        out, resolved = build(tmp_path / "-".join(extras or ["none"]), "compose", extras)
        run = next(line for line in header_of(out / "compose.yaml").splitlines() if "docker compose" in line)
        assert ("GRAFANA_ADMIN_PASSWORD=..." in run) == ("grafana" in resolved["services"]), (extras, run)
        # Grafana reads the variable on its first start alone: a later one changes nothing, and the header says so.
        once = "Grafana takes its admin password on its first start only"
        assert (once in header_of(out / "compose.yaml")) == ("grafana" in resolved["services"]), extras


def test_swarm_gives_grafana_its_admin_password_as_a_secret(tmp_path: Path) -> None:
    for extras in ([], ["logging"], ["monitoring"]):
        out, resolved = build(tmp_path / "-".join(extras or ["none"]), "swarm", extras)
        creates = "docker secret create shop_grafana_admin_password -" in header_of(out / "stack.yaml")
        assert creates == ("grafana" in resolved["services"]), extras
        assert ("on its first start only" in header_of(out / "stack.yaml")) == creates, extras
        if creates:
            grafana = resolved["services"]["grafana"]
            # A file the secret mounts, never the value in the service's spec.
            assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana["environment"]
            path = grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"]
            assert path == "/run/secrets/shop_grafana_admin_password"
            assert [s if isinstance(s, str) else s["source"] for s in grafana["secrets"]] == [Path(path).name]
            assert resolved["secrets"][Path(path).name]["external"] is True


def test_swarm_publishes_grafana_behind_its_login_and_nothing_without_one(tmp_path: Path) -> None:
    """Swarm ignores the address in a published port (it would put 127.0.0.1:9090 on every node's every
    address): only nginx and Grafana, which asks for its admin password, are published, without an address."""
    out, _ = build(tmp_path, "swarm", ["monitoring", "logging"])
    services = yaml.safe_load((out / "stack.yaml").read_text())["services"]
    published = {name: service["ports"] for name, service in services.items() if service.get("ports")}
    assert set(published) == {"nginx", "grafana"}
    assert all(isinstance(port, dict) and "host_ip" not in port for ports in published.values() for port in ports)
