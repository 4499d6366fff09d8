"""Docker Compose and Swarm files, built as data: nginx in front of the app image, from one Deployment.

Every number another layer also uses comes from the Deployment: the grace period the app server
drains in, the CPU and memory its workers were sized for, the port nginx forwards to, and with
--with postgres the database's max_connections, counted from the workers and pool the app is told.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..discovery import APP_VARIABLE
from ..plural import counted
from ..spec import Spec, parse_size
from . import logs, postgres, tls
from .deployment import NGINX_PORT, NGINX_UID, Deployment
from .image import image_files, ssh_hosts
from .monitoring import (
    ALERTMANAGER_CONFIG_DIR,
    ALERTMANAGER_PORT,
    GRAFANA_DASHBOARDS_DIR,
    GRAFANA_PROVISIONING_DIR,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_PORT,
    WEBHOOK_SECRET,
    Scrape,
    monitoring_files,
    prometheus_retention,
)
from .yamlfile import Script, dump_yaml, generated_header

HEALTHCHECK = ["CMD", "python", "-m", "flaskprod.servers.healthcheck"]
# Seconds an orchestrator that restarts an unhealthy app (Swarm, Kubernetes) gives the health check: a Python
# start in a container throttled at its CPU limit under load takes seconds, and /healthz then waits its turn
# behind the requests in the queue. Timing out sooner, three checks in a row replace a busy, healthy replica
# and load the others more.
HEALTHCHECK_TIMEOUT = 10
SECRET_KEY_HELP = 'set FLASK_SECRET_KEY, e.g. python -c "import secrets; print(secrets.token_hex(32))"'
# Pinned: a dashboard's schema and a rule's syntax are tested against these versions' formats.
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
GRAFANA_IMAGE = "grafana/grafana:12.0.2"
# 0.26 or later: it reads the webhook's URL from a file (url_file), the mounted secret.
ALERTMANAGER_IMAGE = "prom/alertmanager:v0.28.1"
ALERTMANAGER_DATA_DIR = "/alertmanager"  # the image's own: silences and the notification log
ALERTMANAGER_LIMITS = {"cpus": "0.25", "memory": "128M"}
GRAFANA_PORT = 3000
GRAFANA_PASSWORD_HELP = "set GRAFANA_ADMIN_PASSWORD for Grafana's admin user"
# The volume over the app image's Flask instance folder (the image makes it its user's, which Docker copies into a
# new volume).
INSTANCE_VOLUME = "instance"
# Grafana writes the admin password into its database on its first start and never reads the variable again.
GRAFANA_PASSWORD_ONCE = (
    "Grafana takes its admin password on its first start only (its volume keeps it): change it there."
)
# Prometheus's memory grows with the series it holds, Grafana's with its users' queries: bounded, neither can take
# the app's memory on a shared host (as Loki and Alloy cannot, logs.LOKI_LIMITS). Go's collector is told of the
# limit (GOMEMLIMIT, a tenth below it), so Prometheus collects harder as it nears it rather than being killed.
PROMETHEUS_LIMITS = {"cpus": "1", "memory": "1G"}
PROMETHEUS_GOMEMLIMIT = "900MiB"
PROMETHEUS_DATA_DIR = "/prometheus"  # the image's own, owned by its user
GRAFANA_LIMITS = {"cpus": "0.5", "memory": "512M"}
MONITORING = "monitoring"
LOGGING = "logging"
# nginx holds few connections per request and little memory; two replicas ride out one restart.
NGINX_REPLICAS = 2
NGINX_LIMITS = {"cpus": "0.5", "memory": "128M"}
# The extra and its service's name, which is the host name the app connects to.
POSTGRES = "postgres"
POSTGRES_SECRET = "postgres_password"
POSTGRES_PASSWORD_HELP = "set POSTGRES_PASSWORD_FILE to a file holding the database password; see this file's header"
# New app tasks a Swarm update starts before it stops old ones (start-first): the database counts them too.
APP_UPDATE_PARALLELISM = 1
# A Swarm config's name: the content's digest (this many hex digits) after the app's and the file's names,
# within the 64 characters Swarm allows.
CONFIG_DIGEST = 12
CONFIG_NAME_MAX = 64
# The one-off service that runs deploy.release_command before the app starts, and the seconds coreutils' timeout
# gives it after its SIGTERM (deploy.release_timeout) before SIGKILL.
RELEASE = "release"
RELEASE_KILL_AFTER = 10
# Times Swarm starts the release job again after it failed (the database may still be starting).
RELEASE_ATTEMPTS = 5
# The extra and the services that get and renew its certificate.
TLS = "tls"
CERTBOT_INIT = "certbot-init"
CERTBOT = "certbot"


def _seconds(value: int) -> str:
    return f"{value}s"


def _limits(d: Deployment) -> dict[str, str]:
    # The limits the image's `flaskprod serve` reads from its cgroup: the ones derived was sized for.
    return {"cpus": f"{d.spec.deploy.cpus:g}", "memory": d.spec.deploy.memory}


def _hardened() -> dict[str, Any]:
    return {"read_only": True, "tmpfs": ["/tmp"], "cap_drop": ["ALL"], "security_opt": ["no-new-privileges:true"]}


def _app_healthcheck() -> dict[str, Any]:
    return {"test": HEALTHCHECK, "interval": "10s", "timeout": "5s", "retries": 3, "start_period": "30s"}


def _context(d: Deployment) -> str:
    """The project root seen from the output directory: the images build from there."""
    return os.path.relpath(".", d.out).replace(os.sep, "/")


def _app_build(d: Deployment) -> dict[str, Any]:
    """The app image's build: with the builder's SSH agent (`ssh: [default]`, as `docker build --ssh default`)
    when pip checks a git+ssh:// requirement out, which the Dockerfile's pip RUN mounts."""
    build: dict[str, Any] = {"context": _context(d), "dockerfile": f"{d.out}/Dockerfile"}
    if ssh_hosts(d):
        build["ssh"] = ["default"]
    return build


def secret_path(name: str) -> str:
    """Where Compose and Swarm mount a secret inside a container: the same file for every service given it."""
    return f"/run/secrets/{name}"


def upstream(d: Deployment) -> str:
    """Where nginx forwards: the app service by name, on the port its server listens on."""
    return f"app:{d.app_port}"


# Docker's embedded DNS, in every container on a user-defined network (Compose's): it answers for the app service's
# name with its containers' current addresses, which change as Compose recreates or scales them.
DOCKER_DNS = "127.0.0.11"


