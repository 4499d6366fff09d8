"""`up --with monitoring`: a real Prometheus beside nginx, with the alert rules `build --with monitoring` writes,
sending what fires to the Alertmanager beside it (stack/alertmanager.py).

The app server listens on a unix socket, so Prometheus scrapes the app through nginx: a listener of its
own on loopback that serves the metrics path alone (NginxContext.metrics_port, as in a Kubernetes pod).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ServerError, SpecError
from ..render.deployment import dns_label
from ..render.monitoring import Monitored, Scrape, prometheus_files, prometheus_retention
from ..render.nginx import listen_address, release_metrics_path
from ..servers.common import check_bind, loopback_for
from ..sizing import Derived
from ..spec import Spec
from .children import Child
from .rundir import StackDir

INSTALL_HINT = "install it with `apt-get install prometheus` (Debian, Ubuntu)"
# Alertmanager listens on loopback alone: only this Prometheus sends to it, and it asks for no password.
ALERTMANAGER_HOST = "127.0.0.1"
# nginx's listener for the scraper: Prometheus runs on this machine, so nothing else need reach it.
SCRAPE_HOST = "127.0.0.1"
# Seconds between scrapes and between rule evaluations: a request shows in a query within seconds
# (the containers' Prometheus takes 15 s).
SCRAPE_INTERVAL = 5
# The app's targets (file_sd), in Prometheus's directory: one per running release, written again as they change.
TARGETS_FILE = "targets.json"
# 200 once Prometheus has loaded its config and rules and replayed its data.
READY_PATH = "/-/ready"
# The most a release's drain waits for Prometheus to drop its target: two 5 s throttles (discovery's, then the scrape
# manager's) and a margin.
UNSCRAPED_WITHIN = 12.0
# Settings a reload cannot change under --with monitoring: what Prometheus and nginx's listener for it
# listen on, and whether there are metrics to scrape at all.
RESTART_ONLY = (
    "monitoring.metrics",
    "monitoring.metrics_port",
    "monitoring.prometheus_host",
    "monitoring.prometheus_port",
    "monitoring.alertmanager_port",
    "monitoring.retention_days",
)


@dataclass(frozen=True, kw_only=True)
class Prometheus:
    """`up`'s Prometheus: its binary, where it listens, nginx's listener it scrapes and the job it scrapes as."""

    binary: str
    host: str
    port: int
    scrape_port: int  # nginx's metrics listener, on SCRAPE_HOST
    job: str  # the app's job, named as `flaskprod build` names it
    retention: str  # its flag for how long samples are kept
    alertmanager: str  # host:port of the Alertmanager it sends firing alerts to

    @property
    def url(self) -> str:
        return f"http://{listen_address(loopback_for(self.host), self.port)}"

    @property
    def scrape_listen(self) -> tuple[str, int]:
        return SCRAPE_HOST, self.scrape_port

    def metrics_url(self, spec: Spec) -> str:
        return f"http://{listen_address(*self.scrape_listen)}{spec.monitoring.metrics_path}"

    def describe(self, run: StackDir) -> str:
        """Its line in `up`'s table."""
        return f"{self.url}/  (scrapes every {SCRAPE_INTERVAL}s; alert rules: {run.prometheus_dir / 'alerts.yml'})"

    def child(self, run: StackDir, log_format: str) -> Child:
        """The supervised process: SIGTERM is its graceful stop, SIGHUP makes it read its files again."""
        command = [
            self.binary,
            f"--config.file={run.prometheus_dir / 'prometheus.yml'}",
            f"--storage.tsdb.path={run.prometheus_dir / 'data'}",
            self.retention,
            f"--web.listen-address={listen_address(self.host, self.port)}",
            # Warnings and errors only, as nginx logs, in the format of the stack's own lines.
            "--log.level=warn",
            f"--log.format={'json' if log_format == 'json' else 'logfmt'}",
        ]
        return Child(name="prometheus", command=command, stop_signal=signal.SIGTERM, listens_port=self.port)

    def write_config(self, run: StackDir, spec: Spec, derived: Derived) -> None:
        """prometheus.yml and alerts.yml in the run directory, derived as `flaskprod build --with monitoring`'s are."""
        app = Monitored(
            name=self.job,
            spec=spec,
            derived=derived,
            server="uwsgi" if spec.server.kind == "uwsgi" else "gunicorn",
            app_port=self.scrape_port,
        )
        scrape = Scrape(
            job=self.job,
            targets=(listen_address(*self.scrape_listen),),
            interval=SCRAPE_INTERVAL,
            target_file=TARGETS_FILE,
        )
        itself = listen_address(loopback_for(self.host), self.port)
        files = prometheus_files(app, scrape, itself=itself, alertmanager=self.alertmanager, by="up")
        run.prometheus_dir.mkdir(exist_ok=True)
        for name, text in files.items():
            replace_file(run.prometheus_dir / name, text)

    def write_targets(self, run: StackDir, spec: Spec, releases: Iterable[int]) -> None:
        """The app's targets: each running release at its own path on nginx's listener (release_metrics_path),
        labelled release="N", so a canary's requests are series of their own and the alert rules judge it apart.
        Written once nginx serves those paths; Prometheus watches the file, so a release that stops leaves the
        targets (no AppDown for it) and one that starts is scraped within an interval."""
        address = listen_address(*self.scrape_listen)
        groups = [
            {"targets": [address], "labels": {"release": str(n), "__metrics_path__": release_metrics_path(spec, n)}}
            for n in releases
        ]
        run.prometheus_dir.mkdir(exist_ok=True)
        replace_file(run.prometheus_dir / TARGETS_FILE, json.dumps(groups, indent=2) + "\n")

    def ready(self) -> tuple[bool, str]:
        return answers_ready(loopback_for(self.host), self.port)

    def wait_unscraped(self, release: int, timeout: float = UNSCRAPED_WITHIN) -> None:
        """Return once Prometheus has dropped release's target (written out of the targets file before), or after
        timeout. It applies the file within its discovery throttle, and a release stopped before then was scraped
        down meanwhile: up 0, and ScrapesFailing a minute later for a release no longer running. Its targets API
        lists a target until its scrape loop has stopped. A Prometheus that does not answer scrapes nothing."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                active = self._active_targets()
            except (OSError, ValueError, KeyError, TypeError):
                return
            if not any(self._is_release(target.get("labels", {}), release) for target in active):
                return
            time.sleep(0.2)

    def _is_release(self, labels: Mapping[str, str], release: int) -> bool:
        return labels.get("job") == self.job and labels.get("release") == str(release)

    def _active_targets(self) -> list[dict[str, Any]]:
        conn = http.client.HTTPConnection(loopback_for(self.host), self.port, timeout=2)
        try:
            conn.request("GET", "/api/v1/targets?state=active")
            body = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        return list(body["data"]["activeTargets"])


def answers_ready(host: str, port: int) -> tuple[bool, str]:
    """Whether READY_PATH (Prometheus's and Alertmanager's alike) answers 200 at host:port, and what it answered."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", READY_PATH)
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
    except OSError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()
    return response.status == 200, f"{response.status} {' '.join(body.split())[:400]}"


