"""What every deployment target is rendered from: the spec, the project's facts, and the sizes of one container.

`plan_deployment` finds the facts (it imports the app once, in a child interpreter); the renderers
that read a Deployment are pure, so the same spec always writes the same files.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from .. import discovery
from ..errors import BuildError, SpecError
from ..sizing import Derived, Machine, derive, responder_port, worker_class
from ..spec import URL_PATH, Spec, env_for, find_config_file, parse_size
from .nginx import NginxContext, Protocol, StaticMount, TlsFiles, probe_host, render_nginx
from .requirements import names_installed, refuse_async_without_asgiref, require_flaskprod, requirements_file

if TYPE_CHECKING:
    from ..servers.probe import AppInfo, InstanceFacts

ServerKind = Literal["gunicorn", "uwsgi"]

# Where things live inside the images; the renderers of every target agree on these.
APP_DIR = "/app"
# The app image's virtualenv (its sys.prefix), which pip installs the requirements, or the project, into.
IMAGE_VENV = "/opt/venv"
STATIC_DIR = "/srv/static"  # each static folder in a folder of its own: /srv/static/<its Flask endpoint>
NGINX_CONF_DIR = "/etc/nginx"
# The unprivileged nginx image (uid 101) cannot bind below 1024.
NGINX_PORT = 8080
NGINX_IMAGE = "nginxinc/nginx-unprivileged:1.27-alpine"
NGINX_UID = 101  # that image's nginx user
# The app container's user: a fixed number, so Kubernetes can check runAsNonRoot without a name.
APP_UID = 10001
# Flask's endpoint of the app's own static files; a blueprint's is "<name>.static".
APP_STATIC = "static"
# Where pip installs packages: a blueprint's static folder there belongs to an installed package.
_PACKAGE_DIRS = frozenset({"site-packages", "dist-packages"})
# What a path must be made of to be named unquoted in a Dockerfile RUN, a Compose volume, a unit's ReadWritePaths=.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9_./@+-]*")


@dataclass(frozen=True, kw_only=True)
class InstanceFolder:
    """Where Flask's instance folder (app.instance_path) is once deployed: the one place the app may write, its
    user's, where the containers mount a volume (a SQLite file, uploads) over a read-only root file system.

    base says what path is relative to: the deployed copy of the project ("project": an app module or package at
    its root, Flask's <root>/instance), the virtualenv the app's package is installed into ("venv": Flask's
    <prefix>/var/<app.name>-instance), or nothing ("absolute": a folder the app chose itself).
    """

    base: Literal["project", "venv", "absolute"] = "project"
    path: str = "instance"

    def at(self, *, app_dir: str, venv: str) -> str:
        """The folder's path with the project copied to app_dir and the venv at venv."""
        if self.base == "absolute":
            return self.path
        return posixpath.normpath(f"{app_dir if self.base == 'project' else venv}/{self.path}")


@dataclass(frozen=True, kw_only=True)
class Project:
    """The user's project as the image needs it: paths are POSIX and relative to the project root."""

    root: Path
    app_target: str  # the import string the container runs, e.g. "wsgi:app"
    requirements: str | None  # None: the project installs itself from pyproject.toml
    requirement_includes: tuple[str, ...] = ()  # files requirements names with -r or -c, which pip reads too
    static: tuple[StaticMount, ...] = ()  # what nginx serves; folders relative to root
    app_module: str | None = None  # the app's top-level module file or package folder; None outside the project
    # The project folder the app's package is imported from besides the root (see import_dir): on PYTHONPATH there.
    import_dir: str | None = None


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """One target's inputs. derived is one app container sized from deploy.cpus and deploy.memory, its worker
    count fixed here and passed to `flaskprod serve` in that container (FLASKPROD_SERVER__WORKERS)."""

    spec: Spec
    project: Project
    derived: Derived
    server: ServerKind
    extras: frozenset[str]
    # Where the files go, relative to the project root (POSIX): images build from the root and
    # name their own files by this path.
    out: str = "deploy"
    instance: InstanceFolder = InstanceFolder()
    # What nginx answers besides proxy.server_name: the app's own SERVER_NAME host (AppInfo.nginx_names).
    app_names: tuple[str, ...] = ()
    websockets: bool = False  # the app has WebSocket routes (AppInfo.websocket_paths): nginx passes handshakes on
    mount_prefixes: tuple[str, ...] = ()  # the prefixes the app's routes are reached under (AppInfo.mount_prefixes)

    @property
    def instance_dir(self) -> str:
        """Flask's instance folder in the app image (see InstanceFolder)."""
        return self.instance.at(app_dir=APP_DIR, venv=IMAGE_VENV)

    @property
    def name(self) -> str:
        return dns_label(self.spec.app.name)

    @property
    def image(self) -> str:
        if self.spec.deploy.image != "auto":
            return self.spec.deploy.image
        # A tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}: a PEP 440 local version's + (2.0+local.7) is not.
        tag = re.sub(r"[^A-Za-z0-9_.-]", "-", self.spec.app.version).lstrip(".-")[:128] or "latest"
        return f"{self.name}:{tag}"

    @property
    def nginx_image(self) -> str:
        # A registry may carry a port (registry:5000/shop): the tag is after the last slash.
        if ":" not in self.image.rsplit("/", 1)[-1]:
            return f"{self.image}-nginx"
        repository, _, tag = self.image.rpartition(":")
        return f"{repository}-nginx:{tag}"

    @property
    def image_static(self) -> tuple[StaticMount, ...]:
        """The static mounts as the nginx image holds them: each folder copied to STATIC_DIR/<its endpoint>
        (/srv/static/static, /srv/static/admin.static), so no folder lands inside another."""
        return tuple(
            dataclasses.replace(mount, folder=f"{STATIC_DIR}/{quote(mount.endpoint, safe='')}")
            for mount in self.project.static
        )

    @property
    def protocol(self) -> Protocol:
        return "uwsgi" if self.server == "uwsgi" else "http"

    @property
    def app_port(self) -> int:
        """Where the app server listens in its container, whichever protocol it speaks: nginx's upstream, EXPOSE."""
        return self.spec.deploy.app_port

    @property
    def responder_port(self) -> int:
        """Where the app server answers scrapes beside its workers in its container (monitoring.metrics_responder):
        nginx's metrics upstream, and Compose's and Swarm's Prometheus targets."""
        return responder_port(self.app_port)

    def probe_host(self, asker: str) -> str:
        """The Host header asker (whose health check asks nginx) sends: a name nginx serves, derived from
        proxy.server_name or the app's own; a BuildError naming asker when every one is a ~regex."""
        host = probe_host((*self.spec.proxy.server_name.split(), *self.app_names))
        if host is None:
            raise BuildError(
                f"proxy.server_name {self.spec.proxy.server_name!r} has no plain host name for {asker} to send; "
                "add one such as the site's own name"
            )
        return host

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
            "proxy.trusted_hops": trusted_hops(self.spec) if behind_nginx else 0,
            # The workers and pool the database budget was shared out for, among every replica: a container
            # sizing its own would count itself alone and take the whole budget.
            "server.workers": self.derived.workers,
            "database.pool_size": self.derived.pool.size,
            "database.max_overflow": self.derived.pool.overflow,
        }
        if behind_nginx:
            # Scrapes are answered beside the workers, never queued behind requests: nginx's metrics locations pass
            # them there (render_nginx's responders). Facing clients, the app's own metrics path answers.
            values["monitoring.metrics_responder"] = True
            values.update(access_line_behind_nginx(self.spec))
        if self.server == "uwsgi":
            values["server.protocol"] = "uwsgi"
        if self.spec.server.worker_class != "auto":
            # The class the build sized for, also where auto chose it (gevent's for Flask-SocketIO on gevent).
            values["server.worker_class"] = self.spec.server.worker_class
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
        resolver: str | None = None,
    ) -> dict[str, str]:
        """nginx.conf and mime.types for the nginx image, forwarding to upstream (host:port or unix:path);
        metrics_port adds the scraper's own listener, open to metrics_allow (else the spec's list); tls, HTTPS;
        trusted_proxies, the addresses of a proxy in front that ends TLS; resolver, NginxContext.resolver."""
        ctx = NginxContext(
            host="0.0.0.0",
            port=NGINX_PORT,
            upstream=upstream,
            protocol=self.protocol,
            static=self.image_static,
            conf_dir=NGINX_CONF_DIR,
            pid_file="/tmp/nginx.pid",
            temp_dir="/tmp",
            access_log="/dev/stdout",
            error_log="/dev/stderr",
            metrics_port=metrics_port,
            worker_processes=worker_processes,
            tls=tls,
            trusted_proxies=trusted_proxies,
            resolver=resolver,
        )
        return self.render_nginx(ctx, metrics_allow=metrics_allow)

    def render_nginx(self, ctx: NginxContext, *, metrics_allow: str | None = None) -> dict[str, str]:
        """nginx.conf and mime.types run as ctx says."""
        spec = self.spec if metrics_allow is None else self.spec.replace(**{"monitoring.metrics_allow": metrics_allow})
        # Every app server behind a target's nginx answers scrapes beside its workers (app_env turns it on).
        ctx = dataclasses.replace(
            ctx,
            app_names=self.app_names,
            websockets=self.websockets,
            mount_prefixes=tuple(prefix for prefix in self.mount_prefixes if prefix),
            responders=True,
        )
        return render_nginx(spec, self.derived, ctx)