def compose_data(d: Deployment) -> dict[str, Any]:
    grace = _seconds(d.derived.timeouts.shutdown_grace)
    app: dict[str, Any] = {
        "build": _app_build(d),
        "image": d.image,
        "restart": "unless-stopped",
        "environment": {"FLASK_SECRET_KEY": f"${{FLASK_SECRET_KEY:?{SECRET_KEY_HELP}}}"},
        **_hardened(),
        "stop_grace_period": grace,
        "healthcheck": _app_healthcheck(),
        # The root file system is read-only: Flask's instance folder (a SQLite file, uploads) is a volume that
        # outlives the containers, shared by the replicas on this host.
        "volumes": [f"{INSTANCE_VOLUME}:{d.instance_dir}"],
        "deploy": {"replicas": d.spec.deploy.replicas, "resources": {"limits": _limits(d)}},
        "networks": ["backend"],
    }
    nginx: dict[str, Any] = {
        "build": {"context": _context(d), "dockerfile": f"{d.out}/nginx/Dockerfile"},
        "image": d.nginx_image,
        "restart": "unless-stopped",
        "ports": [f"{d.spec.deploy.http_port}:{NGINX_PORT}"],
        # nginx starts when the app answers, not on 502s while it loads; it asks Docker's DNS for the app's name as
        # requests come, so it follows the app containers Compose recreates or scales after it started.
        "depends_on": {"app": {"condition": "service_healthy"}},
        **_hardened(),
        "stop_grace_period": grace,
        "deploy": {"resources": {"limits": NGINX_LIMITS}},
        "networks": ["backend"],
    }
    data: dict[str, Any] = {"services": {"app": app, "nginx": nginx}, "networks": {"backend": {}}}
    volumes: dict[str, Any] = {INSTANCE_VOLUME: {}}
    if POSTGRES in d.extras:
        postgres.check(d)
        password_file = secret_path(POSTGRES_SECRET)
        app["environment"].update(postgres.app_env(d, host=POSTGRES, password_file=password_file))
        app["secrets"] = [POSTGRES_SECRET]
        # `docker compose up` stops an app container before it starts its replacement: no extra pools.
        hardening = {**_hardened(), "tmpfs": list(postgres.SCRATCH_DIRS.values())}
        db = _postgres_service(d, containers=d.spec.deploy.replicas, secret=POSTGRES_SECRET, hardening=hardening)
        db |= {"restart": "unless-stopped", "deploy": {"resources": {"limits": _postgres_limits(d)}}}
        app["depends_on"] = {POSTGRES: {"condition": "service_healthy"}}
        data["services"][POSTGRES] = db
        # Without Swarm a secret is the user's file bind-mounted: its path is theirs to give, never a default.
        data["secrets"] = {POSTGRES_SECRET: {"file": f"${{POSTGRES_PASSWORD_FILE:?{POSTGRES_PASSWORD_HELP}}}"}}
        volumes["postgres-data"] = {}
    if MONITORING in d.extras:
        prometheus, grafana = _prometheus_service(d), _grafana_service()
        prometheus["volumes"] = [
            f"./{MONITORING}/prometheus:{PROMETHEUS_CONFIG_DIR}:ro",
            f"prometheus-data:{PROMETHEUS_DATA_DIR}",
        ]
        grafana["volumes"] = [
            f"./{MONITORING}/grafana/provisioning:{GRAFANA_PROVISIONING_DIR}:ro",
            f"./{MONITORING}/grafana/dashboards:{GRAFANA_DASHBOARDS_DIR}:ro",
            "grafana-data:/var/lib/grafana",
        ]
        grafana["depends_on"] = ["prometheus"]
        alertmanager = _alertmanager_service()
        alertmanager["volumes"] = [
            f"./{MONITORING}/alertmanager:{ALERTMANAGER_CONFIG_DIR}:ro",
            f"alertmanager-data:{ALERTMANAGER_DATA_DIR}",
        ]
        if d.spec.monitoring.alert_webhook_url_file is not None:
            # Without Swarm a secret is the file bind-mounted: the one the spec names, seen from this directory.
            hook = _from_out(d, d.spec.monitoring.alert_webhook_url_file)
            alertmanager["secrets"] = [WEBHOOK_SECRET]
            data.setdefault("secrets", {})[WEBHOOK_SECRET] = {"file": hook}
        data["services"].update(prometheus=prometheus, alertmanager=alertmanager, grafana=grafana)
        volumes |= {"prometheus-data": {}, "alertmanager-data": {}, "grafana-data": {}}
    if LOGGING in d.extras:
        loki, alloy = _loki_service(), _alloy_service()
        loki |= {"restart": "unless-stopped", **_hardened()}
        loki["volumes"] = [f"./{LOGGING}/loki:{logs.LOKI_CONFIG_DIR}:ro", f"loki-data:{logs.LOKI_DATA_DIR}"]
        alloy["restart"] = "unless-stopped"
        alloy["volumes"] = [
            f"./{LOGGING}/alloy:{logs.ALLOY_CONFIG_DIR}:ro",
            f"{logs.DOCKER_SOCKET}:{logs.DOCKER_SOCKET}:ro",
            f"alloy-data:{logs.ALLOY_DATA_DIR}",
        ]
        alloy["depends_on"] = ["loki"]
        grafana = data["services"].get("grafana")
        if grafana is None:
            grafana = _grafana_service()
            grafana["volumes"] = [
                f"./{LOGGING}/grafana/provisioning:{GRAFANA_PROVISIONING_DIR}:ro",
                "grafana-data:/var/lib/grafana",
            ]
            grafana["depends_on"] = []
            volumes["grafana-data"] = {}
        grafana["depends_on"].append("loki")
        data["services"].update(loki=loki, alloy=alloy, grafana=grafana)
        volumes |= {"loki-data": {}, "alloy-data": {}}
    if TLS in d.extras:
        _tls_nginx(d, nginx, published=f"{d.spec.deploy.https_port}:{tls.NGINX_TLS_PORT}")
        init, certbot = _certbot_services(d)
        # Root for chown alone (and to read what certbot keeps for its owner): no network, two capabilities.
        init |= {
            "restart": "no",
            "read_only": True,
            "tmpfs": ["/tmp"],
            "cap_drop": ["ALL"],
            "cap_add": ["CHOWN", "DAC_OVERRIDE"],
            "security_opt": ["no-new-privileges:true"],
            "network_mode": "none",
        }
        certbot |= {"restart": "unless-stopped", **_hardened(), "tmpfs": ["/tmp", *tls.CERTBOT_SCRATCH_DIRS]}
        # nginx starts on the stand-in the init step makes; certbot once nginx can answer the challenge.
        nginx["depends_on"][CERTBOT_INIT] = {"condition": "service_completed_successfully"}
        certbot["depends_on"] = {
            CERTBOT_INIT: {"condition": "service_completed_successfully"},
            "nginx": {"condition": "service_healthy"},
        }
        data["services"].update({CERTBOT_INIT: init, CERTBOT: certbot})
        volumes |= {tls.CERTS_VOLUME: {}, tls.WEBROOT_VOLUME: {}}
    if d.spec.deploy.release_argv:
        data["services"][RELEASE] = _release_service(d, app)
        # Started once the release command exited 0; not at all after it failed (`docker compose up` says so).
        app.setdefault("depends_on", {})[RELEASE] = {"condition": "service_completed_successfully"}
    if LOGGING in d.extras:
        _label_for_logs(d, data["services"])
    if volumes:
        data["volumes"] = volumes
    return data