def replace_file(path: Path, text: str, *, mode: int = 0o644) -> bool:
    """Write path whole, with mode from its creation on: a process restarted meanwhile never reads half a file, nor
    another user a secret. Whether its text changed."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    candidate = path.with_name(path.name + ".new")
    candidate.unlink(missing_ok=True)
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(candidate, path)
    return True


def find_prometheus() -> str:
    found = shutil.which("prometheus")
    if found is None:
        raise ServerError(f"prometheus not found on PATH: --with monitoring runs it; {INSTALL_HINT}")
    return found


def plan_prometheus(spec: Spec, ports: Mapping[str, int]) -> Prometheus:
    """Check what --with monitoring needs: the app's metrics, the binary, three ports of its own (Alertmanager's is
    checked free by plan_alertmanager) and free.

    ports are those nginx listens on, by setting.
    """
    monitoring = spec.monitoring
    if not monitoring.metrics:
        raise SpecError(
            "--with monitoring scrapes the app's metrics, and monitoring.metrics is false: set it to true, "
            "or run without --with monitoring"
        )
    binary = find_prometheus()
    taken = dict(ports)
    for key in ("monitoring.metrics_port", "monitoring.prometheus_port", "monitoring.alertmanager_port"):
        port = spec.get(key)
        clash = next((other for other, used in taken.items() if used == port), None)
        if clash is not None:
            raise SpecError(f"{key} = {port} is also {clash}: set one of them to another port")
        taken[key] = port
    check_bind(listen_address(SCRAPE_HOST, monitoring.metrics_port), instead="--set monitoring.metrics_port=PORT")
    check_bind(
        listen_address(monitoring.prometheus_host, monitoring.prometheus_port),
        instead="--set monitoring.prometheus_port=PORT",
    )
    return Prometheus(
        binary=binary,
        host=monitoring.prometheus_host,
        port=monitoring.prometheus_port,
        scrape_port=monitoring.metrics_port,
        job=dns_label(spec.app.name),
        retention=prometheus_retention(spec),
        alertmanager=listen_address(ALERTMANAGER_HOST, monitoring.alertmanager_port),
    )
