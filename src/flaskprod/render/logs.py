"""Centralised logs for a container deployment (`--with logging`): Loki keeps them, Grafana Alloy ships them.

The app (Production(app)) and nginx already write one JSON object a line on stdout, and both carry the
request id they share. So nothing in the app changes: Alloy reads each labelled container's output
through the Docker socket, as `docker logs` does, and pushes it to Loki, which Grafana reads.

What Alloy keeps from each line follows Loki's own advice. Labels, which Loki indexes, stay few in
values: the app's name, the service (app, nginx, postgres...), the stream (stdout or stderr) and the
app's log level. The request id is one value per request, so it travels as structured metadata, and one
query finds nginx's access line and the app's records for a request: {app="shop"} | request_id="...".
"""

from __future__ import annotations

import json
from typing import Any

from ..runtime.logs import REQUEST_ID_FIELD
from .deployment import Deployment
from .yamlfile import dump_yaml, generated_header

# Pinned, as the monitoring images are: Loki 3's schema v13 and Alloy 1's syntax are what these files use.
LOKI_IMAGE = "grafana/loki:3.7.8"
ALLOY_IMAGE = "grafana/alloy:v1.21.2"
LOKI_PORT = 3100
# Alloy's own HTTP server (its UI, /-/ready), on loopback inside its container: nothing else needs it.
ALLOY_LISTEN = "127.0.0.1:12345"
ALLOY_READY = f"http://{ALLOY_LISTEN}/-/ready"
LOKI_CONFIG_DIR = "/etc/loki"
LOKI_DATA_DIR = "/loki"
ALLOY_CONFIG_DIR = "/etc/alloy"
# Where Alloy remembers how far it read each container, so a restart ships no line twice.
ALLOY_DATA_DIR = "/var/lib/alloy/data"
DOCKER_SOCKET = "/var/run/docker.sock"
# Grafana and Alloy reach Loki by its service name: the renderers name the service `loki`.
LOKI_URL = f"http://loki:{LOKI_PORT}"
LOKI_LIMITS = {"cpus": "1", "memory": "1G"}
ALLOY_LIMITS = {"cpus": "0.5", "memory": "256M"}
DATASOURCE_UID = "loki"

# The container labels the renderers put on every service of the stack: the app's name, which Alloy looks
# for, and the service's own, which becomes the `service` label. Docker discovery turns a label's dots into
# underscores under __meta_docker_container_label_.
APP_LABEL = "flaskprod.app"
SERVICE_LABEL = "flaskprod.service"
# What Alloy reads from a line. The app writes ECS: the level flat as "log.level" (quoted: JMESPath would
# read a dot as a nested key), the request id nested; nginx's access line writes request_id at the top.
LEVEL_EXPRESSION = '"log.level"'
REQUEST_ID_EXPRESSION = f"{REQUEST_ID_FIELD} || request_id"
# The levels ECS logging writes (Python's, in lower case) from warning up, as a LogQL regex.
WARNING_OR_WORSE = "warning|error|critical"


def selector(app: str, *, service: str | None = None, level: str | None = None) -> str:
    """A LogQL stream selector on the labels Alloy gives each line; level is a regex."""
    matchers = [f"app={_string(app)}"]
    if service is not None:
        matchers.append(f"service={_string(service)}")
    if level is not None:
        matchers.append(f"level=~{_string(level)}")
    return "{" + ", ".join(matchers) + "}"


def service_labels(d: Deployment, service: str) -> dict[str, str]:
    """The container labels that put service's output in Loki under its name."""
    return {APP_LABEL: d.name, SERVICE_LABEL: service}


def logging_files(d: Deployment, *, datasource_path: str, default_datasource: bool) -> dict[str, str]:
    """logging/loki/loki.yaml, logging/alloy/config.alloy and Grafana's Loki datasource at datasource_path.

    Mount logging/loki/ at LOKI_CONFIG_DIR and logging/alloy/ at ALLOY_CONFIG_DIR; the datasource goes
    where Grafana's provisioning files are (beside Prometheus's with --with monitoring, which stays the
    default datasource)."""
    return {
        "logging/loki/loki.yaml": dump_yaml(loki_config(d), generated_header("loki.yaml")),
        "logging/alloy/config.alloy": alloy_config(d),
        datasource_path: dump_yaml(datasource(default=default_datasource), generated_header("Loki datasource")),
    }


