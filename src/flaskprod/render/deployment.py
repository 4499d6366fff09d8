"""What every deployment target is rendered from: the spec, the project's facts, and the sizes of one container.

`plan_deployment` finds the facts (it imports the app once, in a child interpreter); the renderers
that read a Deployment are pure, so the same spec always writes the same files.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from .. import discovery
from ..errors import BuildError
from ..sizing import Derived, Machine, derive
from ..spec import Spec, env_for, find_config_file, parse_size
from .nginx import NginxContext, Protocol, TlsFiles, render_nginx
from .requirements import require_flaskprod, requirements_file

if TYPE_CHECKING:
    from ..servers.probe import AppInfo

ServerKind = Literal["gunicorn", "uwsgi"]

# Where things live inside the images; the renderers of every target agree on these.
APP_DIR = "/app"
STATIC_DIR = "/srv/static"
NGINX_CONF_DIR = "/etc/nginx"
# The unprivileged nginx image (uid 101) cannot bind below 1024.
NGINX_PORT = 8080
NGINX_IMAGE = "nginxinc/nginx-unprivileged:1.27-alpine"
NGINX_UID = 101  # that image's nginx user
# uWSGI's registered port for its own protocol; Gunicorn listens on deploy.app_port.
UWSGI_PORT = 3031
# The app container's user: a fixed number, so Kubernetes can check runAsNonRoot without a name.
APP_UID = 10001


@dataclass(frozen=True, kw_only=True)
class Project:
    """The user's project as the image needs it: paths are POSIX and relative to the project root."""

    root: Path
    app_target: str  # the import string the container runs, e.g. "wsgi:app"
    requirements: str | None  # None: the project installs itself from pyproject.toml
    requirement_includes: tuple[str, ...] = ()  # files requirements names with -r or -c, which pip reads too
    static_dir: str | None
    static_url: str


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """One target's inputs. derived is one app container sized from deploy.cpus and deploy.memory:
    the same numbers `flaskprod serve` computes inside that container when it starts."""

    spec: Spec
    project: Project
    derived: Derived
    server: ServerKind
    extras: frozenset[str]
    # Where the files go, relative to the project root (POSIX): images build from the root and
    # name their own files by this path.
    out: str = "deploy"

    @property
    def name(self) -> str:
        return dns_label(self.spec.app.name)

    @property
    def image(self) -> str:
        if self.spec.deploy.image != "auto":
            return self.spec.deploy.image
        return f"{self.name}:{self.spec.app.version}"

    @property
    def nginx_image(self) -> str:
        # A registry may carry a port (registry:5000/shop): the tag is after the last slash.
        if ":" not in self.image.rsplit("/", 1)[-1]:
            return f"{self.image}-nginx"
        repository, _, tag = self.image.rpartition(":")
        return f"{repository}-nginx:{tag}"

    @property
    def protocol(self) -> Protocol:
        return "uwsgi" if self.server == "uwsgi" else "http"

    @property
    def app_port(self) -> int:
        return UWSGI_PORT if self.server == "uwsgi" else self.spec.deploy.app_port

    def app_env(self, *, behind_nginx: bool = True, bind: str | None = None) -> dict[str, str]:
        """FLASKPROD_* variables of the app container: what differs from the flaskprod.toml baked into the image."""
        values: dict[str, object] = {
            **carried_settings(self.spec, self.project.root),
            "app.target": self.project.app_target,
            # The image's working directory is not the project's, whose name the deployment goes by.
            "app.name": self.spec.app.name,
            "app.version": self.spec.app.version,
            "server.kind": self.server,
            "server.bind": bind or f"0.0.0.0:{self.app_port}",
            "proxy.trusted_hops": 1 if behind_nginx else 0,
            # The workers and pool the database budget was shared out for, among every replica: a container
            # sizing its own would count itself alone and take the whole budget.
            "server.workers": self.derived.workers,
            "database.pool_size": self.derived.pool.size,
            "database.max_overflow": self.derived.pool.overflow,
        }
        if self.server == "uwsgi":
            values["server.protocol"] = "uwsgi"
        return env_for(values)

    def nginx_files(
        self,
        upstream: str,
        *,
        metrics_port: int | None = None,
        metrics_allow: str | None = None,
        worker_processes: int | Literal["auto"] = "auto",
        tls: TlsFiles | None = None,
        trusted_proxies: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """nginx.conf and mime.types for the nginx image, forwarding to upstream (host:port or unix:path);
        metrics_port adds the scraper's own listener, open to metrics_allow (else the spec's list); tls, HTTPS;
        trusted_proxies, the addresses of a proxy in front that ends TLS."""
        ctx = NginxContext(
            host="0.0.0.0",
            port=NGINX_PORT,
            upstream=upstream,
            protocol=self.protocol,
            static_dir=STATIC_DIR if self.project.static_dir else None,
            conf_dir=NGINX_CONF_DIR,
            pid_file="/tmp/nginx.pid",
            temp_dir="/tmp",
            access_log="/dev/stdout",
            error_log="/dev/stderr",
            metrics_port=metrics_port,
            worker_processes=worker_processes,
            tls=tls,
            trusted_proxies=trusted_proxies,
        )
        return self.render_nginx(ctx, metrics_allow=metrics_allow)

    def render_nginx(self, ctx: NginxContext, *, metrics_allow: str | None = None) -> dict[str, str]:
        """nginx.conf and mime.types run as ctx says, with the static URL the app declared."""
        values: dict[str, object] = {"proxy.static_url": self.project.static_url}
        if metrics_allow is not None:
            values["monitoring.metrics_allow"] = metrics_allow
        return render_nginx(self.spec.replace(**values), self.derived, ctx)


def dns_label(name: str) -> str:
    """app.name as a DNS-1123 label (Kubernetes object and Compose service names): 'My_App' -> 'my-app'."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    if not label:
        raise BuildError(f"app.name {name!r} has no letters or digits to name the deployment by; set app.name")
    return label


# What build and up read and the app never does: not carried into its environment.
_BUILD_ONLY_SECTIONS = ("deploy", "release", "tls", "checks")


def carried_settings(spec: Spec, root: Path) -> dict[str, object]:
    """The settings the app must be told: set by a flag, an environment variable or a config file other
    than the project's own, which the image copies and reads. nginx and the manifests get these values
    from the build; without them the app would run on its defaults (a timeout, a body limit) and drift."""
    baked = find_config_file(root)
    own = f"file {baked}" if baked else None
    return {
        key: spec.get(key)
        for key, origin in spec.origins.items()
        if origin in ("flag", "env") or (origin.startswith("file ") and origin != own)
        if key.split(".", 1)[0] not in _BUILD_ONLY_SECTIONS and spec.get(key) is not None
    }


def app_static(spec: Spec, info: AppInfo) -> tuple[str | None, str]:
    """The folder nginx serves and the URL it serves it at: the spec's where set, else the app's own.

    An app that serves its static files from the root (static_url_path="") keeps them: nginx's / is the app's.
    """
    url_given = spec.origins.get("proxy.static_url", "default") != "default"
    if info.static_url_path == "" and not url_given and spec.proxy.static_dir is None:
        return None, spec.proxy.static_url
    url = info.static_url_path if info.static_url_path and not url_given else spec.proxy.static_url
    return spec.proxy.static_dir or info.static_folder, url


def container_machine(spec: Spec) -> Machine:
    """The CPUs and memory one app container is limited to: what its own `flaskprod serve` will detect."""
    return Machine(cpus=spec.deploy.cpus, memory=parse_size(spec.deploy.memory))


def size(spec: Spec, *, worker_mb: float | None, replicas: int) -> Derived:
    """Derived values for one container; the database budget is shared by every replica's workers."""
    return derive(spec, container_machine(spec), worker_mb=worker_mb, replicas=replicas)


def _relative(path: str | None, root: Path) -> str | None:
    if path is None or not Path(path).is_dir():
        return None
    try:
        return PurePosixPath(Path(path).resolve().relative_to(root.resolve())).as_posix()
    except ValueError:
        raise BuildError(
            f"static folder {path} is outside the project {root}: the image can only copy files under it; "
            "set proxy.static_dir to a folder inside the project"
        ) from None


def plan_deployment(
    spec: Spec,
    *,
    server: ServerKind,
    extras: frozenset[str] = frozenset(),
    root: Path | None = None,
    replicas: int | None = None,
    out: str = "deploy",
    environ: Mapping[str, str] | None = None,
) -> Deployment:
    """Find the project's facts (importing the app once, in a child) and size one container."""
    from ..servers.probe import probe_to_learn

    root = (root or Path.cwd()).resolve()
    requirements = requirements_file(spec.deploy.requirements, root)
    found = require_flaskprod(root, requirements)
    ref = discovery.resolve(spec.app.target, root)
    # The flags reach the app as they will in the container (a health path, a setting it reads at start).
    info = probe_to_learn(ref, {**(environ if environ is not None else {}), **env_for(spec.flagged())})
    mon = spec.monitoring
    unanswered = [path for path in (mon.health_path, mon.ready_path) if path not in info.served_paths]
    if unanswered:
        # Every target's health checks ask these: a container that never turns healthy keeps nginx from starting.
        raise BuildError(
            f"{info.import_string} does not answer {' or '.join(unanswered)}, which the deployment's health checks "
            "ask: add Production(app) where the app is created"
        )
    static_folder, static_url = app_static(spec, info)
    return Deployment(
        spec=spec,
        project=Project(
            root=root,
            app_target=ref.import_string,
            requirements=requirements,
            requirement_includes=found.includes if found else (),
            static_dir=_relative(static_folder, root),
            static_url=static_url,
        ),
        derived=size(spec, worker_mb=info.rss_mb, replicas=replicas or spec.deploy.replicas),
        server=server,
        extras=extras,
        out=out,
    )