def release_words(d: Deployment) -> list[str]:
    """deploy.release_command as a container runs it, bounded by deploy.release_timeout with coreutils' timeout
    (Compose and Swarm bound a one-off container by nothing); $ kept from Compose's own expansion."""
    words = ["timeout", f"--kill-after={RELEASE_KILL_AFTER}s", f"{d.spec.deploy.release_timeout}s"]
    return [tls.compose_escape(word) for word in (*words, *d.spec.deploy.release_argv)]


def _release_service(d: Deployment, app: dict[str, Any]) -> dict[str, Any]:
    """deploy.release_command in a one-off container of the app's image with what the app is given (its
    environment, secrets, instance volume, network, the database it waits for) and FLASK_APP naming the app."""
    # "build" too, not the image name alone: Compose v2 pulls an image-only service while the other builds it
    # (docker/compose#9983), so each builds it, the second from the build cache.
    shared = ("build", "image", "environment", "secrets", "volumes", "networks", "depends_on", *_hardened())
    service = {key: copy.deepcopy(app[key]) for key in shared if key in app}
    service["environment"][APP_VARIABLE] = d.project.app_target
    service |= {"command": release_words(d), "restart": "no", "deploy": {"resources": {"limits": _limits(d)}}}
    return service


def _label_for_logs(d: Deployment, services: dict[str, Any]) -> None:
    """Every container of the stack labelled, so Alloy ships its output under its service's name."""
    for name, service in services.items():
        service["labels"] = logs.service_labels(d, name)


def _tls_nginx(d: Deployment, nginx: dict[str, Any], *, published: str | dict[str, Any]) -> None:
    """nginx with HTTPS: its second port, the certificates and challenge files (read-only), and the loop
    beside it that reloads nginx when certbot, in a container of its own, got a new certificate."""
    tls.check_ports(d)
    nginx["ports"].append(published)
    nginx["command"] = ["/bin/sh", "-c", Script(tls.compose_escape(tls.nginx_script()))]
    nginx["volumes"] = [f"{tls.CERTS_VOLUME}:{tls.LETSENCRYPT_DIR}:ro", f"{tls.WEBROOT_VOLUME}:{tls.WEBROOT}:ro"]


def _certbot_services(d: Deployment) -> tuple[dict[str, Any], dict[str, Any]]:
    """The init step (a stand-in certificate, the volumes given to nginx's user) and certbot's loop, which runs as
    that user: certbot keeps keys readable by their owner alone, and nginx must read them."""
    volumes = [f"{tls.CERTS_VOLUME}:{tls.LETSENCRYPT_DIR}", f"{tls.WEBROOT_VOLUME}:{tls.WEBROOT}"]
    init: dict[str, Any] = {
        "image": tls.CERTBOT_IMAGE,
        "user": "0:0",
        "entrypoint": ["/bin/sh", "-c"],
        "command": [Script(tls.compose_escape(tls.init_script(d)))],
        "volumes": list(volumes),
    }
    certbot: dict[str, Any] = {
        "image": tls.CERTBOT_IMAGE,
        "user": f"{NGINX_UID}:{NGINX_UID}",
        "entrypoint": ["/bin/sh", "-c"],
        "command": [Script(tls.compose_escape(tls.certbot_script(d)))],
        "volumes": list(volumes),
    }
    return init, certbot


def _tls_steps(d: Deployment, *, node_label: str | None = None) -> list[str]:
    names = tls.tls_names(d)
    where = f"the node labelled {node_label}" if node_label else "this host"
    port = d.spec.deploy.http_port
    # Let's Encrypt's HTTP-01 check connects to port 80 alone, whatever port nginx is published on.
    forward = [] if port == 80 else [f"Let's Encrypt connects to port 80 alone: forward port 80 of {where} to {port}"]
    return [
        f"HTTPS: certbot gets a Let's Encrypt certificate for {' '.join(names)}",
        f"from {d.spec.tls.acme_server}",
        f"once http://{names[0]}/.well-known/acme-challenge/ reaches nginx on port {port}",
        *forward,
        f"(the names' DNS must point at {where}); nginx serves a self-signed stand-in until then.",
        "certbot renews it when due (it looks twice a day); nginx reloads within "
        f"{tls.RELOAD_CHECK_SECONDS} s of each new one.",
    ]


def _postgres_limits(d: Deployment) -> dict[str, str]:
    return {"cpus": f"{d.spec.deploy.postgres_cpus:g}", "memory": d.spec.deploy.postgres_memory}


def _postgres_service(
    d: Deployment, *, containers: int, secret: str, hardening: dict[str, Any]
) -> dict[str, Any]:
    """PostgreSQL as its image runs it, as its own unprivileged user, its data on a named volume, its
    password the secret's file, sized for the pools of containers app containers at once."""
    return {
        "image": postgres.IMAGE,
        "user": f"{postgres.UID}:{postgres.UID}",
        "command": postgres.server_command(d, containers),
        "environment": postgres.server_env(d, secret_path(secret)),
        "secrets": [secret],
        "volumes": [f"postgres-data:{postgres.DATA_DIR}", postgres_shm(d)],
        **hardening,
        "stop_signal": "SIGINT",
        "stop_grace_period": _seconds(postgres.STOP_SECONDS),
        "healthcheck": {
            "test": ["CMD", *postgres.ready_command(d)],
            "interval": "5s",
            "timeout": "5s",
            "retries": 5,
            # initdb on the first start, crash recovery after a kill: neither counts as unhealthy.
            "start_period": "60s",
        },
        "networks": ["backend"],
    }


def postgres_shm(d: Deployment) -> dict[str, Any]:
    """/dev/shm for PostgreSQL's parallel queries (postgres.SHM_DIR): a tmpfs mount, since `docker stack deploy`
    ignores shm_size."""
    return {"type": "tmpfs", "target": postgres.SHM_DIR, "tmpfs": {"size": postgres.shm_bytes(d)}}


