"""Kubernetes manifests with kustomize, built as data: each pod is `flaskprod up` in small, nginx beside the app.

The two containers share a unix socket on an emptyDir, so uWSGI speaks its own protocol and Gunicorn
HTTP without a port between them. Every number another layer also uses comes from the Deployment: the
grace period the app drains in, the CPU and memory its workers were sized for, the body limit and read
timeout nginx enforces. The autoscaler may run deploy.max_replicas pods, so the caller sizes `derived`
for that many: the database connection budget is shared by all of them. With --with postgres, a
single-pod StatefulSet runs the database, its max_connections counted for every pod that can run at
once, and nginx's readiness probe (the app's /readyz, which pings it) holds pods back until it answers.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import shlex
from typing import Any

from ..discovery import APP_VARIABLE
from ..errors import BuildError
from ..sizing import PROXY_MARGIN
from ..spec import SETTINGS, Spec, parse_size
from . import postgres, tls
from .compose import HEALTHCHECK_TIMEOUT, NGINX_LIMITS
from .deployment import APP_UID, NGINX_PORT, Deployment
from .monitoring import (
    GROUP_BY,
    WEBHOOK_SECRET,
    Monitored,
    Scrape,
    alert_files,
    alert_groups,
    dashboard_json,
    route_timing,
)
from .yamlfile import dump_yaml, generated_header

# The app listens here and nginx forwards here: one string for both, on a volume only the pod shares.
SOCKET_DIR = "/run/flaskprod"
APP_SOCKET = f"unix:{SOCKET_DIR}/app.sock"
SECRETS_DIR = "/run/secrets/flaskprod"
POSTGRES_SECRET_DIR = "/run/secrets/postgres"
SECRET_KEY = "FLASK_SECRET_KEY"
# Ports below this need a capability the pod's nginx (NGINX_RUN_UID, every capability dropped) has not.
PRIVILEGED_PORTS = 1024
# The Prometheus Operator's Prometheus pods (kube-prometheus-stack's), in whatever namespace: labels of its
# StatefulSet's selector, which the operator never changes. The only pods the scraper's port admits.
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus", "app.kubernetes.io/managed-by": "prometheus-operator"}
# The label Grafana's dashboard sidecar (grafana and kube-prometheus-stack charts) looks for, by default.
GRAFANA_DASHBOARD_LABEL = "grafana_dashboard"
SERVICE_PORT = 80
# New pods a rollout starts before it stops old ones: the database counts their pools too.
MAX_SURGE = 1
# PostgreSQL's user here: a high UID like nginx's (the image's entrypoint gives initdb a passwd entry
# for any UID through nss_wrapper), and the group that owns the data volume and the password file.
POSTGRES_RUN_UID = 10070
# Seconds pg_ctl waits for the fast shutdown it asks for, inside the pod's grace period.
POSTGRES_STOP_WAIT = postgres.STOP_SECONDS - 5
# A high UID of its own for nginx: no clash with a host account (101 is one on many hosts), and not the
# app's, so nginx reaches the app's files only through the volumes they share.
NGINX_RUN_UID = 10101
# Seconds for the endpoint removal to reach every proxy when the app does not drain by itself
# (server.drain_delay = 0): both containers keep accepting that long. It comes out of the shutdown
# margin (sizing.SHUTDOWN_MARGIN, 5 s), leaving the processes time to exit before SIGKILL.
ENDPOINT_SETTLE = 3
# nginx reads the node's CPU count, not its limit: one worker serves the one app container beside it.
NGINX_WORKER_PROCESSES = 1
NGINX_REQUESTS = {"cpu": "100m", "memory": "64Mi"}
HEALTHCHECK = ["python", "-m", "flaskprod.servers.healthcheck"]
# A timed-out liveness probe restarts a healthy app: Swarm's health check gets as long (compose.HEALTHCHECK_TIMEOUT).
EXEC_PROBE_TIMEOUT = HEALTHCHECK_TIMEOUT
STARTUP_SECONDS = 120
STARTUP_PERIOD = 5
TARGET_CPU_UTILISATION = 70
# Where in-cluster scrapers come from, when the user left monitoring.metrics_allow at its loopback default:
# the private ranges pod networks use (100.64.0.0/10 too, which some CNIs take).
# The release Job's component label: `kubectl apply -l` with it applies the Job (and the database) before the app.
RELEASE_COMPONENT = "release"
# Pods the Job may start for one release: a failed one (the database still starting on the first apply) is run
# again from the start, as Alembic's migrations on PostgreSQL are transactional; Kubernetes' own default.
RELEASE_BACKOFF_LIMIT = 6
# Seconds `kubectl wait` gives the Job past its own deadline (activeDeadlineSeconds): its pod's start.
RELEASE_WAIT_MARGIN = 60
POD_NETWORK_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
# A DNS-1123 subdomain, optionally a wildcard: the host names an Ingress rule accepts.
_INGRESS_HOST = re.compile(r"(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)+")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


def secret_name(d: Deployment) -> str:
    """The Secret the user creates, holding FLASK_SECRET_KEY and optionally the database URL, or with
    --with postgres the database's password."""
    return f"{d.name}-secrets"


def _app_secret_keys(d: Deployment) -> list[str]:
    """The Secret's keys the app reads as files."""
    return [SECRET_KEY, postgres.PASSWORD_KEY] if "postgres" in d.extras else [SECRET_KEY]


def postgres_name(d: Deployment) -> str:
    """The database's StatefulSet and headless Service: the app's host name for it."""
    return f"{d.name}-postgres"