def access_line_behind_nginx(spec: Spec) -> dict[str, object]:
    """What the app server behind nginx (up's, every target's) is told of its access line: nginx writes one for each
    request with its request id, so the app writes none unless logging.access_log says true. Said outright, not left
    to auto, which reads proxy.trusted_hops = 0 as no proxy in front: a 0 the app gets some other way (up's explicit
    one, an operator's FLASKPROD_PROXY__TRUSTED_HOPS in the container) would log each request twice."""
    return {"logging.access_log": False} if spec.logging.access_log == "auto" else {}


def trusted_hops(spec: Spec) -> int:
    """The proxies the app behind nginx (a target's, or up's) trusts: nginx alone. nginx itself limits the rate,
    guards the metrics path and logs by the address that connects to it, so a proxy in front of nginx would be
    every client's address there while the app saw through it; and an app that trusts no proxy ignores nginx's
    X-Forwarded-* (the client, the scheme) and request id. A value set otherwise is refused, not overridden."""
    hops = spec.proxy.trusted_hops
    if spec.origins.get("proxy.trusted_hops", "default") == "default" or hops == 1:
        return 1
    if hops == 0:
        raise SpecError(
            "proxy.trusted_hops = 0, but nginx is in front of the app here, whose X-Forwarded-* headers (the client, "
            "the scheme) and request id it must trust: remove proxy.trusted_hops (1 is set) and any ProxyFix of the "
            "app's own, or pass --set proxy.trusted_hops=1"
        )
    raise SpecError(
        f"proxy.trusted_hops = {hops}, but nginx, the one proxy in front of the app here, rate-limits, guards the "
        "metrics path and logs by the address that connects to it, so a proxy in front of nginx would be every "
        "client there: remove proxy.trusted_hops (1 is set) or pass --set proxy.trusted_hops=1, and have what is in "
        "front pass the clients' connections through to nginx (a TCP load balancer)"
    )


