"""Docker Compose and Swarm files, built as data: nginx in front of the app image, from one Deployment.

Every number another layer also uses comes from the Deployment: the grace period the app server
drains in, the CPU and memory its workers were sized for, the port nginx forwards to, and with
--with postgres the database's max_connections, counted from the workers and pool the app is told.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from . import postgres, tls
from .deployment import NGINX_PORT, NGINX_UID, Deployment
from .image import image_files
from .monitoring import (
    GRAFANA_DASHBOARDS_DIR,
    GRAFANA_PROVISIONING_DIR,
    PROMETHEUS_CONFIG_DIR,
    PROMETHEUS_PORT,
    Scrape,
    monitoring_files,
)
from .yamlfile import Script, dump_yaml, generated_header

HEALTHCHECK = ["CMD", "python", "-m", "flaskprod.servers.healthcheck"]
SECRET_KEY_HELP = 'set FLASK_SECRET_KEY, e.g. python -c "import secrets; print(secrets.token_hex(32))"'
# Pinned: a dashboard's schema and a rule's syntax are tested against these versions' formats.
PROMETHEUS_IMAGE = "prom/prometheus:v2.55.1"
GRAFANA_IMAGE = "grafana/grafana:12.0.2"
GRAFANA_PORT = 3000
GRAFANA_PASSWORD_HELP = "set GRAFANA_ADMIN_PASSWORD for Grafana's admin user"
MONITORING = "monitoring"
# nginx holds few connections per request and little memory; two replicas ride out one restart.
NGINX_REPLICAS = 2
NGINX_LIMITS = {"cpus": "0.5", "memory": "128M"}
# The extra and its service's name, which is the host name the app connects to.
POSTGRES = "postgres"
POSTGRES_SECRET = "postgres_password"
POSTGRES_PASSWORD_HELP = "set POSTGRES_PASSWORD_FILE to a file holding the database password; see this file's header"
# New app tasks a Swarm update starts before it stops old ones (start-first): the database counts them too.
APP_UPDATE_PARALLELISM = 1
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


def secret_path(name: str) -> str:
    """Where Compose and Swarm mount a secret inside a container: the same file for every service given it."""
    return f"/run/secrets/{name}"


def upstream(d: Deployment) -> str:
    """Where nginx forwards: the app service by name, on the port its server listens on."""
    return f"app:{d.app_port}"


def compose_data(d: Deployment) -> dict[str, Any]:
    grace = _seconds(d.derived.timeouts.shutdown_grace)
    app: dict[str, Any] = {
        "build": {"context": _context(d), "dockerfile": f"{d.out}/Dockerfile"},
        "image": d.image,
        "restart": "unless-stopped",
        "environment": {"FLASK_SECRET_KEY": f"${{FLASK_SECRET_KEY:?{SECRET_KEY_HELP}}}"},
        **_hardened(),
        "stop_grace_period": grace,
        "healthcheck": _app_healthcheck(),
        "deploy": {"replicas": d.spec.deploy.replicas, "resources": {"limits": _limits(d)}},
        "networks": ["backend"],
    }
    nginx: dict[str, Any] = {
        "build": {"context": _context(d), "dockerfile": f"{d.out}/nginx/Dockerfile"},
        "image": d.nginx_image,
        "restart": "unless-stopped",
        "ports": [f"{d.spec.deploy.http_port}:{NGINX_PORT}"],
        # nginx resolves the app's name once, at start: start it when the app answers.
        "depends_on": {"app": {"condition": "service_healthy"}},
        **_hardened(),
        "stop_grace_period": grace,
        "deploy": {"resources": {"limits": NGINX_LIMITS}},
        "networks": ["backend"],
    }
    data: dict[str, Any] = {"services": {"app": app, "nginx": nginx}, "networks": {"backend": {}}}
    volumes: dict[str, Any] = {}
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
        prometheus, grafana = _monitoring_services()
        prometheus["volumes"] = [
            f"./{MONITORING}/prometheus:{PROMETHEUS_CONFIG_DIR}:ro",
            "prometheus-data:/prometheus",
        ]
        grafana["volumes"] = [
            f"./{MONITORING}/grafana/provisioning:{GRAFANA_PROVISIONING_DIR}:ro",
            f"./{MONITORING}/grafana/dashboards:{GRAFANA_DASHBOARDS_DIR}:ro",
            "grafana-data:/var/lib/grafana",
        ]
        grafana["depends_on"] = ["prometheus"]
        data["services"].update(prometheus=prometheus, grafana=grafana)
        volumes |= {"prometheus-data": {}, "grafana-data": {}}
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
    if volumes:
        data["volumes"] = volumes
    return data


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
    return [
        f"HTTPS: certbot gets a Let's Encrypt certificate for {' '.join(names)}",
        f"from {d.spec.tls.acme_server}",
        f"once http://{names[0]}/.well-known/acme-challenge/ reaches nginx on port {d.spec.deploy.http_port}",
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
        "volumes": [f"postgres-data:{postgres.DATA_DIR}"],
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


def _monitoring_services() -> tuple[dict[str, Any], dict[str, Any]]:
    """Prometheus and Grafana, reachable from this host only: neither is for the public."""
    prometheus: dict[str, Any] = {
        "image": PROMETHEUS_IMAGE,
        "restart": "unless-stopped",
        "ports": [f"127.0.0.1:{PROMETHEUS_PORT}:{PROMETHEUS_PORT}"],
        "networks": ["backend"],
    }
    grafana: dict[str, Any] = {
        "image": GRAFANA_IMAGE,
        "restart": "unless-stopped",
        "environment": {
            "GF_SECURITY_ADMIN_PASSWORD": f"${{GRAFANA_ADMIN_PASSWORD:?{GRAFANA_PASSWORD_HELP}}}",
            "GF_USERS_ALLOW_SIGN_UP": "false",
        },
        "ports": [f"127.0.0.1:{GRAFANA_PORT}:{GRAFANA_PORT}"],
        "networks": ["backend"],
    }
    return prometheus, grafana


def render_compose(d: Deployment) -> dict[str, str]:
    """compose.yaml and both images, for Gunicorn over HTTP or uWSGI over the uwsgi protocol;
    with monitoring, Prometheus scraping every app replica (Compose's DNS name `app`) and Grafana;
    with postgres, the database the app starts after, its password a file the user gives."""
    run = f"Run from the project root: FLASK_SECRET_KEY=... docker compose -f {d.out}/compose.yaml up --build"
    if POSTGRES in d.extras:
        run = _compose_postgres_steps(d)
    if TLS in d.extras:
        run = "\n".join([run, *_tls_steps(d)])
    files = image_files(d, upstream(d), tls=tls.container_tls(d) if TLS in d.extras else None)
    if MONITORING in d.extras:
        files.update(monitoring_files(d, Scrape(job=d.name, dns_names=("app",)), prefix=f"{MONITORING}/"))
    files["compose.yaml"] = dump_yaml(compose_data(d), generated_header(d.name, run))
    return files


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
            f"  POSTGRES_PASSWORD_FILE={secret} FLASK_SECRET_KEY=... docker compose -f {d.out}/compose.yaml up --build",
            postgres.budget_note(d, d.spec.deploy.replicas),
        ]
    )


def secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_secret_key"


def postgres_secret_name(d: Deployment) -> str:
    return f"{d.name.replace('-', '_')}_{POSTGRES_SECRET}"


def most_tasks(d: Deployment) -> int:
    """App tasks running at once at most: the replicas, and the new ones a rolling update starts beside them."""
    return d.spec.deploy.replicas + APP_UPDATE_PARALLELISM


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
        "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3, "window": "120s"},
    }


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
        "healthcheck": _app_healthcheck(),
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
    volumes: dict[str, Any] = {}
    if POSTGRES in d.extras:
        postgres.check(d)
        db_secret = postgres_secret_name(d)
        password_file = secret_path(db_secret)
        app["environment"].update(postgres.app_env(d, host=POSTGRES, password_file=password_file))
        app["secrets"].append(db_secret)
        # A stack has no depends_on, and Swarm no readiness (its health check is liveness, /healthz):
        # an app that connects as it starts restarts until the database answers, not three times only.
        app["deploy"]["restart_policy"].pop("max_attempts")
        hardening = {"read_only": True, "tmpfs": list(postgres.SCRATCH_DIRS.values())}
        db = _postgres_service(d, containers=most_tasks(d), secret=db_secret, hardening=hardening)
        db["deploy"] = {
            "replicas": 1,
            # Its volume is local to a node: on any other it would start an empty database.
            "placement": {"constraints": [f"node.labels.{postgres_node_label(d)} == true"]},
            # Never two servers on one data directory.
            "update_config": {"order": "stop-first", "failure_action": "rollback"},
            "restart_policy": {"condition": "on-failure", "delay": "5s"},
            "resources": {"limits": _postgres_limits(d), "reservations": _postgres_limits(d)},
        }
        data["services"][POSTGRES] = db
        data["secrets"][db_secret] = {"external": True}
        volumes["postgres-data"] = {}
    if MONITORING in d.extras:
        # Swarm has no bind mounts across nodes: every file reaches its service as a config.
        files = _swarm_monitoring_files(d)
        configs = {_config_name(path): {"file": f"./{path}"} for path in files}
        prometheus, grafana = _monitoring_services()
        grafana.pop("restart")
        prometheus.pop("restart")
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
        for service in (prometheus, grafana):
            service["deploy"] = {"replicas": 1, "restart_policy": {"condition": "on-failure"}}
        prometheus["volumes"] = ["prometheus-data:/prometheus"]
        grafana["volumes"] = ["grafana-data:/var/lib/grafana"]
        data["services"].update(prometheus=prometheus, grafana=grafana)
        data["configs"] = configs
        volumes |= {"prometheus-data": {}, "grafana-data": {}}
    if TLS in d.extras:
        https = {"target": tls.NGINX_TLS_PORT, "published": d.spec.deploy.https_port, "protocol": "tcp"}
        _tls_nginx(d, nginx, published={**https, "mode": "ingress"})
        # The certificates' volume is local to a node: nginx, certbot and the init step all run on that one.
        # Swarm has no depends_on: nginx restarts until the init step made the stand-in, never giving up.
        constraint = f"node.labels.{tls_node_label(d)} == true"
        nginx["deploy"]["placement"] = {"constraints": [constraint]}
        nginx["deploy"]["restart_policy"].pop("max_attempts")
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
            "restart_policy": {"condition": "on-failure", "delay": "5s"},
        }
        data["services"].update({CERTBOT_INIT: init, CERTBOT: certbot})
        volumes |= {tls.CERTS_VOLUME: {}, tls.WEBROOT_VOLUME: {}}
    if volumes:
        data["volumes"] = volumes
    return data


def tls_node_label(d: Deployment) -> str:
    """The node label that places nginx and certbot: the certificates' volume is local to the node."""
    return f"{d.name}-tls"


def _swarm_monitoring_files(d: Deployment) -> dict[str, str]:
    # tasks.app resolves to every replica's own address, not the service's virtual IP.
    return monitoring_files(d, Scrape(job=d.name, dns_names=("tasks.app",)), prefix=f"{MONITORING}/")


def _config_name(path: str) -> str:
    return path.removeprefix(f"{MONITORING}/").replace("/", "_").replace(".", "_")


def _grafana_target(path: str) -> str:
    relative = path.removeprefix(f"{MONITORING}/grafana/")
    if relative.startswith("provisioning/"):
        return f"{GRAFANA_PROVISIONING_DIR}/{relative.removeprefix('provisioning/')}"
    return f"{GRAFANA_DASHBOARDS_DIR}/{relative.removeprefix('dashboards/')}"


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
    steps.append(f"  docker stack deploy -c {d.out}/stack.yaml {d.name}")
    if POSTGRES in d.extras:
        steps.append(postgres.budget_note(d, most_tasks(d)))
    if TLS in d.extras:
        steps += _tls_steps(d, node_label=tls_node_label(d))
    run = "\n".join(steps)
    files = image_files(d, upstream(d), tls=tls.container_tls(d) if TLS in d.extras else None)
    if MONITORING in d.extras:
        files.update(_swarm_monitoring_files(d))
    files["stack.yaml"] = dump_yaml(swarm_data(d), generated_header(d.name, run))
    return files