def most_pods(spec: Spec) -> int:
    """App pods running at once at most: the autoscaler's ceiling, and the pods a rollout adds."""
    return max(spec.deploy.replicas, spec.deploy.max_replicas) + MAX_SURGE


def cpu_quantity(cpus: float) -> str:
    millicores = round(cpus * 1000)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


def memory_quantity(size: str) -> str:
    """A flaskprod size (binary units: 512M is 512 MiB) as the Kubernetes quantity of the same bytes."""
    return _bytes_quantity(parse_size(size))


def _bytes_quantity(number: int) -> str:
    for suffix, unit in (("Gi", 1024**3), ("Mi", 1024**2), ("Ki", 1024)):
        if number % unit == 0:
            return f"{number // unit}{suffix}"
    return str(number)


def pull_policy(d: Deployment) -> str:
    """Always for an image the user named: a tag is mutable, so a rebuilt one (app.version left alone)
    reaches every node, and the registry checks each pod may pull it. IfNotPresent for the auto name,
    which names no registry: it only exists where it was loaded (kind load, minikube image load)."""
    return "IfNotPresent" if d.spec.deploy.image == "auto" else "Always"


def stop_accepting_after(d: Deployment) -> int:
    """Seconds after the pod is told to stop at which both containers stop accepting requests."""
    return d.derived.timeouts.drain or ENDPOINT_SETTLE


def probe_host(d: Deployment) -> str:
    """The Host header of the kubelet's probes through nginx."""
    return d.probe_host("the kubelet's probes")


def ingress_hosts(d: Deployment) -> list[str]:
    """The names an Ingress can route, of those nginx answers (proxy.server_name, then the app's own SERVER_NAME):
    DNS names, not localhost, addresses or nginx regexes."""
    hosts: list[str] = []
    for name in (*d.spec.proxy.server_name.split(), *d.app_names):
        # nginx's ".example.com" is example.com and every name under it.
        for host in (name[1:], f"*{name}") if name.startswith(".") else (name,):
            if _INGRESS_HOST.fullmatch(host) and not host.replace(".", "").isdigit() and host not in hosts:
                hosts.append(host)
    return hosts


def _scrape_allow(d: Deployment) -> str | None:
    """monitoring.metrics_allow for the scraper's listener: the pod network's ranges unless the user chose."""
    allow = d.spec.monitoring.metrics_allow
    if d.spec.origins.get("monitoring.metrics_allow", "default") != "default":
        return allow
    return " ".join([*(allow or "").split(), *POD_NETWORK_RANGES])


def ingress_ranges(d: Deployment) -> tuple[str, ...]:
    """Where the Ingress controller reaches the pods from: tls.ingress_ranges, or the pod network's ranges."""
    chosen = d.spec.tls.ingress_ranges
    return POD_NETWORK_RANGES if chosen == "auto" else tuple(chosen.split())


def nginx_files(d: Deployment, *, metrics_port: int | None) -> dict[str, str]:
    """The pod's nginx: one worker process (auto would count the node's CPUs), and the scraper's port; with
    TLS ended at the Ingress, the client's address and scheme as the Ingress controller reports them."""
    allow = _scrape_allow(d) if metrics_port is not None else None
    return d.nginx_files(
        APP_SOCKET,
        metrics_port=metrics_port,
        metrics_allow=allow,
        worker_processes=NGINX_WORKER_PROCESSES,
        trusted_proxies=ingress_ranges(d) if "tls" in d.extras else (),
    )


def _labels(d: Deployment) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": d.name}
    if _LABEL_VALUE.fullmatch(d.spec.app.version):
        labels["app.kubernetes.io/version"] = d.spec.app.version
    labels["app.kubernetes.io/managed-by"] = "flaskprod"
    return labels


def _selector(d: Deployment) -> dict[str, str]:
    # Only what never changes between releases: a selector cannot be edited in place.
    return {"app.kubernetes.io/name": d.name}


def _metadata(d: Deployment, **extra: Any) -> dict[str, Any]:
    # The namespace is in each object as well as in kustomization.yaml, so `kubectl apply -f` on one
    # file lands in the same place as `kubectl apply -k`.
    namespace = {"namespace": d.spec.deploy.namespace} if d.spec.deploy.namespace else {}
    return {"name": d.name, **namespace, "labels": _labels(d), **extra}


def _restricted(uid: int) -> dict[str, Any]:
    return {
        "runAsUser": uid,
        "runAsGroup": uid,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
    }


def _sleep(seconds: int) -> dict[str, Any]:
    # An exec of sleep, which both images have: the sleep action needs Kubernetes 1.30 or later.
    return {"preStop": {"exec": {"command": ["sleep", str(seconds)]}}}


def _exec_probe(*, period: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": list(HEALTHCHECK)},
        "periodSeconds": period,
        "timeoutSeconds": EXEC_PROBE_TIMEOUT,
        "failureThreshold": failures,
    }


def _app_env(d: Deployment) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": key, "value": value} for key, value in sorted(d.app_env(behind_nginx=True, bind=APP_SOCKET).items())
    ]
    env.append({"name": f"{SECRET_KEY}_FILE", "value": f"{SECRETS_DIR}/{SECRET_KEY}"})
    if "postgres" in d.extras:
        # The URL names no password: that is the Secret's file the database was created with.
        database = postgres.app_env(
            d, host=postgres_name(d), password_file=f"{SECRETS_DIR}/{postgres.PASSWORD_KEY}"
        )
        return env + [{"name": key, "value": value} for key, value in database.items()]
    url_env = d.spec.database.url_env
    env.append(
        {
            "name": url_env,
            # Optional: an app without a database runs without it. The runtime reads the URL from the
            # environment only, so this one cannot be a file like the key.
            "valueFrom": {"secretKeyRef": {"name": secret_name(d), "key": url_env, "optional": True}},
        }
    )
    return env