def dns_label(name: str) -> str:
    """app.name as a DNS-1123 label (Kubernetes object and Compose service names): 'My_App' -> 'my-app'."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    if not label:
        raise BuildError(f"app.name {name!r} has no letters or digits to name the deployment by; set app.name")
    return label


# What build and up read and the app never does: not carried into its environment.
_BUILD_ONLY_SECTIONS = ("deploy", "release", "tls", "checks")
_BUILD_ONLY_KEYS = frozenset(
    {"monitoring.alert_webhook_url_file", "monitoring.alertmanager_port", "monitoring.metrics_port"}
)


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
        if key.split(".", 1)[0] not in _BUILD_ONLY_SECTIONS and key not in _BUILD_ONLY_KEYS
        if spec.get(key) is not None
    }


def app_static(spec: Spec, info: AppInfo) -> tuple[StaticMount, ...]:
    """The static folders nginx serves and their URLs, for `up` and every target: the app's own first (the spec's
    proxy.static_dir and proxy.static_url where set), then each blueprint's, in the order the app registered them.

    A mount is left to the app, which still serves it, when its folder does not exist, when its URL is no prefix
    nginx can name (an app or blueprint serving its files from the root, static_url_path="": nginx's / is the
    app's), or when an earlier mount has its URL (a blueprint without a url_prefix: Flask's router gives
    /static to the app as well). A URL under another's (/static/admin under /static) is kept: nginx picks the
    longest matching location, as Flask's router picks the longer rule.
    """
    url_given = spec.origins.get("proxy.static_url", "default") != "default"
    own: list[StaticMount] = []
    folder = spec.proxy.static_dir or info.static_folder
    if folder is not None and (info.static_url_path != "" or url_given or spec.proxy.static_dir is not None):
        own_url = info.mount_prefix + info.static_url_path if info.static_url_path else spec.proxy.static_url
        url = spec.proxy.static_url if url_given else own_url
        own.append(StaticMount(endpoint=APP_STATIC, url=url.rstrip("/"), folder=folder))
    # An app mounted under a prefix (runtime.mounted) has its static routes under it too.
    routed = (dataclasses.replace(mount, url=info.mount_prefix + mount.url) for mount in info.blueprint_static)
    mounts: dict[str, StaticMount] = {}
    for mount in (*own, *routed):
        if mount.url in mounts or not re.fullmatch(URL_PATH, mount.url) or not Path(mount.folder).is_dir():
            continue
        mounts[mount.url] = dataclasses.replace(mount, folder=str(Path(mount.folder).resolve()))
    return tuple(mounts.values())


def from_installed_package(folder: str) -> bool:
    """Whether folder belongs to an installed package (Flask-Admin's static files in site-packages)."""
    return not _PACKAGE_DIRS.isdisjoint(Path(folder).parts)


def instance_folder(facts: InstanceFacts | None, root: Path, *, installs_project: bool) -> InstanceFolder:
    """Where Flask's rule (auto_find_instance_path) puts app.instance_path once deployed, from where it found it here.

    The image (and a VM) imports the app with the project's root first on sys.path: a module found at the root here
    is found in the copy of the project there, beside <root>/instance; one found anywhere else (a src/ layout, a
    requirement) is the installed package, under the venv's var/. installs_project: the project installs itself
    from pyproject.toml, so its src/ is installed too. A folder the app chose is kept, in the copy when it is in the
    project; one inside an installed package is refused, since the venv is read-only and no volume reaches it.
    """
    if facts is None:
        return InstanceFolder()
    root = root.resolve()
    package = Path(facts.package_path).resolve() if facts.package_path is not None else root
    in_project = package.is_relative_to(root)
    installed = package != root and (facts.installed or installs_project or not in_project)
    if facts.chosen:
        chosen = Path(facts.path).resolve()
        if installed and chosen.is_relative_to(package):
            raise BuildError(
                f"the app's instance_path {facts.path} is inside its installed package, which the deployment "
                "installs read-only into a virtualenv where no volume reaches: leave instance_path to Flask, or "
                f"pass an absolute folder outside the package such as /var/lib/{facts.name.split('.')[0]}"
            )
        if chosen.is_relative_to(root):
            return _plain(InstanceFolder(path=PurePosixPath(chosen.relative_to(root)).as_posix()), facts.path)
        return _plain(InstanceFolder(base="absolute", path=chosen.as_posix()), facts.path)
    if package == root:
        return InstanceFolder()
    if installed:
        return _plain(InstanceFolder(base="venv", path=f"var/{facts.name}-instance"), facts.path)
    # A folder of the project the app puts on sys.path itself (sys.path.insert(0, "src") in wsgi.py).
    return _plain(InstanceFolder(path=f"{PurePosixPath(package.relative_to(root)).as_posix()}/instance"), facts.path)


def import_dir(facts: InstanceFacts | None, root: Path, *, installs_project: bool) -> str | None:
    """The project folder the app's package is imported from, relative to root, when the deployment must put it on
    sys.path itself: a src layout here on PYTHONPATH or installed editable, whose requirements file leaves the project
    out (the image and the VM install those, then import from their copy of the project, the root alone on sys.path).
    None: the package is at the root, installed (from pyproject.toml, or a requirement), or outside the project."""
    if facts is None or facts.package_path is None or facts.installed or installs_project:
        return None
    root = root.resolve()
    package = Path(facts.package_path).resolve()
    if package == root or not package.is_relative_to(root):
        return None
    return PurePosixPath(package.relative_to(root)).as_posix()


def _plain(folder: InstanceFolder, local: str) -> InstanceFolder:
    if not _PLAIN_PATH.fullmatch(folder.at(app_dir=APP_DIR, venv=IMAGE_VENV)):
        raise BuildError(
            f"the app's instance folder {local} has a character the deployment files cannot name unquoted "
            "(a space, a colon, a quote): pass Flask(instance_path=...) a plain absolute path such as /var/lib/app"
        )
    return folder


def container_machine(spec: Spec) -> Machine:
    """The CPUs and memory one app container is limited to: what its own `flaskprod serve` will detect."""
    return Machine(cpus=spec.deploy.cpus, memory=parse_size(spec.deploy.memory))


def size(spec: Spec, *, replicas: int, app_body_limit: int | None = None) -> Derived:
    """Derived values for one container; the database budget is shared by every replica's workers, and nginx's body
    limit is the app's MAX_CONTENT_LENGTH as it loaded (app_body_limit).

    A worker's memory is server.worker_memory_mb, else the default, as `up` assumes it: never the app as measured
    here. That is this machine's Python and allocator, not the image's, and its noise changed the worker count
    (4, or once in six builds 3) baked into the image, the pools and PostgreSQL's max_connections.
    """
    return derive(spec, container_machine(spec), replicas=replicas, app_body_limit=app_body_limit)


def _in_project(mount: StaticMount, root: Path) -> StaticMount | None:
    """mount with its folder relative to root, as the images copy it and a VM's copy of the project holds it.

    A blueprint's folder outside the project or in an installed package is left to the app (the image has the
    package, and the app serves it); the app's own folder outside the project is refused.
    """
    try:
        relative = Path(mount.folder).resolve().relative_to(root.resolve())
    except ValueError:
        if mount.endpoint != APP_STATIC:
            return None
        raise BuildError(
            f"static folder {mount.folder} is outside the project {root}: the image can only copy files under it; "
            "set proxy.static_dir to a folder inside the project"
        ) from None
    if mount.endpoint != APP_STATIC and from_installed_package(mount.folder):
        return None
    return dataclasses.replace(mount, folder=PurePosixPath(relative).as_posix())


def _app_module(ref: discovery.AppRef, root: Path) -> str | None:
    """Where the app's top-level module is, relative to root: a package's folder or a module's file."""
    top = Path(ref.path) / ref.module.split(".")[0]
    path = top if top.is_dir() else top.with_suffix(".py")
    try:
        return PurePosixPath(path.resolve().relative_to(root)).as_posix()
    except ValueError:
        return None


def _replicas(spec: Spec) -> int:
    return spec.deploy.replicas


def plan_deployment(
    spec: Spec,
    *,
    server: ServerKind,
    server_chosen: bool = False,
    extras: frozenset[str] = frozenset(),
    root: Path | None = None,
    replicas: Callable[[Spec], int] | None = None,
    out: str = "deploy",
    environ: Mapping[str, str] | None = None,
) -> Deployment:
    """Find the project's facts (importing the app once, in a child) and size one container.

    server_chosen: server.kind was auto, and the target runs either server: an app with WebSocket routes gets
    Gunicorn, which can hand them the client's connection. replicas: the app containers that can run at once,
    among which the database budget is shared, for the spec as the app needs it (default: deploy.replicas).
    """
    from ..servers.greenlets import worker_uninstalled
    from ..servers.probe import probe_to_learn
    from ..servers.websockets import (
        for_conversations,
        on_one_replica,
        replicas_problem,
        socketio_mode_uninstalled,
        socketio_mode_where,
        websocket_problem,
    )

    root = (root or Path.cwd()).resolve()
    requirements = requirements_file(spec.deploy.requirements, root)
    found = require_flaskprod(root, requirements)
    ref = discovery.resolve(spec.app.target, root)
    # The flags reach the app as they will in the container (a health path, a setting it reads at start).
    env = {**(environ if environ is not None else {}), **env_for(spec.flagged())}
    info = probe_to_learn(ref, env, bound=spec.proxy.ready_timeout)
    refuse_async_without_asgiref(info.async_views, root, requirements)
    if info.websocket_paths and server_chosen:
        server = "gunicorn"
    # What the image installs decides Flask-SocketIO's async_mode there, where SocketIO() does not name one.
    installed = names_installed(root, requirements)
    socketio = socketio_mode_where(info, installed)
    problem = socketio_mode_uninstalled(info, installed, requirements or "pyproject.toml")
    spec = for_conversations(on_one_replica(spec, socketio), info.websocket_paths, socketio=socketio)
    served = spec.replace(**{"server.kind": server})
    problem = problem or websocket_problem(served, info.websocket_paths, socketio=socketio)
    problem = problem or replicas_problem(spec, socketio)
    if server == "gunicorn":
        problem = problem or worker_uninstalled(worker_class(served), installed, requirements or "pyproject.toml")
    if problem:
        raise BuildError(problem)
    mon = spec.monitoring
    unanswered = [path for path in (mon.health_path, mon.ready_path) if path not in info.served_paths]
    if unanswered:
        # Every target's health checks ask these: a container that never turns healthy keeps nginx from starting.
        raise BuildError(
            f"{info.import_string} does not answer {' or '.join(unanswered)}, which the deployment's health checks "
            "ask: add Production(app) where the app is created"
        )
    static = (_in_project(mount, root) for mount in app_static(spec, info))
    return Deployment(
        spec=spec,
        project=Project(
            root=root,
            app_target=ref.import_string,
            requirements=requirements,
            requirement_includes=found.includes if found else (),
            static=tuple(mount for mount in static if mount is not None),
            app_module=_app_module(ref, root),
            import_dir=import_dir(info.instance, root, installs_project=requirements is None),
        ),
        derived=size(spec, replicas=(replicas or _replicas)(spec), app_body_limit=info.max_content_length),
        server=server,
        extras=extras,
        out=out,
        instance=instance_folder(info.instance, root, installs_project=requirements is None),
        app_names=info.nginx_names,
        websockets=bool(info.websocket_paths),
        mount_prefixes=info.mount_prefixes,
    )