def loki_config(d: Deployment) -> dict[str, Any]:
    """Loki as one process keeping its chunks and index on its own volume, deleting lines past retention."""
    return {
        # One tenant: Loki is reachable from this stack's network (and this host) only.
        "auth_enabled": False,
        "server": {"http_listen_port": LOKI_PORT, "log_level": "warn"},
        "common": {
            "instance_addr": "127.0.0.1",
            "path_prefix": LOKI_DATA_DIR,
            "storage": {
                "filesystem": {
                    "chunks_directory": f"{LOKI_DATA_DIR}/chunks",
                    "rules_directory": f"{LOKI_DATA_DIR}/rules",
                }
            },
            "replication_factor": 1,
            "ring": {"kvstore": {"store": "inmemory"}},
        },
        "schema_config": {
            "configs": [
                {
                    # Any date before the first line: the schema every line is written with.
                    "from": "2024-04-01",
                    "store": "tsdb",
                    "object_store": "filesystem",
                    "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }
            ]
        },
        # Retention is a multiple of the index period (a day); the compactor deletes what is older.
        "limits_config": {"retention_period": f"{24 * d.spec.logging.retention_days}h"},
        "compactor": {
            "working_directory": f"{LOKI_DATA_DIR}/compactor",
            "retention_enabled": True,
            "delete_request_store": "filesystem",
        },
        # Nobody is asked whether usage statistics may leave the machine: they do not.
        "analytics": {"reporting_enabled": False},
    }


def _string(text: str) -> str:
    # A JSON string is a valid Alloy string literal: both take Go's escapes in double quotes.
    return json.dumps(text)


def alloy_config(d: Deployment) -> str:
    """Alloy's pipeline: this app's containers (by label) -> their stdout and stderr -> labels -> Loki."""
    meta = "__meta_docker_container_label_"
    service_meta = meta + SERVICE_LABEL.replace(".", "_")
    socket = _string(f"unix://{DOCKER_SOCKET}")
    lines = [
        f"// {d.name}: written by `flaskprod build` from the spec; change flaskprod.toml and build again",
        "// rather than editing this file.",
        "//",
        f"// Every container labelled {APP_LABEL}={d.name} on this Docker host, read through its socket.",
        'discovery.docker "containers" {',
        f"  host = {socket}",
        "  filter {",
        '    name   = "label"',
        f"    values = [{_string(f'{APP_LABEL}={d.name}')}]",
        "  }",
        "}",
        "",
        f"// The service each line came from (app, nginx...), its container's {SERVICE_LABEL} label, and the",
        "// stream. Alloy drops every other __meta_ label before the line leaves.",
        'discovery.relabel "containers" {',
        "  targets = []",
        "",
        "  rule {",
        f"    source_labels = [{_string(service_meta)}]",
        '    target_label  = "service"',
        "  }",
        "",
        "  rule {",
        '    source_labels = ["__meta_docker_container_log_stream"]',
        '    target_label  = "stream"',
        "  }",
        "}",
        "",
        'loki.source.docker "containers" {',
        f"  host          = {socket}",
        "  targets       = discovery.docker.containers.targets",
        "  relabel_rules = discovery.relabel.containers.rules",
        "  forward_to    = [loki.process.lines.receiver]",
        "}",
        "",
        "// The app's JSON lines (ECS) carry log.level and the request id; nginx's access lines the request id.",
        "// A line that is not JSON passes as it is.",
        'loki.process "lines" {',
        "  stage.json {",
        "    expressions = {",
        f"      level      = {_string(LEVEL_EXPRESSION)},",
        f"      request_id = {_string(REQUEST_ID_EXPRESSION)},",
        "    }",
        "  }",
        "",
        "  // A few values each: Loki indexes labels.",
        "  stage.labels {",
        '    values = { level = "" }',
        "  }",
        "",
        "  // One value per request: kept beside the line, not indexed.",
        "  stage.structured_metadata {",
        '    values = { request_id = "" }',
        "  }",
        "",
        "  forward_to = [loki.write.loki.receiver]",
        "}",
        "",
        'loki.write "loki" {',
        "  endpoint {",
        f"    url = {_string(f'{LOKI_URL}/loki/api/v1/push')}",
        "  }",
        f"  external_labels = {{ app = {_string(d.name)} }}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def datasource(*, default: bool) -> dict[str, Any]:
    return {
        "apiVersion": 1,
        "datasources": [
            {
                "name": "Loki",
                "uid": DATASOURCE_UID,
                "type": "loki",
                "access": "proxy",
                "url": LOKI_URL,
                "isDefault": default,
                "editable": False,
                "jsonData": {"maxLines": 1000},
            }
        ],
    }