def _app_container(d: Deployment) -> dict[str, Any]:
    # Requests equal limits: the pod is placed where the CPUs and memory the workers were sized for exist,
    # and the limits are what `flaskprod serve` reads from its cgroup when it sizes them again.
    resources = {"cpu": cpu_quantity(d.spec.deploy.cpus), "memory": memory_quantity(d.spec.deploy.memory)}
    container: dict[str, Any] = {
        "name": "app",
        "image": d.image,
        "imagePullPolicy": pull_policy(d),
        "env": _app_env(d),
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _restricted(APP_UID),
        "startupProbe": _exec_probe(period=STARTUP_PERIOD, failures=STARTUP_SECONDS // STARTUP_PERIOD),
        # The health path has no dependencies: failing it means the server is stuck, and a restart helps.
        "livenessProbe": _exec_probe(period=20, failures=3),
        # Here only whether the server answers; whether the app takes requests (its readiness checks)
        # is asked through nginx, on that container.
        "readinessProbe": _exec_probe(period=20, failures=2),
        "volumeMounts": [
            {"name": "socket", "mountPath": SOCKET_DIR},
            {"name": "app-tmp", "mountPath": "/tmp"},
            {"name": "secrets", "mountPath": SECRETS_DIR, "readOnly": True},
        ],
    }
    if not d.derived.timeouts.drain:
        # The app would stop accepting at SIGTERM, before every proxy has dropped the pod: it waits first.
        container["lifecycle"] = _sleep(stop_accepting_after(d))
    return container


def _nginx_resources() -> dict[str, Any]:
    limits = {"cpu": cpu_quantity(float(NGINX_LIMITS["cpus"])), "memory": memory_quantity(NGINX_LIMITS["memory"])}
    return {"requests": dict(NGINX_REQUESTS), "limits": limits}


def _nginx_container(d: Deployment, metrics_port: int | None) -> dict[str, Any]:
    ports: list[dict[str, Any]] = [{"name": "http", "containerPort": NGINX_PORT, "protocol": "TCP"}]
    if metrics_port is not None:
        ports.append({"name": "metrics", "containerPort": metrics_port, "protocol": "TCP"})
    monitoring = d.spec.monitoring
    return {
        "name": "nginx",
        "image": d.nginx_image,
        "imagePullPolicy": pull_policy(d),
        "ports": ports,
        "resources": _nginx_resources(),
        "securityContext": _restricted(NGINX_RUN_UID),
        # Through nginx to the app's readiness checks: the pod takes traffic when the whole chain answers.
        "readinessProbe": {
            "httpGet": {
                "path": monitoring.ready_path,
                "port": "http",
                "httpHeaders": [{"name": "Host", "value": probe_host(d)}],
            },
            "periodSeconds": 5,
            # The app runs its checks in parallel for at most check_timeout, then answers.
            "timeoutSeconds": math.ceil(monitoring.check_timeout) + 1,
            "failureThreshold": 2,
        },
        # nginx itself; the app's liveness is the app container's own probe, so a stuck app never restarts nginx.
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 20, "failureThreshold": 3},
        # Kubernetes takes the pod out of the Service's endpoints while this runs; nginx then gets the
        # image's SIGQUIT and finishes what it holds, for as long as the app does (worker_shutdown_timeout).
        "lifecycle": _sleep(stop_accepting_after(d)),
        "volumeMounts": [
            {"name": "socket", "mountPath": SOCKET_DIR},
            {"name": "nginx-tmp", "mountPath": "/tmp"},
        ],
    }


def _pod_template(d: Deployment, metrics_port: int | None) -> dict[str, Any]:
    annotations = {"kubectl.kubernetes.io/default-container": "app"}
    if metrics_port is not None:
        annotations |= {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(metrics_port),
            "prometheus.io/path": d.spec.monitoring.metrics_path,
        }
    return {
        "metadata": {"labels": _labels(d), "annotations": annotations},
        "spec": {
            "serviceAccountName": d.name,
            "automountServiceAccountToken": False,
            # Otherwise every Service in the namespace becomes <NAME>_PORT... variables: one named `flask`
            # would set FLASK_PORT, which the runtime loads into app.config.
            "enableServiceLinks": False,
            # Both containers outwait the drain and the graceful stop: the same value the servers use.
            "terminationGracePeriodSeconds": d.derived.timeouts.shutdown_grace,
            "securityContext": {
                "runAsNonRoot": True,
                # Both containers' extra group: the socket's directory and the secret files belong to it.
                "fsGroup": APP_UID,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "kubernetes.io/hostname",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": _selector(d)},
                }
            ],
            "containers": [_app_container(d), _nginx_container(d, metrics_port)],
            "volumes": [
                {"name": "socket", "emptyDir": {"sizeLimit": "1Mi"}},
                {"name": "app-tmp", "emptyDir": {}},
                {"name": "nginx-tmp", "emptyDir": {}},
                {
                    "name": "secrets",
                    "secret": {
                        "secretName": secret_name(d),
                        "items": [{"key": key, "path": key} for key in _app_secret_keys(d)],
                        "defaultMode": 0o440,
                    },
                },
            ],
        },
    }


def release_name(d: Deployment) -> str:
    """The release Job's pods' name label: not the app's, or its Service would send them requests (and its
    disruption budget and spread count them)."""
    return f"{d.name}-{RELEASE_COMPONENT}"