# Prometheus, Grafana and Loki publish their ports on this host's loopback only: none is for the public.


def _prometheus_service(d: Deployment) -> dict[str, Any]:
    return {
        "image": PROMETHEUS_IMAGE,
        # The image's own arguments (its config and data paths), then how long it keeps samples.
        "command": [
            f"--config.file={PROMETHEUS_CONFIG_DIR}/prometheus.yml",
            f"--storage.tsdb.path={PROMETHEUS_DATA_DIR}",
            prometheus_retention(d.spec),
        ],
        "restart": "unless-stopped",
        "environment": {"GOMEMLIMIT": PROMETHEUS_GOMEMLIMIT},
        "ports": [f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
        "deploy": {"resources": {"limits": PROMETHEUS_LIMITS}},
        "networks": ["backend"],
    }


def _alertmanager_service() -> dict[str, Any]:
    """Alertmanager, one of it: its peer-to-peer port for high availability stays closed (an empty cluster address)."""
    return {
        "image": ALERTMANAGER_IMAGE,
        "command": [
            f"--config.file={ALERTMANAGER_CONFIG_DIR}/alertmanager.yml",
            f"--storage.path={ALERTMANAGER_DATA_DIR}",
            "--cluster.listen-address=",
        ],
        "restart": "unless-stopped",
        "ports": [f"127.0.0.1:{ALERTMANAGER_PORT}:{ALERTMANAGER_PORT}"],
        "deploy": {"resources": {"limits": ALERTMANAGER_LIMITS}},
        "networks": ["backend"],
    }


def _from_out(d: Deployment, path: str) -> str:
    """A path the spec gives from the project root, as Compose reads it: from the compose file's directory."""
    if os.path.isabs(path):
        return path
    return os.path.relpath(path, d.out).replace(os.sep, "/")


def _grafana_service() -> dict[str, Any]:
    return {
        "image": GRAFANA_IMAGE,
        "restart": "unless-stopped",
        "environment": {
            "GF_SECURITY_ADMIN_PASSWORD": f"${{GRAFANA_ADMIN_PASSWORD:?{GRAFANA_PASSWORD_HELP}}}",
            "GF_USERS_ALLOW_SIGN_UP": "false",
        },
        "ports": [f"127.0.0.1:{GRAFANA_PORT}:{GRAFANA_PORT}"],
        "deploy": {"resources": {"limits": GRAFANA_LIMITS}},
        "networks": ["backend"],
    }


def _loki_service() -> dict[str, Any]:
    return {
        "image": logs.LOKI_IMAGE,
        "command": [f"-config.file={logs.LOKI_CONFIG_DIR}/loki.yaml"],
        "ports": [f"127.0.0.1:{logs.LOKI_PORT}:{logs.LOKI_PORT}"],
        "deploy": {"resources": {"limits": logs.LOKI_LIMITS}},
        "networks": ["backend"],
    }


def _alloy_service() -> dict[str, Any]:
    """Alloy reads every container's output through the Docker socket: as root, the socket's owner. Whoever
    reads that socket can command the Docker host, so it is mounted read-only here and nowhere else."""
    return {
        "image": logs.ALLOY_IMAGE,
        "user": "0:0",
        "command": [
            "run",
            f"--server.http.listen-addr={logs.ALLOY_LISTEN}",
            f"--storage.path={logs.ALLOY_DATA_DIR}",
            f"{logs.ALLOY_CONFIG_DIR}/config.alloy",
        ],
        "read_only": True,
        "tmpfs": ["/tmp"],
        # Root without the others' capabilities, but for writing its storage whoever the image made its owner.
        "cap_drop": ["ALL"],
        "cap_add": ["DAC_OVERRIDE"],
        "security_opt": ["no-new-privileges:true"],
        # The image has curl; Alloy answers once its pipeline loaded.
        "healthcheck": {"test": ["CMD", "curl", "-fsS", logs.ALLOY_READY], "interval": "30s", "timeout": "5s"},
        "deploy": {"resources": {"limits": logs.ALLOY_LIMITS}},
        "networks": ["backend"],
    }


def render_compose(d: Deployment) -> dict[str, str]:
    """compose.yaml and both images, for Gunicorn over HTTP or uWSGI over the uwsgi protocol;
    with monitoring, Prometheus scraping every app replica (Compose's DNS name `app`) and Grafana;
    with logging, Loki and Alloy shipping every container's output to it, read in Grafana;
    with postgres, the database the app starts after, its password a file the user gives."""
    run = f"Run from the project root: {_grafana_env(d)}FLASK_SECRET_KEY=... {_compose_up(d)}"
    if POSTGRES in d.extras:
        run = _compose_postgres_steps(d)
    if hosts := ", ".join(host for host, _ in ssh_hosts(d)):
        agent = f"The build checks git+ssh:// requirements out with your ssh-agent: ssh-add a key {hosts} takes."
        run = "\n".join([run, agent])
    if d.spec.deploy.release_argv:
        run = "\n".join([run, *_compose_release_steps(d)])
    if TLS in d.extras:
        run = "\n".join([run, *_tls_steps(d)])
    files = image_files(d, upstream(d), tls=tls.container_tls(d) if TLS in d.extras else None, resolver=DOCKER_DNS)
    if MONITORING in d.extras:
        # Each replica's metrics responder: scrapes never queue behind its requests (monitoring.metrics_responder).
        scrape = Scrape(job=d.name, dns_names=("app",), port=d.responder_port)
        files.update(monitoring_files(d, scrape, prefix=f"{MONITORING}/"))
        run = "\n".join([run, *_alert_steps(d, f"http://127.0.0.1:{ALERTMANAGER_PORT}", bind_mounted=True)])
    if LOGGING in d.extras:
        files.update(_logging_files(d))
        run = "\n".join([run, *_logging_steps(d, f"http://127.0.0.1:{GRAFANA_PORT}")])
    if {MONITORING, LOGGING} & d.extras:
        run = "\n".join([run, GRAFANA_PASSWORD_ONCE])
    files["compose.yaml"] = dump_yaml(compose_data(d), generated_header(d.name, run))
    return files


def _alert_steps(d: Deployment, where: str, *, bind_mounted: bool = False) -> list[str]:
    """What the header says of the alerts; where: where Alertmanager answers; bind_mounted: the webhook's file is
    mounted as it is (Compose), not copied into a secret (Swarm)."""
    hook = d.spec.monitoring.alert_webhook_url_file
    if hook is None:
        goes = "keeps them in its UI and API (monitoring.alert_webhook_url_file names a webhook's)."
    elif bind_mounted:
        # Compose bind-mounts the file as it is: the image's user (nobody) must read it.
        goes = f"posts them to the URL in {hook} (mode 444: the container's user reads it)."
    else:
        goes = f"posts them to the URL in {hook}."
    return [f"Alerts: Prometheus sends those that fire to Alertmanager ({where}), which", goes]


def _compose_up(d: Deployment) -> str:
    return f"docker compose -f {d.out}/compose.yaml up --build"


def _grafana_env(d: Deployment) -> str:
    """What the run line sets for Grafana's admin user, when the stack has a Grafana."""
    return "GRAFANA_ADMIN_PASSWORD=... " if {MONITORING, LOGGING} & d.extras else ""


def _logging_files(d: Deployment) -> dict[str, str]:
    """Loki's and Alloy's files, and the Loki datasource beside Prometheus's when Grafana has one already."""
    grafana = MONITORING if MONITORING in d.extras else LOGGING
    path = f"{grafana}/grafana/provisioning/datasources/loki.yml"
    return logs.logging_files(d, datasource_path=path, default_datasource=MONITORING not in d.extras)


def _logging_steps(d: Deployment, grafana: str) -> list[str]:
    """What the header says of the logs; grafana: where Grafana answers."""
    return [
        f"Logs: every container's output goes to Loki, labelled app={d.name} and service. In Grafana",
        f"({grafana}, Explore, Loki) one request across nginx and the app is",
        f'{logs.selector(d.name)} | request_id="..." (the X-Request-ID of its response).',
    ]


def _compose_postgres_steps(d: Deployment) -> str:
    # Compose without Swarm bind-mounts the file as it is: the database's user and the app's must both read
    # it (mode 444), and its directory (mode 700) keeps the machine's other users out.
    secret = f"$HOME/.config/{d.name}/{POSTGRES_SECRET}"
    return "\n".join(
        [
            "Once, a password file both containers can read, in a directory only you can:",
            f"  mkdir -p -m 700 $HOME/.config/{d.name}",
            f"  python -c 'import secrets; print(secrets.token_hex(32))' > {secret}",
            f"  chmod 444 {secret}",
            "Then run from the project root:",
            f"  POSTGRES_PASSWORD_FILE={secret} {_grafana_env(d)}FLASK_SECRET_KEY=... \\",
            f"    {_compose_up(d)}",
            postgres.budget_note(d, d.spec.deploy.replicas),
        ]
    )


def secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_secret_key"


def postgres_secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_{POSTGRES_SECRET}"


def most_tasks(spec: Spec) -> int:
    """App tasks running at once at most: the replicas, and the new ones a rolling update starts beside them."""
    return spec.deploy.replicas + APP_UPDATE_PARALLELISM


def postgres_node_label(d: Deployment) -> str:
    """The node label that places the database: a local volume's data stays on the node it was written on."""
    return f"{d.name}-postgres"


def _rolling(*, parallelism: int = 1) -> dict[str, Any]:
    return {
        "update_config": {
            "parallelism": parallelism,
            "delay": "10s",
            # The new task answers before the old one stops; a failed update rolls itself back.
            "order": "start-first",
            "failure_action": "rollback",
            "monitor": "30s",
        },
        "rollback_config": {"parallelism": parallelism, "order": "stop-first"},
        # A failed update still rolls back (monitor).
        "restart_policy": _restart_any(),
    }


def _restart_any() -> dict[str, Any]:
    """A service restarted however it ended, and for good: Swarm never replaces a task it gave up on (after
    max_attempts) or one that exited 0 under on-failure (a `docker stop` on its node, which Prometheus, Grafana,
    Loki and Alloy all answer by exiting 0), so the service would run a task short until its next update; a
    stopped Prometheus cannot even alert that it stopped."""
    return {"condition": "any", "delay": "5s"}


def swarm_data(d: Deployment) -> dict[str, Any]:
    grace = _seconds(d.derived.timeouts.shutdown_grace)
    secret = secret_name(d)
    app: dict[str, Any] = {
        "image": d.image,
        # The key is a Swarm secret, mounted as a file the runtime reads (FLASK_*_FILE), never an env value.
        "environment": {"FLASK_SECRET_KEY_FILE": f"/run/secrets/{secret}"},
        "secrets": [secret],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "stop_grace_period": grace,
        # Swarm replaces an unhealthy task.
        "healthcheck": _app_healthcheck() | {"timeout": _seconds(HEALTHCHECK_TIMEOUT)},
        # A volume on each node: what the app writes to its instance folder is not shared between nodes.
        "volumes": [f"{INSTANCE_VOLUME}:{d.instance_dir}"],
        "deploy": {
            "replicas": d.spec.deploy.replicas,
            **_rolling(parallelism=APP_UPDATE_PARALLELISM),
            "resources": {"limits": _limits(d), "reservations": _limits(d)},
        },
        "networks": ["backend"],
    }
    nginx: dict[str, Any] = {
        "image": d.nginx_image,
        "ports": [{"target": NGINX_PORT, "published": d.spec.deploy.http_port, "protocol": "tcp", "mode": "ingress"}],
        "read_only": True,
        "tmpfs": ["/tmp"],
        "stop_grace_period": grace,
        "deploy": {"replicas": NGINX_REPLICAS, **_rolling(), "resources": {"limits": NGINX_LIMITS}},
        "networks": ["backend"],
    }
    # `docker stack deploy` ignores depends_on (the guide's stack relies on it): nginx reaches the app
    # through the service's virtual IP, which exists as soon as the stack does.
    data: dict[str, Any] = {
        # Docker Engine before 25 refuses a stack file without a version; Compose ignores it.
        "version": "3.8",
        "services": {"app": app, "nginx": nginx},
        "networks": {"backend": {"driver": "overlay"}},
        "secrets": {secret: {"external": True}},
    }
    volumes: dict[str, Any] = {INSTANCE_VOLUME: {}}
    if POSTGRES in d.extras:
        postgres.check(d)
        db_secret = postgres_secret_name(d)
        password_file = secret_path(db_secret)
        app["environment"].update(postgres.app_env(d, host=POSTGRES, password_file=password_file))
        app["secrets"].append(db_secret)
        # A stack has no depends_on, and Swarm no readiness (its health check is liveness, /healthz):
        # an app that connects as it starts restarts until the database answers (_rolling: no attempt limit).
        hardening = {"read_only": True, "tmpfs": list(postgres.SCRATCH_DIRS.values())}
        db = _postgres_service(d, containers=most_tasks(d.spec), secret=db_secret, hardening=hardening)
        db["deploy"] = {
            "replicas": 1,
            # Its volume is local to a node: on any other it would start an empty database.
            "placement": {"constraints": [f"node.labels.{postgres_node_label(d)} == true"]},
            # Never two servers on one data directory.
            "update_config": {"order": "stop-first", "failure_action": "rollback"},
            # PostgreSQL answers a `docker stop` by exiting 0, which on-failure would leave stopped.
            "restart_policy": _restart_any(),
            "resources": {"limits": _postgres_limits(d), "reservations": _postgres_limits(d)},
        }
        data["services"][POSTGRES] = db
        data["secrets"][db_secret] = {"external": True}
        volumes["postgres-data"] = {}
    if MONITORING in d.extras:
        # Swarm has no bind mounts across nodes: every file reaches its service as a config.
        files = _swarm_monitoring_files(d)
        configs = swarm_configs(d, files)
        prometheus, grafana = _prometheus_service(d), _swarm_grafana(d, data)
        prometheus.pop("restart")
        # Swarm would publish it on every node's every address, and Prometheus asks no one for a password.
        prometheus.pop("ports")
        prometheus["configs"] = [
            {"source": _config_name(path), "target": f"{PROMETHEUS_CONFIG_DIR}/{Path(path).name}"}
            for path in files
            if path.startswith(f"{MONITORING}/prometheus/")
        ]
        grafana["configs"] = [
            {"source": _config_name(path), "target": _grafana_target(path)}
            for path in files
            if path.startswith(f"{MONITORING}/grafana/")
        ]
        alertmanager = _swarm_alertmanager(d, data)
        alertmanager["configs"] = [
            {"source": _config_name(path), "target": f"{ALERTMANAGER_CONFIG_DIR}/{Path(path).name}"}
            for path in files
            if path.startswith(f"{MONITORING}/alertmanager/")
        ]
        for service in (prometheus, alertmanager, grafana):
            service["deploy"] |= _swarm_monitoring_deploy(d)
        prometheus["volumes"] = [f"prometheus-data:{PROMETHEUS_DATA_DIR}"]
        alertmanager["volumes"] = [f"alertmanager-data:{ALERTMANAGER_DATA_DIR}"]
        grafana["volumes"] = ["grafana-data:/var/lib/grafana"]
        data["services"].update(prometheus=prometheus, alertmanager=alertmanager, grafana=grafana)
        data["configs"] = configs
        volumes |= {"prometheus-data": {}, "alertmanager-data": {}, "grafana-data": {}}
    if LOGGING in d.extras:
        _swarm_logging(d, data, volumes)
    if TLS in d.extras:
        https = {"target": tls.NGINX_TLS_PORT, "published": d.spec.deploy.https_port, "protocol": "tcp"}
        _tls_nginx(d, nginx, published={**https, "mode": "ingress"})
        # The certificates' volume is local to a node: nginx, certbot and the init step all run on that one.
        # Swarm has no depends_on: nginx restarts until the init step made the stand-in, never giving up.
        constraint = f"node.labels.{tls_node_label(d)} == true"
        nginx["deploy"]["placement"] = {"constraints": [constraint]}
        init, certbot = _certbot_services(d)
        init |= {"read_only": True, "tmpfs": ["/tmp"]}
        init["deploy"] = {
            "replicas": 1,
            "placement": {"constraints": [constraint]},
            "restart_policy": {"condition": "on-failure"},
        }
        certbot |= {"read_only": True, "tmpfs": ["/tmp", *tls.CERTBOT_SCRATCH_DIRS]}
        certbot["deploy"] = {
            "replicas": 1,
            "placement": {"constraints": [constraint]},
            # Its loop renews for as long as it runs; the init step above runs once, so on-failure is its policy.
            "restart_policy": _restart_any(),
        }
        data["services"].update({CERTBOT_INIT: init, CERTBOT: certbot})
        volumes |= {tls.CERTS_VOLUME: {}, tls.WEBROOT_VOLUME: {}}
    if d.spec.deploy.release_argv:
        release = _release_service(d, app)
        release.pop("restart")  # a stack's is deploy.restart_policy
        release["deploy"] |= {
            # Run to completion once each time `docker stack deploy` changes it (a new image), not kept running.
            "mode": "replicated-job",
            # Alembic's migrations on PostgreSQL are transactional: one that failed (the database still starting)
            # is run again from the start.
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": RELEASE_ATTEMPTS},
        }
        data["services"][RELEASE] = release
    if d.spec.proxy.rate_limit:
        _publish_on_each_node(nginx)
    if LOGGING in d.extras:
        _label_for_logs(d, data["services"])
    if volumes:
        data["volumes"] = volumes
    return data


def _compose_release_steps(d: Deployment) -> list[str]:
    """What the header says of the release service: the app waits for it, and none starts after it failed."""
    command = shlex.join(d.spec.deploy.release_argv)
    return [
        f"The release command ({command}) runs in the service {RELEASE} before the app starts, at each `up`,",
        f"within {d.spec.deploy.release_timeout} s (deploy.release_timeout); if it fails, the app does not start, and",
        f"docker compose -f {d.out}/compose.yaml logs {RELEASE}   says why.",
    ]


def _swarm_release_steps(d: Deployment) -> list[str]:
    """What the header says of the release job: Swarm orders no services, so it runs beside the new app tasks."""
    command = shlex.join(d.spec.deploy.release_argv)
    return [
        f"The release command ({command}) is the job service {RELEASE}, run once each time a deploy changes",
        "it (a new image). Swarm orders no services: the new app tasks start as it runs, not after it. Keep",
        "each migration one the running code works with (add a column now, drop the old one a release later),",
        f"and see how it ended with: docker service ps {d.name}_{RELEASE}",
    ]


def _publish_on_each_node(nginx: dict[str, Any]) -> None:
    """nginx on each node's own ports (host mode), one task per node, for a limit per client.

    Through Swarm's routing mesh (ingress mode) every connection reaches nginx from the mesh's address, so
    proxy.rate_limit would limit all clients as one (and the logs and the app would see one client). A port
    taken on the host admits one task per node, so the old task stops before the new one starts.
    """
    nginx["ports"] = [port | {"mode": "host"} for port in nginx["ports"]]
    deploy = nginx["deploy"]
    deploy.pop("replicas")
    deploy["mode"] = "global"
    deploy["update_config"]["order"] = "stop-first"


def _swarm_logging(d: Deployment, data: dict[str, Any], volumes: dict[str, Any]) -> None:
    """Loki on the node labelled for it (its volume is local), Alloy on every node (each reads its own Docker
    host's containers), and Grafana with Loki's datasource; every file reaches its service as a config."""
    files = _logging_files(d)
    configs = data.setdefault("configs", {})
    configs |= swarm_configs(d, files)
    loki, alloy = _loki_service(), _alloy_service()
    loki |= {"read_only": True, "tmpfs": ["/tmp"]}
    # Swarm publishes a port on every node's every address: Grafana and Alloy reach Loki over the overlay.
    loki.pop("ports")
    loki_yaml = f"{LOGGING}/loki/loki.yaml"
    loki["configs"] = [{"source": _config_name(loki_yaml), "target": f"{logs.LOKI_CONFIG_DIR}/loki.yaml"}]
    loki["volumes"] = [f"loki-data:{logs.LOKI_DATA_DIR}"]
    loki["deploy"] |= {
        "replicas": 1,
        "placement": {"constraints": [f"node.labels.{logs_node_label(d)} == true"]},
        # Never two Lokis on one data directory.
        "update_config": {"order": "stop-first"},
        "restart_policy": _restart_any(),
    }
    alloy["configs"] = [
        {"source": _config_name(f"{LOGGING}/alloy/config.alloy"), "target": f"{logs.ALLOY_CONFIG_DIR}/config.alloy"}
    ]
    alloy["volumes"] = [
        {"type": "bind", "source": logs.DOCKER_SOCKET, "target": logs.DOCKER_SOCKET, "read_only": True},
        f"alloy-data:{logs.ALLOY_DATA_DIR}",
    ]
    alloy["deploy"] |= {"mode": "global", "restart_policy": _restart_any()}
    # As the stack's other services: read-only, without the capability and privilege options Compose takes.
    for option in ("cap_drop", "cap_add", "security_opt"):
        alloy.pop(option)
    grafana = data["services"].get("grafana")
    if grafana is None:
        grafana = _swarm_grafana(d, data)
        grafana["volumes"] = ["grafana-data:/var/lib/grafana"]
        grafana["configs"] = []
        grafana["deploy"] |= _swarm_monitoring_deploy(d)
        volumes["grafana-data"] = {}
    datasource = next(path for path in files if path.endswith("/loki.yml"))
    grafana["configs"].append({"source": _config_name(datasource), "target": _grafana_target(datasource)})
    data["services"].update(loki=loki, alloy=alloy, grafana=grafana)
    volumes |= {"loki-data": {}, "alloy-data": {}}


def _swarm_grafana(d: Deployment, data: dict[str, Any]) -> dict[str, Any]:
    """Grafana as a stack runs it, its admin password a Swarm secret (Grafana reads *__FILE variables), not a
    value in the service's spec. Swarm ignores the address in a published port (moby/moby#32299): it would
    publish 127.0.0.1:3000 on every node's every address, so the port is published so, openly, behind
    Grafana's login, the one service of these that has one."""
    secret = grafana_secret_name(d)
    data["secrets"][secret] = {"external": True}
    grafana = _grafana_service()
    grafana.pop("restart")
    grafana["environment"] = {
        "GF_SECURITY_ADMIN_PASSWORD__FILE": secret_path(secret),
        "GF_USERS_ALLOW_SIGN_UP": "false",
    }
    grafana["secrets"] = [secret]
    grafana["ports"] = [{"target": GRAFANA_PORT, "published": GRAFANA_PORT, "protocol": "tcp", "mode": "ingress"}]
    return grafana


def _swarm_alertmanager(d: Deployment, data: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager as a stack runs it: reached over the overlay alone (Swarm would publish a port on every node's
    every address, and Alertmanager asks no one for a password), the webhook's URL a Swarm secret."""
    alertmanager = _alertmanager_service()
    alertmanager.pop("restart")
    alertmanager.pop("ports")
    if d.spec.monitoring.alert_webhook_url_file is not None:
        secret = webhook_secret_name(d)
        data["secrets"][secret] = {"external": True}
        # Mounted under the name alertmanager.yml reads, the one Compose gives it.
        alertmanager["secrets"] = [{"source": secret, "target": WEBHOOK_SECRET}]
    return alertmanager


def webhook_secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_{WEBHOOK_SECRET}"


def _swarm_monitoring_deploy(d: Deployment) -> dict[str, Any]:
    """Prometheus's, Alertmanager's or Grafana's: one task, on the node labelled for them, as their data volumes are
    local to a node (a task started on another would begin with an empty one: no history, no silences, Grafana's
    users and settings gone)."""
    return {
        "replicas": 1,
        "placement": {"constraints": [f"node.labels.{monitoring_node_label(d)} == true"]},
        # Never two on one data directory.
        "update_config": {"order": "stop-first"},
        "restart_policy": _restart_any(),
    }


def monitoring_node_label(d: Deployment) -> str:
    """The node label that places Prometheus, Alertmanager and Grafana: their volumes are local to the node."""
    return f"{d.name}-monitoring"


def grafana_secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_grafana_admin_password"


def logs_node_label(d: Deployment) -> str:
    """The node label that places Loki: its volume is local to the node."""
    return f"{d.name}-logs"


def tls_node_label(d: Deployment) -> str:
    """The node label that places nginx and certbot: the certificates' volume is local to the node."""
    return f"{d.name}-tls"


def _swarm_monitoring_files(d: Deployment) -> dict[str, str]:
    # tasks.app resolves to every replica's own address, not the service's virtual IP; each replica's metrics
    # responder answers, so scrapes never queue behind its requests (monitoring.metrics_responder).
    scrape = Scrape(job=d.name, dns_names=("tasks.app",), port=d.responder_port)
    return monitoring_files(d, scrape, prefix=f"{MONITORING}/")


def swarm_configs(d: Deployment, files: dict[str, str]) -> dict[str, Any]:
    """Each file as a Swarm config named after its content. A config cannot change once created: under a fixed
    name, `docker stack deploy` of an edited file fails ("only updates to Labels are allowed"). A new name
    for new content is a new config, and the services that mount it roll to it; `docker stack rm` removes
    them all (they carry the stack's label)."""
    configs: dict[str, Any] = {}
    for path, text in files.items():
        key = _config_name(path)
        digest = hashlib.sha256(text.encode()).hexdigest()[:CONFIG_DIGEST]
        # Swarm takes at most 64 of [a-zA-Z0-9-_.] for a config's name, starting and ending with a letter or digit.
        base = f"{d.name}_{key}"[: CONFIG_NAME_MAX - CONFIG_DIGEST - 1]
        configs[key] = {"name": f"{base}_{digest}", "file": f"./{path}"}
    return configs


def _config_name(path: str) -> str:
    return path.removeprefix(f"{MONITORING}/").replace("/", "_").replace(".", "_")


def _grafana_target(path: str) -> str:
    relative = path.split("/grafana/", 1)[1]
    if relative.startswith("provisioning/"):
        return f"{GRAFANA_PROVISIONING_DIR}/{relative.removeprefix('provisioning/')}"
    return f"{GRAFANA_DASHBOARDS_DIR}/{relative.removeprefix('dashboards/')}"


@dataclass(frozen=True, kw_only=True)
class SwarmCapacity:
    """CPUs and bytes of memory the nodes must have free, in all, for Swarm to place the tasks that reserve them."""

    first_cpus: float  # the first deploy: every app task, and the database
    first_memory: int
    update_cpus: float  # during an update: one app task more (start-first)
    update_memory: int


def swarm_capacity(d: Deployment) -> SwarmCapacity:
    """What the app's and the database's reservations (their limits) need. Only those two reserve: nginx and the
    monitoring and logging services have limits alone, so they never stop a task from being placed."""
    cpus, memory = d.spec.deploy.cpus, parse_size(d.spec.deploy.memory)
    db_cpus, db_memory = (
        (d.spec.deploy.postgres_cpus, parse_size(d.spec.deploy.postgres_memory)) if POSTGRES in d.extras else (0.0, 0)
    )
    replicas, most = d.spec.deploy.replicas, most_tasks(d.spec)
    return SwarmCapacity(
        first_cpus=replicas * cpus + db_cpus,
        first_memory=replicas * memory + db_memory,
        update_cpus=most * cpus + db_cpus,
        update_memory=most * memory + db_memory,
    )


def _memory_text(size: int) -> str:
    mib = size / 1024**2
    return f"{mib / 1024:g} GiB" if mib >= 1024 else f"{mib:g} MiB"


def _cpus_text(cpus: float) -> str:
    return f"{cpus:g} CPU" if cpus <= 1 else f"{cpus:g} CPUs"


def _swarm_capacity_steps(d: Deployment) -> list[str]:
    """The header's capacity lines: what Swarm needs free to place the first deploy and to update it."""
    need, deploy = swarm_capacity(d), d.spec.deploy
    app = f"{_cpus_text(deploy.cpus)} and {_memory_text(parse_size(deploy.memory))}"
    reserved = f"{counted(deploy.replicas, 'app task')}, {app} each"
    if POSTGRES in d.extras:
        db = f"{_cpus_text(deploy.postgres_cpus)} and {_memory_text(parse_size(deploy.postgres_memory))}"
        reserved += f"; PostgreSQL, {db} on its node"
    return [
        "Capacity: Swarm places a task only on a node with its reservation free, and each reserves its limits,",
        f"which the app's workers were sized for: {reserved}.",
        f"The first deploy needs {_cpus_text(need.first_cpus)} and {_memory_text(need.first_memory)} free across the"
        " nodes (a single node: all of it);",
        f"an update {_cpus_text(need.update_cpus)} and {_memory_text(need.update_memory)}, as it starts"
        f" {counted(APP_UPDATE_PARALLELISM, 'new app task')} before it stops an old one.",
        "With less, lower deploy.cpus, deploy.memory or deploy.replicas (or the database's) and build again.",
    ]


def render_swarm(d: Deployment) -> dict[str, str]:
    """stack.yaml and both images: replicated app and nginx, rolling updates that roll back."""
    random = "python -c 'import secrets; print(secrets.token_hex(32))'"
    steps = [
        f"Build and push {d.image} and {d.nginx_image} (see the Dockerfiles), then:",
        f"  {random} | docker secret create {secret_name(d)} -",
    ]
    if POSTGRES in d.extras:
        steps += [
            f"  {random} | docker secret create {postgres_secret_name(d)} -",
            f"  docker node update --label-add {postgres_node_label(d)}=true NODE   # the node that keeps the data",
        ]
    if TLS in d.extras:
        label = tls_node_label(d)
        steps.append(f"  docker node update --label-add {label}=true NODE   # nginx's node: it keeps the certificates")
    if LOGGING in d.extras:
        label = logs_node_label(d)
        steps.append(f"  docker node update --label-add {label}=true NODE   # Loki's node: it keeps the logs")
    if {MONITORING, LOGGING} & d.extras:
        label = monitoring_node_label(d)
        whose = "Prometheus's, Alertmanager's and Grafana's" if MONITORING in d.extras else "Grafana's"
        steps.append(f"  docker node update --label-add {label}=true NODE   # the node that keeps {whose} data")
        grafana = grafana_secret_name(d)
        steps.append(f'  printf %s "$GRAFANA_ADMIN_PASSWORD" | docker secret create {grafana} -   # for Grafana')
    hook = d.spec.monitoring.alert_webhook_url_file
    if MONITORING in d.extras and hook is not None:
        steps.append(f"  docker secret create {webhook_secret_name(d)} {shlex.quote(hook)}   # the URL alerts go to")
    steps.append(f"  docker stack deploy -c {d.out}/stack.yaml {d.name}")
    if POSTGRES not in d.extras:
        steps += [
            f"Flask's instance folder ({d.instance_dir}) is a volume on each node: a SQLite file or uploads there are",
            "not shared between replicas on different nodes. Keep such data in a database (--with postgres).",
        ]
    if d.spec.deploy.release_argv:
        steps += _swarm_release_steps(d)
    if d.spec.proxy.rate_limit:
        steps += [
            "nginx takes its ports on each node itself (host mode), so its limit per client sees the client's",
            "address; an nginx update stops a node's nginx before starting the next: balance the nodes in front.",
        ]
    else:
        steps += [
            "nginx is published through Swarm's routing mesh: every node answers, and nginx sees the mesh's",
            "address, not the client's (with proxy.rate_limit set, it takes each node's own ports instead).",
        ]
    steps += _swarm_capacity_steps(d)
    if POSTGRES in d.extras:
        steps.append(postgres.budget_note(d, most_tasks(d.spec)))
    if TLS in d.extras:
        steps += _tls_steps(d, node_label=tls_node_label(d))
    if MONITORING in d.extras:
        steps += _alert_steps(d, "published nowhere, as Prometheus: it asks no one for a password")
    if LOGGING in d.extras:
        steps += _logging_steps(d, f"port {GRAFANA_PORT} of any node")
    if {MONITORING, LOGGING} & d.extras:
        steps.append(GRAFANA_PASSWORD_ONCE)
    run = "\n".join(steps)
    files = image_files(d, upstream(d), tls=tls.container_tls(d) if TLS in d.extras else None)
    if MONITORING in d.extras:
        files.update(_swarm_monitoring_files(d))
    if LOGGING in d.extras:
        files.update(_logging_files(d))
    files["stack.yaml"] = dump_yaml(swarm_data(d), generated_header(d.name, run))
    return files