def _release_labels(d: Deployment) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": release_name(d),
        "app.kubernetes.io/component": RELEASE_COMPONENT,
        "app.kubernetes.io/part-of": d.name,
        **{k: v for k, v in _labels(d).items() if k != "app.kubernetes.io/name"},
    }


def _release_pod(d: Deployment) -> dict[str, Any]:
    """The app's image running deploy.release_command once, with the app container's environment, secrets and
    limits, and FLASK_APP naming the app; `args`, so the image's entrypoint (tini under uWSGI) still runs it."""
    app = _app_container(d)
    template = _pod_template(d, None)["spec"]
    container = {
        "name": RELEASE_COMPONENT,
        "image": d.image,
        "imagePullPolicy": pull_policy(d),
        "args": list(d.spec.deploy.release_argv),
        "env": [*app["env"], {"name": APP_VARIABLE, "value": d.project.app_target}],
        "resources": app["resources"],
        "securityContext": app["securityContext"],
        "volumeMounts": [m for m in app["volumeMounts"] if m["name"] != "socket"],
    }
    return {
        "metadata": {"labels": _release_labels(d)},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": template["securityContext"],
            "containers": [container],
            "volumes": [v for v in template["volumes"] if v["name"] in ("app-tmp", "secrets")],
        },
    }


def release_job_object(d: Deployment) -> dict[str, Any]:
    """deploy.release_command as a Job: one pod at a time, however many replicas the app has (an initContainer
    would run it in every new pod at once, each migration racing the others), bounded by deploy.release_timeout.
    A Job's pod template cannot change, so its name carries a digest of it: a new image or command is a new Job,
    run once; applying the same files again changes nothing."""
    spec = {
        "backoffLimit": RELEASE_BACKOFF_LIMIT,
        "activeDeadlineSeconds": d.spec.deploy.release_timeout,
        "template": _release_pod(d),
    }
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    metadata = {**_metadata(d), "name": f"{release_name(d)}-{digest}", "labels": _release_labels(d)}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def release_network_policy_object(d: Deployment) -> dict[str, Any]:
    """Nothing reaches the release Job's pods: they serve nothing, and reach out to the database alone."""
    metadata = {**_metadata(d), "name": release_name(d), "labels": _release_labels(d)}
    selector = {"matchLabels": {"app.kubernetes.io/name": release_name(d)}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata,
        "spec": {"podSelector": selector, "policyTypes": ["Ingress"], "ingress": []},
    }


def autoscaled(d: Deployment) -> bool:
    return d.spec.deploy.max_replicas > d.spec.deploy.replicas


def deployment_object(d: Deployment, metrics_port: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if not autoscaled(d):
        # With an autoscaler the count is left out: each `kubectl apply` would reset it to this number.
        spec["replicas"] = d.spec.deploy.replicas
    spec |= {
        "selector": {"matchLabels": _selector(d)},
        # A new pod is ready before an old one stops: capacity never drops during a rollout.
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": MAX_SURGE}},
        "template": _pod_template(d, metrics_port),
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(d), "spec": spec}


def service_object(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(d),
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(d),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def service_account_object(d: Deployment) -> dict[str, Any]:
    # The app calls no Kubernetes API: an account of its own, without a token.
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(d),
        "automountServiceAccountToken": False,
    }


def disruption_budget_object(d: Deployment) -> dict[str, Any]:
    # One pod at a time, whatever the count: a node drain never takes the app down, and never blocks.
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(d),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(d)}},
    }


def autoscaler_object(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(d),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": d.name},
            "minReplicas": d.spec.deploy.replicas,
            # The database connection budget was divided among this many pods.
            "maxReplicas": d.spec.deploy.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": TARGET_CPU_UTILISATION},
                    },
                }
            ],
        },
    }


def network_policy_object(d: Deployment, metrics_port: int | None) -> dict[str, Any]:
    # Clients (an ingress controller, other pods) reach nginx; nothing reaches the app but through it.
    allowed: list[dict[str, Any]] = [{"ports": [{"protocol": "TCP", "port": "http"}]}]
    if metrics_port is not None:
        # The scraper's port, for the Prometheus the PodMonitor is for, from any namespace; no other pod.
        prometheus = {"namespaceSelector": {}, "podSelector": {"matchLabels": dict(PROMETHEUS_POD_LABELS)}}
        allowed.append({"from": [prometheus], "ports": [{"protocol": "TCP", "port": "metrics"}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(d),
        "spec": {"podSelector": {"matchLabels": _selector(d)}, "policyTypes": ["Ingress"], "ingress": allowed},
    }


def _postgres_selector(d: Deployment) -> dict[str, str]:
    # Its own name: the app's selector (and so its Service, budget and policy) never matches the database.
    return {"app.kubernetes.io/name": postgres_name(d)}


def _postgres_labels(d: Deployment) -> dict[str, str]:
    return {
        **_postgres_selector(d),
        "app.kubernetes.io/component": "database",
        "app.kubernetes.io/part-of": d.name,
        "app.kubernetes.io/version": postgres.VERSION,
        "app.kubernetes.io/managed-by": "flaskprod",
    }


def _postgres_metadata(d: Deployment) -> dict[str, Any]:
    return {**_metadata(d), "name": postgres_name(d), "labels": _postgres_labels(d)}


def _postgres_probe(d: Deployment, *, period: int, failures: int) -> dict[str, Any]:
    return {
        "exec": {"command": postgres.ready_command(d)},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failures,
    }


def _postgres_container(d: Deployment) -> dict[str, Any]:
    resources = {
        "cpu": cpu_quantity(d.spec.deploy.postgres_cpus),
        "memory": memory_quantity(d.spec.deploy.postgres_memory),
    }
    password_file = f"{POSTGRES_SECRET_DIR}/{postgres.PASSWORD_KEY}"
    env = postgres.server_env(d, password_file)
    return {
        "name": "postgres",
        "image": postgres.IMAGE,
        # The tag is rebuilt for its base's security fixes (the release stays): every start gets the latest.
        "imagePullPolicy": "Always",
        "args": postgres.server_command(d, most_pods(d.spec)),
        "env": [{"name": key, "value": value} for key, value in env.items()],
        "ports": [{"name": "postgres", "containerPort": postgres.PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": _restricted(POSTGRES_RUN_UID),
        # initdb at the first start, crash recovery after a kill: five minutes before liveness counts.
        "startupProbe": _postgres_probe(d, period=5, failures=60),
        "readinessProbe": _postgres_probe(d, period=10, failures=3),
        # A long checkpoint can keep it from answering for a while: a restart would only add recovery.
        "livenessProbe": _postgres_probe(d, period=20, failures=6),
        # The kubelet sends SIGTERM, PostgreSQL's smart shutdown, which waits for the app's pooled
        # connections to close by themselves; a fast shutdown ends them and checkpoints in time.
        "lifecycle": {
            "preStop": {"exec": {"command": ["pg_ctl", "stop", "-m", "fast", "-w", "-t", str(POSTGRES_STOP_WAIT)]}}
        },
        "volumeMounts": [
            {"name": "data", "mountPath": postgres.DATA_DIR},
            *({"name": name, "mountPath": path} for name, path in postgres.SCRATCH_DIRS.items()),
            {"name": "shm", "mountPath": postgres.SHM_DIR},
            {"name": "password", "mountPath": POSTGRES_SECRET_DIR, "readOnly": True},
        ],
    }


def postgres_statefulset_object(d: Deployment) -> dict[str, Any]:
    """One PostgreSQL pod with a volume of its own that outlives it: a StatefulSet keeps the claim and
    never runs a second pod on it, not even during an update (a Deployment could, for a moment)."""
    pod = {
        "metadata": {"labels": _postgres_labels(d)},
        "spec": {
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": postgres.STOP_SECONDS,
            "securityContext": {
                "runAsNonRoot": True,
                # The data volume and the password file belong to this group.
                "fsGroup": POSTGRES_RUN_UID,
                "fsGroupChangePolicy": "OnRootMismatch",
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [_postgres_container(d)],
            "volumes": [
                *({"name": name, "emptyDir": {}} for name in postgres.SCRATCH_DIRS),
                # The node's memory, counted against the container's limit.
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": _bytes_quantity(postgres.shm_bytes(d))}},
                {
                    "name": "password",
                    "secret": {
                        "secretName": secret_name(d),
                        "items": [{"key": postgres.PASSWORD_KEY, "path": postgres.PASSWORD_KEY}],
                        "defaultMode": 0o440,
                    },
                },
            ],
        },
    }
    claim = {
        # A claim template cannot change once applied: only labels that never change.
        "metadata": {"name": "data", "labels": {**_postgres_selector(d), "app.kubernetes.io/part-of": d.name}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": memory_quantity(d.spec.deploy.postgres_storage)}},
        },
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": _postgres_metadata(d),
        "spec": {
            "serviceName": postgres_name(d),
            # One server: PostgreSQL shares its data directory with no one; a standby is another design.
            "replicas": 1,
            "selector": {"matchLabels": _postgres_selector(d)},
            "template": pod,
            "volumeClaimTemplates": [claim],
        },
    }


def postgres_service_object(d: Deployment) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _postgres_metadata(d),
        "spec": {
            # Headless: the name resolves to the pod's own address while it is ready, to nothing while it
            # is not, and no proxy sits between the app's pools and the server.
            "clusterIP": "None",
            "selector": _postgres_selector(d),
            "ports": [{"name": "postgres", "port": postgres.PORT, "targetPort": "postgres", "protocol": "TCP"}],
        },
    }


def postgres_network_policy_object(d: Deployment) -> dict[str, Any]:
    # The app's pods, from this namespace, on the server's port; nothing else reaches the database.
    app_pods = [{"podSelector": {"matchLabels": _selector(d)}}]
    if d.spec.deploy.release_argv:  # and the release Job's, which migrates it
        app_pods.append({"podSelector": {"matchLabels": {"app.kubernetes.io/name": release_name(d)}}})
    allowed = [{"from": app_pods, "ports": [{"protocol": "TCP", "port": "postgres"}]}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _postgres_metadata(d),
        "spec": {"podSelector": {"matchLabels": _postgres_selector(d)}, "policyTypes": ["Ingress"], "ingress": allowed},
    }


def ingress_timeout(d: Deployment) -> int:
    """Seconds the Ingress waits for the pod's next bytes: past the longest the pod's nginx waits for the app's, so
    the pod's answer (its 504 too, its end of a stream) always arrives first. An Ingress giving up first would take
    it as a failed pod: ingress-nginx retries a timed-out request on the next one (proxy-next-upstream "error
    timeout", 3 tries), so a slow request would run on three pods and its client wait three times as long for the
    Ingress's own 504; and an event stream, which the pod's nginx keeps while quiet for proxy.event_stream_timeout,
    would be cut at the Ingress's.

    One value for every request: an Ingress cannot tell an event stream (its Accept header) from the rest, and a
    canary Ingress routed by header takes the main one's timeouts. The rest still end at the pod's read timeout.
    """
    return max(d.derived.timeouts.proxy_read, d.spec.proxy.event_stream_timeout) + PROXY_MARGIN


def ingress_send_timeout(d: Deployment) -> int:
    """Seconds the Ingress waits to write more of a request to the pod's nginx: past the pod's own send timeout,
    as its read timeout is for all but a stream."""
    return d.derived.timeouts.proxy_read + PROXY_MARGIN


def ingress_object(d: Deployment, hosts: list[str]) -> dict[str, Any]:
    annotations = {
        # ingress-nginx reads these (others ignore them): its defaults, a 1 MiB body and 60 s, would
        # refuse an upload nginx and the app accept, or cut a request or a quiet stream they still allow.
        "nginx.ingress.kubernetes.io/proxy-body-size": str(d.derived.max_body_bytes),
        "nginx.ingress.kubernetes.io/proxy-read-timeout": str(ingress_timeout(d)),
        "nginx.ingress.kubernetes.io/proxy-send-timeout": str(ingress_send_timeout(d)),
    }
    spec: dict[str, Any] = {}
    if "tls" in d.extras:
        # cert-manager's ingress-shim sees the annotation and keeps the Secret's certificate for these hosts.
        annotations["cert-manager.io/issuer"] = tls.issuer_name(d)
        spec["tls"] = [{"hosts": hosts, "secretName": tls.certificate_secret(d)}]
    if d.spec.deploy.ingress_class:
        # Without it, only the cluster's default class takes the Ingress (ingress-nginx's chart makes none).
        spec["ingressClassName"] = d.spec.deploy.ingress_class
    backend = {"service": {"name": d.name, "port": {"name": "http"}}}
    paths = [{"path": "/", "pathType": "Prefix", "backend": backend}]
    spec["rules"] = [{"host": host, "http": {"paths": paths}} for host in hosts]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(d, annotations=annotations),
        "spec": spec,
    }


def issuer_object(d: Deployment) -> dict[str, Any]:
    # An Issuer, not a ClusterIssuer: it lives in the app's namespace like everything here (kustomize would
    # stamp the namespace on a cluster-scoped object it does not know), and applying it needs no cluster role.
    issuer: dict[str, Any] = tls.issuer_object(d, _metadata(d, name=tls.issuer_name(d)))
    if d.spec.deploy.ingress_class:
        # The solver's own Ingress, which answers Let's Encrypt's challenge, goes to the same controller.
        for solver in issuer["spec"]["acme"]["solvers"]:
            solver["http01"]["ingress"]["ingressClassName"] = d.spec.deploy.ingress_class
    return issuer


def scraper_port(d: Deployment) -> int | None:
    """With --with monitoring, the scraper's own nginx listener (monitoring.metrics_port, as under `up` and
    systemd): a named container port, never in the Service, so never public; None without it."""
    return d.spec.monitoring.metrics_port if "monitoring" in d.extras else None


def _check(d: Deployment) -> None:
    monitoring = d.spec.monitoring
    if not monitoring.health:
        raise BuildError(
            "--target k8s probes the app's health and readiness paths, and monitoring.health is false; set it to true"
        )
    if "postgres" in d.extras:
        postgres.check(d)
    if "tls" in d.extras:
        tls.tls_names(d)
    if "monitoring" in d.extras and not monitoring.metrics:
        raise BuildError(
            "--with monitoring needs the app's metrics, and monitoring.metrics is false; set it to true "
            "or build without monitoring"
        )
    port = scraper_port(d)
    if port == NGINX_PORT:
        raise BuildError(
            f"monitoring.metrics_port {port} is the pod's nginx port too: the scraper's listener needs a port of "
            f"its own; set monitoring.metrics_port to another, such as {SETTINGS['monitoring.metrics_port'].default}"
        )
    if port is not None and port < PRIVILEGED_PORTS:
        raise BuildError(
            f"monitoring.metrics_port {port}: the pod's nginx runs without privileges and cannot listen below "
            f"{PRIVILEGED_PORTS}; set monitoring.metrics_port to one above, such as "
            f"{SETTINGS['monitoring.metrics_port'].default}"
        )


def manifests(d: Deployment) -> dict[str, dict[str, Any]]:
    """The objects by file name, in the order kustomization.yaml lists them."""
    objects = {
        "serviceaccount.yaml": service_account_object(d),
        "deployment.yaml": deployment_object(d, scraper_port(d)),
        "service.yaml": service_object(d),
        "poddisruptionbudget.yaml": disruption_budget_object(d),
        "networkpolicy.yaml": network_policy_object(d, scraper_port(d)),
    }
    if d.spec.deploy.release_argv:
        objects["release-job.yaml"] = release_job_object(d)
        objects["release-networkpolicy.yaml"] = release_network_policy_object(d)
    if autoscaled(d):
        objects["horizontalpodautoscaler.yaml"] = autoscaler_object(d)
    hosts = _routed_hosts(d)
    if hosts:
        objects["ingress.yaml"] = ingress_object(d, hosts)
    if "tls" in d.extras:
        objects["issuer.yaml"] = issuer_object(d)
    if "postgres" in d.extras:
        # No disruption budget: for one pod, any budget either blocks every node drain or allows the outage.
        objects["postgres-statefulset.yaml"] = postgres_statefulset_object(d)
        objects["postgres-service.yaml"] = postgres_service_object(d)
        objects["postgres-networkpolicy.yaml"] = postgres_network_policy_object(d)
    return objects


def _routed_hosts(d: Deployment) -> list[str]:
    """The Ingress's hosts; none, no Ingress."""
    # With TLS every name is one Let's Encrypt can validate, and all of them are on the certificate.
    return tls.tls_names(d) if "tls" in d.extras else ingress_hosts(d)


def _scrape(d: Deployment) -> Scrape:
    # The PodMonitor names the job after the pods' name label (d.name), on nginx's scraper port.
    return Scrape(job=d.name, targets=(f"{d.name}:{d.spec.monitoring.metrics_port}",))


def pod_monitor_object(d: Deployment) -> dict[str, Any]:
    """The Prometheus Operator's scrape of every app pod, on nginx's metrics port (named `metrics`)."""
    scrape = _scrape(d)
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PodMonitor",
        "metadata": _metadata(d),
        "spec": {
            # The job label is the value of this pod label, the app's name: the one the alert rules select.
            "jobLabel": "app.kubernetes.io/name",
            "selector": {"matchLabels": _selector(d)},
            "podMetricsEndpoints": [
                {"port": "metrics", "path": d.spec.monitoring.metrics_path, "interval": f"{scrape.interval}s"}
            ],
        },
    }


def prometheus_rule_object(d: Deployment, monitored: Monitored) -> dict[str, Any]:
    """The alert rules `build` writes for every target, as the Prometheus Operator loads them."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": _metadata(d),
        "spec": {"groups": alert_groups(monitored, _scrape(d))},
    }


def webhook_secret(d: Deployment) -> str:
    """The Secret holding the URL the cluster's Alertmanager posts this app's alerts to, under WEBHOOK_SECRET."""
    return f"{d.name}-alert-webhook"


def alertmanager_config_object(d: Deployment) -> dict[str, Any]:
    """The Prometheus Operator's route for this namespace's alerts to the webhook whose URL is in a Secret, grouped
    as the other targets' alertmanager.yml groups them (the operator adds the namespace matcher itself)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1alpha1",
        "kind": "AlertmanagerConfig",
        "metadata": _metadata(d),
        "spec": {
            "route": {
                "receiver": "webhook",
                "groupBy": list(GROUP_BY),
                # group_wait -> groupWait: the operator's spelling of alertmanager.yml's keys.
                **{re.sub(r"_(\w)", lambda m: m[1].upper(), key): value for key, value in route_timing().items()},
            },
            "receivers": [
                {
                    "name": "webhook",
                    "webhookConfigs": [
                        {"urlSecret": {"name": webhook_secret(d), "key": WEBHOOK_SECRET}, "sendResolved": True}
                    ],
                }
            ],
        },
    }


def dashboard_generator(d: Deployment, file: str) -> dict[str, Any]:
    """The dashboard every target gets (file, beside the kustomization), as the ConfigMap Grafana's dashboard
    sidecar loads: kube-prometheus-stack runs one, looking for this label."""
    return {
        "name": f"{d.name}-dashboard",
        "files": [file],
        "options": {"disableNameSuffixHash": True, "labels": {**_labels(d), GRAFANA_DASHBOARD_LABEL: "1"}},
    }


def _monitoring_files(d: Deployment) -> dict[str, str]:
    """monitoring/: a kustomization of its own, applied where the Prometheus Operator runs (its kinds exist
    nowhere else), and the rules as promtool reads them, with their unit tests."""
    # The nginx container's readiness probe asks the app's readiness path through nginx, every few seconds.
    monitored, scrape = Monitored.of(d, readiness_probed=True), _scrape(d)
    objects = {"podmonitor.yaml": pod_monitor_object(d), "prometheusrule.yaml": prometheus_rule_object(d, monitored)}
    hook = d.spec.monitoring.alert_webhook_url_file
    if hook is not None:
        objects["alertmanagerconfig.yaml"] = alertmanager_config_object(d)
    dashboard = f"{d.name}.json"
    kustomized = kustomization(d, list(objects)) | {"configMapGenerator": [dashboard_generator(d, dashboard)]}
    steps = "\n".join(
        [
            f"With the Prometheus Operator in the cluster: kubectl apply -k {d.out}/monitoring",
            "Its Prometheus must select these objects: kube-prometheus-stack selects only its own release's",
            "unless prometheus.prometheusSpec.podMonitorSelectorNilUsesHelmValues and",
            "ruleSelectorNilUsesHelmValues are false. Grafana's dashboard sidecar loads the ConfigMap",
            f"labelled {GRAFANA_DASHBOARD_LABEL}=1 when it searches this namespace",
            "(grafana.sidecar.dashboards.searchNamespace), and the panels read the datasource uid prometheus,",
            "kube-prometheus-stack's. The pods are annotated prometheus.io/* for scrapers that read annotations.",
            *_alert_steps(d, hook),
        ]
    )
    header = generated_header(d.name)
    files = {f"monitoring/{name}": dump_yaml(data, header) for name, data in objects.items()}
    files["monitoring/kustomization.yaml"] = dump_yaml(kustomized, generated_header(d.name, steps))
    files[f"monitoring/{dashboard}"] = dashboard_json(monitored, scrape)
    files.update({f"monitoring/{name}": text for name, text in alert_files(monitored, scrape).items()})
    return files


def _alert_steps(d: Deployment, hook: str | None) -> list[str]:
    if hook is None:
        return [
            "Firing alerts go where the cluster's Alertmanager routes them; set monitoring.alert_webhook_url_file",
            "for a webhook of this app's own (an AlertmanagerConfig).",
        ]
    flag = f" -n {d.spec.deploy.namespace}" if d.spec.deploy.namespace else ""
    return [
        "Alerts: the AlertmanagerConfig posts this namespace's to the URL in the Secret, made from the file once:",
        f"  kubectl create secret generic {webhook_secret(d)}{flag} --from-file={WEBHOOK_SECRET}={shlex.quote(hook)}",
        "The cluster's Alertmanager must select it (kube-prometheus-stack:",
        "alertmanager.alertmanagerSpec.alertmanagerConfigSelector and alertmanagerConfigNamespaceSelector).",
    ]


def kustomization(d: Deployment, files: list[str]) -> dict[str, Any]:
    data: dict[str, Any] = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization"}
    if d.spec.deploy.namespace:
        data["namespace"] = d.spec.deploy.namespace
    data["resources"] = files
    return data


def _next_steps(d: Deployment) -> str:
    namespace = d.spec.deploy.namespace
    flag = f" -n {namespace}" if namespace else ""
    steps = [f"Build and push {d.image} and {d.nginx_image} (see the Dockerfiles), then:"]
    if namespace:
        steps.append(f"  kubectl create namespace {namespace}")
    random = "\"$(python -c 'import secrets; print(secrets.token_hex(32))')\""
    steps.append(f"  kubectl create secret generic {secret_name(d)}{flag} \\")
    if "postgres" in d.extras:
        steps += [
            f"    --from-literal={SECRET_KEY}={random} \\",
            f"    --from-literal={postgres.PASSWORD_KEY}={random}",
        ]
    else:
        steps += [
            f"    --from-literal={SECRET_KEY}={random}",
            f"  (with --from-literal={d.spec.database.url_env}=... too when the app uses a database)",
            f"The pods' root file system is read-only, Flask's instance folder ({d.instance_dir}) too: keep data such",
            "as a SQLite file in a database (--with postgres, or the URL above).",
        ]
    if d.spec.deploy.release_argv:
        job = release_job_object(d)["metadata"]["name"]
        timeout = d.spec.deploy.release_timeout + RELEASE_WAIT_MARGIN
        steps += [
            f"  kubectl apply -k {d.out} -l 'app.kubernetes.io/component in ({RELEASE_COMPONENT},database)'",
            f"  kubectl wait{flag} --for=condition=complete --timeout={timeout}s job/{job}",
            f"  kubectl apply -k {d.out}",
            f"The Job {job} runs the release command ({shlex.join(d.spec.deploy.release_argv)}) once for this",
            "image, before the new pods: the first two steps apply it (and the database) alone and wait for it.",
            f"If it failed, the app keeps its pods: kubectl logs{flag} job/{job}",
        ]
    else:
        steps.append(f"  kubectl apply -k {d.out}")
    if _routed_hosts(d) and not d.spec.deploy.ingress_class:
        steps += [
            "The Ingress names no class: the cluster's default IngressClass takes it. ingress-nginx, whose",
            "annotations it carries, takes it only if its own class is the default; if not, set",
            "deploy.ingress_class=nginx (or your controller's class) and build again.",
        ]
    if "monitoring" in d.extras:
        steps.append(f"  kubectl apply -k {d.out}/monitoring   # where the Prometheus Operator runs")
    if "postgres" in d.extras:
        steps.append(postgres.budget_note(d, most_pods(d.spec)))
    if "tls" in d.extras:
        steps += [
            "HTTPS ends at the Ingress. cert-manager, installed in the cluster, gets the certificate for",
            f"{' '.join(tls.tls_names(d))}",
            f"from {d.spec.tls.acme_server}",
            f"through the Issuer {tls.issuer_name(d)}, and keeps it in the Secret {tls.certificate_secret(d)};",
            "the names' DNS must point at the Ingress controller. The pods' nginx sends HSTS over HTTPS, and",
            "believes X-Forwarded-For and X-Forwarded-Proto from these addresses only (tls.ingress_ranges):",
            f"{' '.join(ingress_ranges(d))}",
        ]
    return "\n".join(steps)


def _scrapers(d: Deployment) -> str:
    """networkpolicy.yaml's note: who may scrape, and how to admit another Prometheus."""
    labels = ", ".join(f"{key}: {value}" for key, value in PROMETHEUS_POD_LABELS.items())
    return (
        f"The metrics port ({d.spec.monitoring.metrics_port}) admits the Prometheus Operator's Prometheus pods alone,\n"
        f"in any namespace: {labels}.\n"
        "To admit another Prometheus (one that reads the pods' prometheus.io/* annotations), add a `from`\n"
        "entry with its pod labels and its namespace's (kubernetes.io/metadata.name: <namespace>) to that\n"
        "rule in a kustomize patch of this NetworkPolicy: building again rewrites this file."
    )


def render_k8s(d: Deployment) -> dict[str, str]:
    """The manifests, kustomization.yaml, and both images' files (nginx's conf forwarding to the pod's socket)."""
    from .image import image_files

    _check(d)
    objects = manifests(d)
    files = image_files(d, APP_SOCKET, bind=APP_SOCKET)
    files.update({f"nginx/{name}": text for name, text in nginx_files(d, metrics_port=scraper_port(d)).items()})
    header = generated_header(d.name)
    for name, data in objects.items():
        files[name] = dump_yaml(data, header)
    if scraper_port(d) is not None:
        files["networkpolicy.yaml"] = dump_yaml(objects["networkpolicy.yaml"], generated_header(d.name, _scrapers(d)))
    files["kustomization.yaml"] = dump_yaml(kustomization(d, list(objects)), generated_header(d.name, _next_steps(d)))
    if "monitoring" in d.extras:
        files.update(_monitoring_files(d))
    return files
