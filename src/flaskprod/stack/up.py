"""`flaskprod up`: render nginx.conf, start nginx and the app server, wait for readiness, supervise."""

from __future__ import annotations

import dataclasses
import http.client
import os
import pwd
import queue
import re
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO, TypeVar

from .. import discovery
from ..errors import FlaskprodError, ServerError, SpecError
from ..exits import APP_SERVER_EXITS, exit_fields
from ..plural import counted
from ..render import TlsFiles, render_nginx
from ..render.deployment import access_line_behind_nginx, app_static, from_installed_package, trusted_hops
from ..render.nginx import Protocol, StaticMount, listen_address, server_name_host, server_names
from ..render.targets import split_extras
from ..servers import resolve_kind
from ..servers.common import DRAIN_FILE_ENV, MULTIPROC_ENV, check_bind, loopback_for
from ..servers.probe import AppInfo, probe, read_record
from ..servers.websockets import for_conversations, named, websocket_problem
from ..sizing import GREENLET_CLASSES, Derived, derive, max_body_bytes, responder_bind
from ..spec import CONFIG_ENV, PROBE_RECORD_ENV, Spec, env_for, find_config_file, refuse_endpoints_under
from .acme import OBTAIN_TIMEOUT, RELOAD_RETRY, Acme, Certbot
from .alertmanager import Alertmanager, plan_alertmanager
from .children import Child
from .control import ControlServer, Request
from .log import EventLog, let_go
from .nginx import check_config, find_nginx, foreground_command, version
from .postgres import RESTART_ONLY as POSTGRES_RESTART_ONLY
from .postgres import Postgres, plan_postgres
from .prometheus import READY_PATH, Prometheus, plan_prometheus
from .prometheus import RESTART_ONLY as MONITORING_RESTART_ONLY
from .release import ReleaseCommand, command_env
from .releases import RELEASES_AT_ONCE, Release, Releases, exclude_patterns
from .rundir import Claim, StackDir, repoint
from .tls import kept_self_signed, self_signed_for, tls_for_up

# Variables a parent's own stack would leak into ours: its metrics directory and its drain file.
_NOT_INHERITED = (MULTIPROC_ENV, DRAIN_FILE_ENV)
# Seconds the stop sequence adds to a graceful timeout before it kills what is left.
STOP_MARGIN = 5.0
# How often the main loop looks at its children when no signal arrives.
TICK = 0.5
# Seconds nginx reuses a connection it keeps to the app server (NginxContext.upstream_keepalive_time), where its
# version has keepalive_time (1.19.10): a reconnect every few seconds costs nothing that counts.
UPSTREAM_KEEPALIVE_TIME = 5
KEEPALIVE_TIME_SINCE = (1, 19, 10)
# Seconds past monitoring.check_timeout that up and deploy wait for the app's answer (its readiness checks are cut
# off at check_timeout): asking again sooner finds the first run of a slow check still going, which the app answers
# 503 ("previous run still in progress") and logs as failing, so a check slower than the wait never let up be ready.
ANSWER_MARGIN = 3.0
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_HANDLED = (*_STOP_SIGNALS, signal.SIGHUP, signal.SIGCHLD)
# What `up --with` can add.
UP_EXTRAS = ("monitoring", "postgres")
# What `build --with` adds that `up` does another way.
UP_INSTEAD = {
    "logging": "the app's JSON lines go to up's stdout and nginx's to the access log its table names, for a "
    "shipper on this machine to read",
    "tls": "give it --tls self-signed, files or acme",
}
# Not a signal: put among them when a request arrives on the control socket, so the main loop wakes for it.
WAKE = 0

T = TypeVar("T")


class Stopping(FlaskprodError):
    """Told to stop (SIGTERM, Ctrl-C) while a step waited: `up` stops gracefully, a deploy is abandoned."""


def parse_up_extras(values: tuple[str, ...]) -> frozenset[str]:
    """--with a,b (repeatable) checked against what `up` can add."""
    extras = split_extras(values)
    unknown = sorted(extras - set(UP_EXTRAS))
    if unknown and unknown[0] in UP_INSTEAD:
        raise SpecError(f"--with {unknown[0]} is for `flaskprod build`; under `flaskprod up` {UP_INSTEAD[unknown[0]]}")
    if unknown:
        raise SpecError(f"--with {unknown[0]}: unknown for `flaskprod up`; choose from {', '.join(UP_EXTRAS)}")
    return frozenset(extras)


def behind_nginx(spec: Spec) -> Spec:
    """The spec as `up` runs it: nginx is the one trusted proxy hop, as behind every target's nginx; but an
    explicit 0 stands, leaving nginx's X-Forwarded-* to a ProxyFix of the app's own (FP-C008's way out)."""
    if spec.proxy.trusted_hops == 0 and spec.origins.get("proxy.trusted_hops", "default") != "default":
        return spec
    return spec.replace(**{"proxy.trusted_hops": trusted_hops(spec)})


@dataclass(frozen=True, kw_only=True)
class Plan:
    """Everything decided before a process starts; each value derived once."""

    spec: Spec
    derived: Derived
    app: discovery.AppRef
    run: StackDir
    nginx_binary: str
    protocol: Protocol
    app_env: Mapping[str, str]
    root: Path  # the project: each release is a copy of it
    tls: TlsFiles | None = None
    acme: Acme | None = None
    prometheus: Prometheus | None = None  # --with monitoring
    alertmanager: Alertmanager | None = None  # --with monitoring: where Prometheus sends what fires
    postgres: Postgres | None = None  # --with postgres
    release: Release | None = None  # the release nginx sends requests to
    canary: tuple[Release, int] | None = None  # `deploy --canary N`: a newer release and its percent of them
    returns_to: int | None = None  # the release a deploy or promote replaced: where `rollback` returns
    # What loading the app showed (the paths it answers, its static folders); learn_app's to find.
    loaded: AppInfo | None = None
    # server.kind was auto: learn_app picks Gunicorn instead of uWSGI for an app with WebSocket routes.
    server_chosen: bool = False
    config_file: Path | None = None  # the project's flaskprod.toml (or pyproject.toml) the spec was read from
    # Which of its two sockets each release's app server listens on (0 unless a reload replaced it): see socket.
    generations: Mapping[int, int] = dataclasses.field(default_factory=dict)
    # Which of the two serving links nginx.conf reaches the serving release through (StackDir.serving_socket).
    link: int = 0

    @property
    def answer_timeout(self) -> float:
        """Seconds to wait for an answer from the app: its readiness checks may take monitoring.check_timeout."""
        return self.spec.monitoring.check_timeout + ANSWER_MARGIN

    def socket(self, release: Release) -> Path:
        """Where release's app server listens."""
        return self.run.app_socket(release.number, self.generations.get(release.number, 0))

    def drain_file(self, release: Release) -> Path:
        return self.run.drain_file(release.number, self.generations.get(release.number, 0))

    def record(self, release: Release) -> Path:
        """Where release's app server records what its probe learned as it started (PROBE_RECORD_ENV)."""
        return self.socket(release).with_suffix(".json")

    def app_info(self, release: Release) -> AppInfo | None:
        """The app as release's app server loaded it (that server's record), else as `up` learned it at start."""
        return read_record(self.record(release)) or self.loaded

    @property
    def app_names(self) -> tuple[str, ...]:
        """What nginx answers besides proxy.server_name: the SERVER_NAME host of each running release's app, as its
        app server loaded it, so a release that calls itself by a new name is answered by it."""
        names = (name for release in self.running if (info := self.app_info(release)) for name in info.nginx_names)
        return tuple(dict.fromkeys(names))

    @property
    def websockets(self) -> bool:
        """Whether a running release's app has WebSocket routes, as its app server loaded it: nginx passes their
        handshakes on."""
        return any(info.websocket_paths for release in self.running if (info := self.app_info(release)))

    @property
    def mount_prefixes(self) -> tuple[str, ...]:
        """The prefixes each running release's app mounts itself under, as its app server loaded it."""
        infos = (info for release in self.running if (info := self.app_info(release)))
        prefixes = (prefix for info in infos for prefix in info.mount_prefixes)
        return tuple(dict.fromkeys(prefix for prefix in prefixes if prefix))

    @property
    def body_limit(self) -> int:
        """nginx's body limit: the MAX_CONTENT_LENGTH each running release's app loaded with, as its app server
        recorded it (as app_names), so a deploy or SIGHUP that changes it changes nginx's too."""
        infos = (self.app_info(release) for release in self.running)
        return max_body_bytes(self.spec, [info.max_content_length if info else None for info in infos])

    def request_host(self, release: Release) -> str:
        """The Host of `up`'s own requests to release (its readiness): the app's SERVER_NAME as set, port and all,
        which an app that routes that host alone answers (with subdomain matching; any SERVER_NAME before Flask
        3.1), and which nginx answers too; else the first name nginx answers."""
        info = self.app_info(release)
        if info is not None and info.server_name and server_name_host(info.server_name):
            return info.server_name.strip()
        return self.host_header

    def point_links(self, scraped_too: Mapping[int, Path] | None = None) -> None:
        """Repoint this plan's serving links (StackDir.serving_socket, StackDir.serving_folder) at its release, each
        atomically: nginx's next connection through them goes to its app server, its next scrape to that one's
        responder, its next static file comes from its folder. scraped_too: the scrape links of releases a switch
        leaves, kept until they stop (Prometheus drops their targets within its discovery throttle)."""
        assert self.release is not None
        socket, serving = self.socket(self.release), self.run.serving_socket(self.link)
        links = {
            serving: socket.name,
            _responder(serving): _responder(socket).name,
            self.run.serving_folder(self.link): os.path.relpath(self.release.path, self.run.path),
        }
        for link, target in links.items():
            repoint(link, target)
        if self.prometheus:  # Prometheus scrapes each running release apart (Prometheus.write_targets), a canary too
            self.run.point_scrapes({**(scraped_too or {}), **self.scrape_responders()})

    def scrape_responders(self) -> dict[int, Path]:
        """Each running release's metrics responder, by release number."""
        return {r.number: _responder(self.socket(r)) for r in self.running}

    @property
    def upstream_keepalive_time(self) -> int | None:
        """How long nginx reuses a connection it keeps to the app server, where its version can bound it: then it
        has closed every one to an app server a switch moved away from within that, and the switch needs no
        reload of nginx to be rid of them (deploy.quiet_switch)."""
        return UPSTREAM_KEEPALIVE_TIME if version(self.nginx_binary) >= KEEPALIVE_TIME_SINCE else None

    def static_served(self) -> tuple[StaticMount, ...]:
        """What nginx serves from disk: the serving release's static folders through its serving link, so a switch to
        another release changes no path in nginx.conf; while a canary runs, the canary's own (its pages may ask for
        files new in it)."""
        assert self.release is not None
        if self.canary:
            return self.static_in(self.canary[0])
        return self.static_in(dataclasses.replace(self.release, path=self.run.serving_folder(self.link)))

    def with_new_app_server(self, release: Release) -> Plan:
        """The plan with release served by a second app server, on its other socket, beside the one running."""
        return dataclasses.replace(
            self, generations={**self.generations, release.number: 1 - self.generations.get(release.number, 0)}
        )

    def app_serves(self, path: str) -> bool:
        """Whether the app answers GET on path (Production(app)'s probes and metrics, its own routes)."""
        return self.loaded is None or path in self.loaded.served_paths

    def static_in(self, release: Release) -> tuple[StaticMount, ...]:
        """What nginx serves from disk for release: the project's static folders from its copy in release, an
        installed package's (a blueprint of Flask-Admin's) from where it is. Derived from the spec each time,
        so a reload applies an edited proxy.static_url or proxy.static_dir."""
        if self.loaded is None:
            return ()
        return tuple(
            mount
            if from_installed_package(mount.folder)
            else dataclasses.replace(mount, folder=self.in_release(release, mount.folder))
            for mount in app_static(self.spec, self.loaded)
        )

    def is_ready(self, status: int) -> bool:
        """Whether an answer on the readiness path means ready. Without a readiness endpoint, any answer the
        app gives itself (a 404) shows it loaded and serving; nginx's 502 and 504 mean it gave none."""
        return status == 200 if self.app_serves(self.spec.monitoring.ready_path) else status < 500

    def in_release(self, release: Release, path: str) -> str:
        """path as release has it: what lies inside the project was copied into every release."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return path
        return str(release.path / relative)

    @property
    def releases(self) -> Releases:
        return Releases(self.run.releases_dir)

    @property
    def running(self) -> list[Release]:
        """The releases nginx sends requests to: one, or two while a canary runs."""
        assert self.release is not None
        return [self.release, *([self.canary[0]] if self.canary else [])]

    @property
    def url(self) -> str:
        # Bound to a wildcard, nginx still closes requests for names it does not serve (the loopback
        # address among them): show the first name it answers to. An ACME certificate names only those.
        host = self.spec.proxy.host
        if loopback_for(host) != host or self.acme:
            host = self.host_header
        scheme, port, default = ("https", self.tls.port, 443) if self.tls else ("http", self.spec.proxy.port, 80)
        return f"{scheme}://{listen_address(host, port).removesuffix(f':{default}')}"

    @property
    def host_header(self) -> str:
        return server_names(self.spec, self.spec.proxy.host)[0]


def app_server_env(spec: Spec, app: discovery.AppRef, derived: Derived) -> dict[str, str]:
    """The app server's environment: the spec `up` sees, plus what `up` decides about the app server.

    Values the user set by flag travel as FLASKPROD_* variables (the child has no flags); the
    worker count is pinned to the one nginx's upstream and the table were sized for; the drain
    delay is spent at the edge, before nginx stops listening, so the app server adds none.
    """
    values = spec.flagged()
    values.update(
        {
            "app.target": app.import_string,
            # A release runs from its own copy of the project, whose directory would name it "1".
            "app.name": spec.app.name,
            "app.version": spec.app.version,
            "server.kind": spec.server.kind,
            "server.workers": derived.workers,
            # Each process's share of database.connection_budget with two releases running (deploy, canary).
            "database.pool_size": derived.pool.size,
            "database.max_overflow": derived.pool.overflow,
            "server.drain_delay": 0,
            "proxy.trusted_hops": spec.proxy.trusted_hops,
            # Scrapes are answered beside the workers, never queued behind requests: nginx passes them there
            # (StackDir.nginx_context).
            "monitoring.metrics_responder": True,
        }
    )
    # nginx is in front, writing each request's access line, whatever proxy.trusted_hops says.
    values.update(access_line_behind_nginx(spec))
    if spec.server.kind == "uwsgi":
        values["server.protocol"] = "uwsgi"
    # server.bind and the drain file are each release's own: see release_env.
    env = {k: v for k, v in os.environ.items() if k not in _NOT_INHERITED}
    env.update(env_for(values))
    return env


def plan(
    spec: Spec,
    run: StackDir,
    *,
    claim: Callable[[Iterable[Path]], None],
    config_path: str | None = None,
    extras: frozenset[str] = frozenset(),
) -> Plan:
    """Check the input and decide everything; raises a FlaskprodError naming what to fix.

    claim is called once every check that needs no file has passed, before anything is made: it makes and holds
    the run directory, and is given the other places this run may make.
    """
    if spec.origins.get("server.bind") == "flag":
        raise SpecError(
            "--bind sets where the app server listens; under `up` it listens on a unix socket in "
            "proxy.run_dir behind nginx: use --host and --port for the address nginx listens on"
        )
    server_chosen = spec.server.kind == "auto"
    spec = resolve_kind(behind_nginx(spec), behind_nginx=True)
    app = discovery.resolve(spec.app.target)
    refuse_code_of_another_project(app, Path.cwd().resolve())
    nginx_binary = find_nginx(spec.proxy.nginx)
    check_bind(listen_address(spec.proxy.host, spec.proxy.port), instead="--port PORT")
    acme = Acme.from_spec(spec) if spec.tls.mode == "acme" else None
    # A user's own certificate is checked here, before anything is made; a self-signed one (ACME's stand-in too)
    # is made once the run directory is held.
    makes_tls = spec.tls.mode in ("self-signed", "acme")
    tls = None if makes_tls else tls_for_up(spec, run.tls_dir, server_names(spec, spec.proxy.host), acme)
    https = spec.tls.mode != "off"
    if https:
        check_bind(listen_address(spec.proxy.host, spec.tls.port), instead="--tls-port PORT")
    nginx_ports = {"proxy.port": spec.proxy.port, **({"tls.port": spec.tls.port} if https else {})}
    prometheus = plan_prometheus(spec, nginx_ports) if "monitoring" in extras else None
    alertmanager = plan_alertmanager(spec) if "monitoring" in extras else None
    derived = derive(spec, replicas=RELEASES_AT_ONCE)
    postgres = plan_postgres(spec, derived) if "postgres" in extras else None
    config_file = Path(config_path).resolve() if config_path else find_config_file(Path.cwd())
    # Nothing is made before this: a mistake found above leaves no trace. The app's instance folder is made in the
    # project when it has none (new_release); --with postgres and --tls acme make their directories.
    claim([*predicted_instance_folders(app), *[made.directory for made in (postgres, acme) if made is not None]])
    if makes_tls:
        tls = tls_for_up(spec, run.tls_dir, server_names(spec, spec.proxy.host), acme)
    if config_file is not None:
        copy_config(config_file, run)
    env = plan_env(spec, app, derived, run=run, config_file=config_file, postgres=postgres)
    return Plan(
        spec=spec,
        derived=derived,
        app=app,
        run=run,
        root=Path.cwd().resolve(),
        nginx_binary=nginx_binary,
        protocol="uwsgi" if spec.server.kind == "uwsgi" else "http",
        app_env=env,
        server_chosen=server_chosen,
        config_file=config_file,
        tls=tls,
        acme=acme,
        prometheus=prometheus,
        alertmanager=alertmanager,
        postgres=postgres,
    )


def plan_env(
    spec: Spec, app: discovery.AppRef, derived: Derived, *, run: StackDir, config_file: Path | None,
    postgres: Postgres | None,
) -> dict[str, str]:
    """The app server's environment (app_server_env), with the config copy its workers read and --with postgres's
    database."""
    env = app_server_env(spec, app, derived)
    if config_file is not None:
        # Every release's workers read the run dir's copy of the project's config, the one nginx was rendered
        # from: SIGHUP renews it once the edit checks out, so a bad edit never reaches a worker that restarts.
        env[CONFIG_ENV] = str(config_copy(config_file, run))
    if postgres:
        env[spec.database.url_env] = postgres.url
        env.pop(spec.database.password_file_env, None)
    return env


def config_copy(source: Path, run: StackDir) -> Path:
    """Where the workers read the config file: in the run dir, under its own name (a pyproject.toml's settings are
    in [tool.flaskprod])."""
    return run.path / source.name


def copy_config(source: Path, run: StackDir) -> Path:
    """The config file copied where the workers read it (config_copy), replaced in one step."""
    target = config_copy(source, run)
    staged = target.with_name(f".{target.name}.new")
    staged.write_bytes(source.read_bytes())
    staged.replace(target)
    return target


def learn_app(p: Plan, check: Callable[[], None] | None = None) -> Plan:
    """The plan completed by loading the app once in a child process: the paths it answers, its static folders.

    After --with postgres has started: an app may touch its database as it loads (creating its tables). check is
    called while it loads (see probe).
    """
    loaded = probe(p.app, p.app_env, bound=p.spec.proxy.ready_timeout, check=check, told_later=True)
    learnt = dataclasses.replace(p, loaded=loaded)
    refuse_endpoints_under_static(learnt.spec, learnt.loaded)
    paths = learnt.loaded.websocket_paths if learnt.loaded else ()
    socketio = learnt.loaded.socketio_mode if learnt.loaded else None
    learnt = for_websockets(learnt, paths, socketio=socketio)
    problem = websocket_problem(learnt.spec, paths, socketio=socketio)
    if problem:
        raise SpecError(problem)
    return learnt


def for_websockets(p: Plan, paths: Sequence[str], *, socketio: str | None) -> Plan:
    """p as an app with WebSocket routes needs it (servers/websockets.py), where auto left the choice to flaskprod:
    Gunicorn for uWSGI, which cannot hand them the client's connection; threads for the conversations; one worker
    for Flask-SocketIO (socketio: its async_mode), of the gevent class when it runs on gevent."""
    spec = for_conversations(p.spec, paths, socketio=socketio)
    if paths and p.server_chosen and spec.server.kind == "uwsgi":
        spec = spec.replace(**{"server.kind": "gunicorn"})
    if spec == p.spec:
        return p
    derived = derive(spec, replicas=RELEASES_AT_ONCE)
    env = plan_env(spec, p.app, derived, run=p.run, config_file=p.config_file, postgres=p.postgres)
    protocol: Protocol = "uwsgi" if spec.server.kind == "uwsgi" else "http"
    return dataclasses.replace(p, spec=spec, derived=derived, protocol=protocol, app_env=env)


def refuse_endpoints_under_static(spec: Spec, loaded: AppInfo | None) -> None:
    """SpecError when an endpoint's path is under a static URL of the app: nginx would answer it from disk, and
    `up`'s own readiness wait (or the scraper) would never reach the app."""
    if loaded is not None:
        refuse_endpoints_under(spec, ((mount.url, mount.endpoint) for mount in app_static(spec, loaded)))


def new_release(p: Plan) -> Release:
    """Copy the project into the next release. The app's instance folder is made in the project if it has
    none, so what the app writes there is shared by every release rather than lost with one."""
    folder = instance_folder(p)
    if folder is not None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only project: was a traceback
            raise ServerError(
                f"cannot make the app's instance folder {folder}: {exc.strerror}; every release "
                "shares it from the project, so make it there once (or run from a project you can write)"
            ) from None
    p.run.check_release(p.releases.next_number(), scrapes=p.prometheus is not None)
    return p.releases.create(
        p.root,
        excludes=exclude_patterns(p.spec.release.exclude),
        skip=[p.run.path, *([p.acme.directory] if p.acme else [])],
        max_mb=p.spec.release.max_mb,
    )


def refuse_code_of_another_project(app: discovery.AppRef, root: Path) -> None:
    """SpecError when the app's package is imported from another project's folder (`pip install -e` of a checkout
    elsewhere, up run from the wrong folder): each release would copy this folder, holding none of the code served,
    so a deploy would ship nothing and a reload would serve that checkout's unshipped edits. A package installed
    into an environment (site-packages) is no project's: a release holds its config, the environment its code."""
    found = discovery.import_root(app)
    if found is None or found.resolve().is_relative_to(root) or any(map(_environment_part, found.parts)):
        return
    marked = (d for d in (found, *found.parents) if any((d / name).is_file() for name in discovery.PROJECT_FILES))
    project = next(marked, None)
    if project is None:
        return
    top = app.module.partition(".")[0]
    raise SpecError(
        f"{top!r} is imported from {found}, in the project {project}, not from {root}, which up copies into each "
        f"release (so deploy would ship none of its code): run flaskprod up in {project}"
    )


def instance_folder(p: Plan) -> Path | None:
    """Where in the project Flask keeps the app's instance folder, as the app loaded there: beside the folder its
    package is imported from (src/instance for a src layout), not always the app's own folder; None when that lies
    outside the project (an installed package's <prefix>/var/<name>-instance), which no release copies."""
    facts = p.loaded.instance if p.loaded is not None else None
    folder = Path(facts.path) if facts is not None else Path(p.app.path) / "instance"
    return folder if folder.resolve().is_relative_to(p.root) else None


def predicted_instance_folders(app: discovery.AppRef) -> list[Path]:
    """The instance folders new_release may make, known before the app loads, for a failed start to take back:
    in the app's folder, and in the folder its package is imported from (a src layout's src/), as Flask finds it."""
    found = discovery.import_root(app)
    return list(dict.fromkeys([Path(app.path) / "instance", *([found / "instance"] if found is not None else [])]))


def _responder(socket: Path) -> Path:
    """The metrics responder's socket beside an app server's (sizing.responder_bind)."""
    return Path(responder_bind(f"unix:{socket}").removeprefix("unix:"))


def release_env(p: Plan, release: Release) -> dict[str, str]:
    """The app server's environment for release: its own socket, and the release's copy on sys.path first."""
    env = {**p.app_env, **env_for({"server.bind": f"unix:{p.socket(release)}"})}
    env[DRAIN_FILE_ENV] = str(p.drain_file(release))
    env[PROBE_RECORD_ENV] = str(p.record(release))
    app_dir = p.in_release(release, p.app.path)
    path = [app_dir, *project_import_dirs(p, release), p.app_env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(filter(None, path)))
    if Path(app_dir) != release.path and Path(app_dir).is_relative_to(release.path):
        # The server runs from the release's root (see app_server_dir): the app is named by its path from there, as
        # `flask --app src/shop` names it, so its folder comes first on sys.path and a module of the same name at
        # the root does not shadow it.
        module = Path(app_dir, *p.app.module.split(".")).relative_to(release.path)
        target = str(module) + (f":{p.app.name}" if p.app.name is not None else "")
        env.update(env_for({"app.target": target}))
    return env


def app_server_dir(p: Plan, release: Release) -> Path:
    """Where release's app server runs: the release's copy of the project, where the user runs `flask run` and
    `flask db upgrade`, so what the app finds from the current folder (Flask-Migrate's migrations/) is found, also
    for an app named by a path into a folder of it (src/shop). An app from outside the project runs from its own."""
    app_dir = Path(p.in_release(release, p.app.path))
    return release.path if app_dir.is_relative_to(release.path) else app_dir


def project_import_dirs(p: Plan, release: Release) -> list[str]:
    """release's copies of the project's folders that imports search besides the app's own: where the app's package
    is found (discovery.import_root), and what else of the project is on sys.path. A src layout installed with
    `pip install -e .` puts the working tree's src/ there, so without its copy first the release would run the
    working tree's code, shipped or not, and a rollback would not go back."""
    found = discovery.import_root(p.app)
    folders = [Path(folder).resolve() for folder in [*([str(found)] if found is not None else []), *sys.path] if folder]
    # The project's own folder is the app's (first already) or above it: put first, its modules would shadow others.
    inside = [folder.relative_to(p.root) for folder in folders if folder.is_relative_to(p.root) and folder != p.root]
    # Not an environment's own folders (a conda env kept in the project: its lib/python3.11, site-packages), which
    # would come ahead of the standard library; the release does not hold a virtualenv or the run folder either.
    copies = (release.path / folder for folder in inside if not any(map(_environment_part, folder.parts)))
    return [str(copy) for copy in copies if copy.is_dir()]


def _environment_part(name: str) -> bool:
    return name in ("site-packages", "dist-packages") or re.fullmatch(r"python\d+\.\d+", name) is not None


def nginx_files(p: Plan) -> dict[str, str]:
    """{file name: text} of nginx's config for the plan: nginx.conf and the mime.types it includes."""
    # Workers run as the user who ran `up`: they read that user's static files and socket.
    user = pwd.getpwuid(os.geteuid()).pw_name if os.geteuid() == 0 else None
    assert p.release is not None
    ctx = p.run.nginx_context(
        # Through the serving links (Plan.point_links): the same for every release, so a switch may skip the reload.
        upstream=p.run.serving_socket(p.link),
        canary=(p.socket(p.canary[0]), p.canary[1]) if p.canary else None,
        host=p.spec.proxy.host,
        port=p.spec.proxy.port,
        protocol=p.protocol,
        static=p.static_served(),
        user=user,
        tls=p.tls,
        metrics=p.prometheus.scrape_listen if p.prometheus else None,
    )
    # nginx answers the host the app calls itself (its SERVER_NAME) too, and a self-signed certificate names it.
    ctx = dataclasses.replace(
        ctx,
        app_names=p.app_names,
        websockets=p.websockets,
        mount_prefixes=p.mount_prefixes,
        upstream_keepalive_time=p.upstream_keepalive_time,
    )
    return render_nginx(p.spec, dataclasses.replace(p.derived, max_body_bytes=p.body_limit), ctx)


def write_nginx_config(p: Plan) -> None:
    """Render nginx.conf for the plan, test it with `nginx -t`, and only then put it in place.

    A rejected config never replaces the one nginx runs (or would restart) with.
    """
    put_back_tls = kept_tls(p)
    if p.tls is not None and p.spec.tls.mode == "self-signed":
        self_signed_for(p.run.tls_dir, server_names(p.spec, p.spec.proxy.host, p.app_names))
    files = nginx_files(p)
    candidate = p.run.nginx_conf.with_name(p.run.nginx_conf.name + ".new")
    candidate.write_text(files.pop(p.run.nginx_conf.name))
    for name, text in files.items():
        (p.run.path / name).write_text(text)
    try:
        check_config(p.nginx_binary, p.run, candidate)
    except ServerError:
        candidate.unlink()
        put_back_tls()  # the certificate made for the names of the config refused
        raise
    os.replace(candidate, p.run.nginx_conf)


def kept_tls(p: Plan) -> Callable[[], None]:
    """What puts the self-signed certificate of p's nginx (--tls self-signed) back as it is now, once a change that
    made it again for new names is not applied; nothing to put back in the other modes."""
    if p.tls is not None and p.spec.tls.mode == "self-signed":
        return kept_self_signed(p.run.tls_dir)
    return lambda: None


# Settings a reload cannot change: they decide which processes run, and where.
RESTART_ONLY = (
    "app.target",
    "server.kind",
    "server.workers",
    "proxy.host",
    "proxy.port",
    "proxy.run_dir",
    "proxy.nginx",
    "tls.mode",
    "tls.port",
    "tls.acme_server",
    "tls.acme_dir",
)


def replan(current: Plan, spec: Spec) -> Plan:
    """The plan for a reloaded spec, keeping what only a restart may change; SpecError naming those."""
    spec = behind_nginx(spec)
    # What auto chose at start stands: Gunicorn for an app with WebSocket routes, threads for their conversations,
    # one worker for Flask-SocketIO, gevent's when it runs on gevent.
    for key in ("server.kind", "server.workers", "server.conversation_threads", "server.worker_class"):
        if spec.get(key) == "auto":
            spec = spec.replace(**{key: current.spec.get(key)})
    changed = [key for key in RESTART_ONLY if spec.get(key) != current.spec.get(key)]
    if current.acme and spec.proxy.server_name != current.spec.proxy.server_name:
        changed.append("proxy.server_name (the certificate's names)")
    if current.prometheus:
        changed += [key for key in MONITORING_RESTART_ONLY if spec.get(key) != current.spec.get(key)]
    if current.postgres:
        changed += [key for key in POSTGRES_RESTART_ONLY if spec.get(key) != current.spec.get(key)]
    if changed:
        raise SpecError(f"{', '.join(changed)} changed: restart `flaskprod up` to apply")
    refuse_endpoints_under_static(spec, current.loaded)
    # The worker count nginx's upstream and the app server were sized for stays.
    derived = dataclasses.replace(derive(spec, replicas=RELEASES_AT_ONCE), workers=current.derived.workers)
    tls = current.tls
    if spec.tls.mode == "files":
        # The user's certificate, renewed under a new name or in place (Let's Encrypt's live/ links): checked as at
        # start, then nginx presents it.
        tls = tls_for_up(spec, current.run.tls_dir, [])
    return dataclasses.replace(current, spec=spec, derived=derived, tls=tls)


class _LoopbackTls(http.client.HTTPSConnection):
    """HTTPS to our own nginx on loopback, naming the site in SNI: nginx refuses a handshake for a name
    it does not serve (an address among them). Its identity is not in question, so it is not verified."""

    def __init__(self, host: str, port: int, *, server_name: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl._create_unverified_context())
        self.server_name = server_name

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.server_name)  # type: ignore[attr-defined]


class Stack:
    """The supervisor. Signal handlers only record; the main loop dispatches (as Gunicorn's arbiter does)."""

    def __init__(
        self,
        p: Plan,
        reload_spec: Callable[[], Spec] | None = None,
        *,
        keep: Callable[[Path], None] = lambda path: None,
    ) -> None:
        self.plan = p
        self.reload_spec = reload_spec
        # Given a path this run made that a start which fails or is stopped leaves in place (Claim.keep).
        self.keep = keep
        self.log = EventLog(p.spec.logging.format)
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        # One app server per running release, by release number: two while a deploy switches or a canary runs.
        self.app_servers: dict[int, Child] = {}
        # An app server a reload replaces, from the start of its successor until it is stopped.
        self.retiring: list[Child] = []
        # A SIGHUP came while a canary ran: its app server replacement is owed once the canary ends.
        self.reload_held = False
        # SIGQUIT is nginx's graceful stop: close the listeners, finish every request in flight.
        self.nginx = Child(
            name="nginx",
            command=foreground_command(p.nginx_binary, p.run),
            stop_signal=signal.SIGQUIT,  # graceful: it finishes the requests it holds
            quick_signal=signal.SIGTERM,
            serves=self.nginx_listening,
        )
        # nginx.conf as nginx last read it (start_nginx, reload_nginx): a switch to a file that is the same needs no
        # reload (deploy.switch), where nginx.conf itself may already hold what a reload has yet to apply.
        self.nginx_loaded = ""
        # --with monitoring: Prometheus, scraping the app through nginx, and the Alertmanager it sends alerts to.
        self.prometheus = p.prometheus.child(p.run, p.spec.logging.format) if p.prometheus else None
        self.alertmanager = p.alertmanager.child(p.run, p.spec.logging.format) if p.alertmanager else None
        # --with postgres: the database, started first and stopped last.
        self.postgres = p.postgres.child() if p.postgres else None
        self.postgres_lock: IO[str] | None = None  # database.local_dir, held while this `up` runs PostgreSQL there
        # `flaskprod deploy` and `rollback`, waiting for the main loop (which WAKE in signals announces).
        self.requests: queue.SimpleQueue[Request] = queue.SimpleQueue()
        # What the main loop is doing for a request or a SIGHUP, and by when it is done at most: a request that
        # comes meanwhile is told at once, from the control socket's thread, what it waits for.
        self.busy: tuple[str, float] | None = None
        self.control: ControlServer | None = None
        self.served = False  # True once the table is printed: from then on, what the run made stays
        self.last_answer = "no answer yet"
        # --tls acme: certbot's runs (certonly at start, renew later) and the certificate nginx serves.
        self.certbot = Certbot(p.acme, p.run.logs_dir / "certbot.log") if p.acme else None

    @property
    def children(self) -> tuple[Child, ...]:
        """In start order; stopped in reverse."""
        return (
            *([self.postgres] if self.postgres else []),
            *self.app_servers.values(),
            *self.retiring,
            self.nginx,
            *([self.alertmanager] if self.alertmanager else []),
            *([self.prometheus] if self.prometheus else []),
        )

    def start_app_server(self, release: Release, p: Plan | None = None) -> Child:
        """The app server of release, from its copy of the project, on its own socket (p's, by default up's)."""
        p = p or self.plan
        p.socket(release).unlink(missing_ok=True)  # left by a server that was killed
        p.record(release).unlink(missing_ok=True)  # its record, as it loaded an earlier state of the config
        child = Child(
            name=f"app server ({p.spec.server.kind})",
            command=[sys.executable, "-m", "flaskprod", "serve"],
            stop_signal=signal.SIGTERM,
            quick_signal=signal.SIGINT,  # serve's Ctrl-C: Gunicorn's quick shutdown, uWSGI's brutal one
            env=release_env(p, release),
            cwd=app_server_dir(p, release),
            listens_on=p.socket(release),
            exit_meanings=APP_SERVER_EXITS.get(p.spec.server.kind, {}),
        )
        self.app_servers[release.number] = child
        child.start()
        return child

    def run_release_command(self, release: Release, p: Plan | None = None) -> str | None:
        """deploy.release_command, once, in release's copy of the project with its app server's environment, the
        running release supervised meanwhile; what to report of it (None when there is none to run). ServerError
        when it fails or outlives deploy.release_timeout; Stopping when told to stop first."""
        p = p or self.plan
        argv = p.spec.deploy.release_argv
        if not argv:
            return None
        timeout = p.spec.deploy.release_timeout
        command = ReleaseCommand(argv, release.number, p.run.logs_dir / f"release-{release.number}.log")
        self.log(f"running the release command `{command.shown}` in release {release.number}")
        started = time.monotonic()
        env = command_env(release_env(p, release), p.app.import_string)
        # From the project's copy, where the user runs `flask db upgrade` (migrations/ is there), also for an app
        # named by a path into a folder of it (src/shop).
        command.start(env, release.path)
        try:
            # watched=[]: no child's death ends this wait; every other child is supervised as the main loop would.
            done = self.wait_until(
                command.finished, started + timeout, subject=f"the release command of release {release.number}",
                watched=[],
            )
        except ServerError:
            command.stop()
            raise command.timed_out(timeout) from None
        finally:
            if not command.finished():
                command.stop()
        if not done:
            raise Stopping(f"stopped during the release command of release {release.number}")
        seconds = time.monotonic() - started
        command.check(seconds)
        report = f"the release command `{command.shown}` ran in {seconds:.1f}s (its output: {command.log})"
        self.log(report, release=release.number, duration=round(seconds, 3))
        return report

    def start_nginx(self) -> None:
        self.nginx_loaded = self.plan.run.nginx_conf.read_text()
        self.nginx.start()

    def nginx_listening(self) -> bool:
        """Whether the nginx running now has bound its ports: it writes its pid file once it has (a killed one's is
        left, naming another pid)."""
        try:
            return int(self.plan.run.nginx_pid.read_text()) == self.nginx.pid
        except (OSError, ValueError):
            return False

    def reload_nginx(self) -> None:
        """A graceful reload: nginx reads nginx.conf again, as it now is."""
        self.nginx_loaded = self.plan.run.nginx_conf.read_text()
        self.nginx.send(signal.SIGHUP)

    def stop_app_server(self, number: int, child: Child | None = None) -> None:
        """Gracefully: it finishes the requests it holds, within the app server's own grace. The app server of
        release number, or child, one of that release's that a reload replaced."""
        child = child or self.app_servers.pop(number)
        grace = self.plan.derived.timeouts.graceful + STOP_MARGIN
        child.restart_at = None
        child.send(child.stop_signal)
        if not child.wait(grace):
            self.log(f"{child.name} of release {number} did not stop within {grace:g}s; killing it", level="warning")
        child.kill_group()
        if child.listens_on is not None:
            child.listens_on.unlink(missing_ok=True)
            child.listens_on.with_suffix(".json").unlink(missing_ok=True)  # Plan.record: what it loaded
        if child.env and DRAIN_FILE_ENV in child.env:  # its drain file: readiness of what is gone, left for ever
            Path(child.env[DRAIN_FILE_ENV]).unlink(missing_ok=True)

    # -- signals ---------------------------------------------------------------------------

    def _record(self, sig: int, frame: FrameType | None) -> None:
        self.signals.put_nowait(sig)

    def install_handlers(self) -> None:
        for sig in _HANDLED:
            signal.signal(sig, self._record)

    def restore_handlers(self) -> None:
        for sig in _HANDLED:
            signal.signal(sig, signal.SIG_DFL)

    def submit(self, request: Request) -> None:
        """From the control socket's thread: the client is told at once by when the request ends at most (so it
        can give up on an up that never answers); the main loop runs it."""
        from .deploy import longest

        takes = longest(self.plan, request) * (1 + self.requests.qsize())  # and each request queued before it
        if (busy := self.busy) is not None:
            what, until = busy
            left = max(until - time.monotonic(), 0)
            request.progress(f"waiting for {what} in progress, which ends within {left:.0f}s", within=left + takes)
        else:
            request.progress(None, within=takes)
        self.requests.put(request)
        self.signals.put(WAKE)

    def handle_requests(self) -> None:
        from . import deploy  # which builds on this module

        while True:
            try:
                request = self.requests.get_nowait()
            except queue.Empty:
                return
            deploy.handle(self, request)

    def reloaded_plan(self) -> Plan:
        """The plan for the spec's sources read again (a deploy ships the config file's changes too)."""
        return replan(self.plan, self.reload_spec()) if self.reload_spec is not None else self.plan

    def raise_if_told_to_stop(self) -> None:
        """Stopping when a stop signal is queued; any other signal queued stays for the main loop."""
        held: list[int] = []
        try:
            while (sig := self.next_signal(0)) is not None:
                if sig in _STOP_SIGNALS:
                    raise Stopping("told to stop")
                held.append(sig)
        finally:
            for sig in held:
                self.signals.put(sig)

    def next_signal(self, timeout: float) -> int | None:
        try:
            return self.signals.get(timeout=timeout)
        except queue.Empty:
            return None

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        self.install_handlers()
        try:
            # nginx starts once the app server listens, so it never logs refused connections at boot.
            deadline = time.monotonic() + self.plan.spec.proxy.ready_timeout
            if self.postgres is not None and not self.start_postgres(deadline):
                return self.stopped_before_ready()
            try:
                self.prepare()
            except Stopping:
                self.log("stopped while the app loaded")
                return self.stopped_before_ready()
            first = self.plan.release
            assert first is not None
            try:
                self.run_release_command(first)
            except Stopping:
                return self.stopped_before_ready()
            except ServerError:
                self.plan.releases.remove(first.number)  # it never served: no rollback goes to it
                raise
            # The readiness wait starts once the release command (a migration that may take minutes) is done.
            deadline = time.monotonic() + self.plan.spec.proxy.ready_timeout
            self.start_app_server(first)
            if not self.wait_until(lambda: self.app_socket_accepts(self.plan.socket(first)), deadline):
                return self.stopped_before_ready()
            self.start_nginx()
            if not self.wait_until(self.ready_through_nginx, deadline):
                return self.stopped_before_ready()
            if self.certbot is not None and not self.obtain_certificate(self.certbot):
                return self.stopped_before_ready()
            if self.prometheus is not None and not self.start_prometheus(deadline):
                return self.stopped_before_ready()
            self.control = ControlServer(self.plan.run.control_socket, self.submit)
            # Only now that this release serves may the oldest go: a start that fails leaves them all.
            self.plan.releases.prune(self.plan.spec.release.keep, running=self.plan.running)
            self.served = True
            self.print_table()
            while True:
                sig = self.next_signal(TICK)
                if sig in _STOP_SIGNALS:
                    return self.handle_term()
                if sig == signal.SIGHUP:
                    self.handle_hup()
                if sig == WAKE:
                    self.handle_requests()
                self.supervise()
        except BaseException:
            self.stop(graceful=False)
            raise
        finally:
            self.restore_handlers()
            if self.control is not None:
                self.control.close()

    def stopped_before_ready(self) -> int:
        """A stop asked for before the stack served: what started is stopped at once (an app server still loading
        the app held no request, and would have taken graceful_timeout), and the exit is 0, as after."""
        self.stop(graceful=False)
        self.log("stopped")
        return 0

    def wait_until(
        self,
        condition: Callable[[], bool],
        deadline: float,
        *,
        subject: str = "the app",
        endpoint: str | None = None,
        watched: Sequence[Child] | None = None,
    ) -> bool:
        """True once condition() holds; False when told to stop first; ServerError if a watched child dies (by
        default, any) or time runs out. Children not watched are supervised meanwhile, as the main loop would:
        a deploy waiting for its new release is no reason to fail for, or stop restarting, a crashed old one.

        The errors name subject and the endpoint it must answer 200 on (by default, its readiness through nginx).
        """
        p = self.plan
        endpoint = endpoint or f"{p.spec.monitoring.ready_path} through nginx"
        held: list[int] = []  # a SIGHUP or a request that came meanwhile: the main loop's, once this wait is over
        try:
            while time.monotonic() < deadline:
                for child in self.children if watched is None else watched:
                    status = child.exit_status()
                    if status is not None:
                        raise ServerError(
                            f"{child.name} {child.describe_exit(status)} before {endpoint} answered 200; its "
                            "error is above"
                        )
                if watched is not None:
                    self.supervise([child for child in self.children if child not in watched])
                if condition():
                    return True
                sig = self.next_signal(0.1)
                if sig in _STOP_SIGNALS:
                    self.log(f"stopped before {subject} was ready")
                    held = [WAKE] if WAKE in held else []  # no reload on the way out; a request is told it failed
                    return False
                if sig in (signal.SIGHUP, WAKE) and sig not in held:
                    held.append(sig)
        finally:
            for sig in held:
                self.signals.put(sig)
        raise ServerError(
            f"{subject} was not ready within proxy.ready_timeout = {p.spec.proxy.ready_timeout}s: "
            f"{endpoint} last answered: {self.last_answer}"
        )

    def app_socket_accepts(self, path: Path) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            try:
                sock.connect(str(path))
            except OSError as exc:
                self.last_answer = f"the app server is not listening yet ({exc.strerror})"
                return False
        return True

    def ready_through_nginx(self) -> bool:
        p = self.plan
        try:
            code, body = self.get(p.spec.monitoring.ready_path, host=p.request_host(p.running[0]))
        except OSError as exc:
            self.last_answer = f"{type(exc).__name__}: {exc}"
            return False
        self.last_answer = f"{code} {' '.join(body.split())[:400]}"
        return self.plan.is_ready(code)

    def prepare(self) -> None:
        """Learn the app, copy the project into a release, and write the configs that follow from both; Stopping
        when told to stop while the app loads."""
        p = learn_app(self.plan, check=self.raise_if_told_to_stop)
        chosen = []
        if p.spec.server.kind != self.plan.spec.server.kind:
            chosen.append("Gunicorn serves it, as uWSGI cannot hand them the client's connection")
        if p.spec.server.workers != self.plan.spec.server.workers:
            chosen.append("one worker, as Flask-SocketIO keeps each client's session in the process that opened it")
        if p.spec.server.worker_class != self.plan.spec.server.worker_class:
            chosen.append(f"Gunicorn's {p.spec.server.worker_class} worker, as Flask-SocketIO runs on gevent here")
        if p.derived.threads != self.plan.derived.threads:
            chosen.append(f"{p.derived.threads} threads a worker, as each open conversation holds one")
        if chosen and p.loaded:
            self.log(f"the app has WebSocket routes ({named(p.loaded.websocket_paths)}): {'; '.join(chosen)}")
        if not p.app_serves(p.spec.monitoring.ready_path):
            self.log(
                f"{p.app.import_string} does not answer {p.spec.monitoring.ready_path}: any answer from it counts as "
                "ready, and it has no health, metrics or JSON logs; add Production(app) where the app is created",
                level="warning",
            )
        p = dataclasses.replace(p, release=new_release(p))
        write_nginx_config(p)
        p.point_links()
        if p.prometheus:
            p.prometheus.write_config(p.run, p.spec, p.derived)
            p.prometheus.write_targets(p.run, p.spec, (release.number for release in p.running))
        if p.alertmanager:
            p.alertmanager.write_config(p.run, p.spec)
        self.plan = p

    def start_postgres(self, deadline: float) -> bool:
        """Start PostgreSQL (made by initdb on the first run) and the app's database; True once it accepts, False
        when told to stop first."""
        postgres, child = self.plan.postgres, self.postgres
        assert postgres is not None and child is not None
        try:
            self.postgres_lock, made = self.interruptible(postgres.prepare)
        except Stopping:
            self.log("stopped before postgres was ready")  # initdb, stopped, removed what it had made
            return False
        # A whole cluster outlives a start that fails or is stopped: it is kept between runs, and initdb's seconds
        # are not spent again (the rest this run made goes).
        self.keep(postgres.directory)
        if made:
            self.log(f"initdb made a PostgreSQL cluster in {postgres.data_dir}")
        child.start()

        def ready() -> bool:
            answered, self.last_answer = postgres.ready(child.pid)
            return answered

        if not self.wait_until(ready, deadline, subject="postgres", endpoint=f"{postgres.data_dir}/postmaster.pid"):
            return False
        try:
            created = self.interruptible(postgres.ensure_database)
        except Stopping:
            self.log("stopped before postgres was ready")
            return False
        if created:
            self.log(f"created the database {postgres.name}, owned by the role {postgres.name}")
        return True

    def interruptible(self, step: Callable[[], T]) -> T:
        """step(), which runs programs in `up`'s process group (initdb, psql): a terminal's Ctrl-C reaches them as it
        reaches `up`, and they fail of it. Stopping when a stop signal came meanwhile: the failure is its doing."""
        try:
            return step()
        except ServerError:
            self.raise_if_told_to_stop()
            raise

    def start_prometheus(self, deadline: float) -> bool:
        """Start Alertmanager, then Prometheus once nginx serves, so its first scrape finds the app and its first
        alert a receiver; True once both are ready."""
        prometheus, alertmanager = self.plan.prometheus, self.plan.alertmanager
        assert prometheus is not None and alertmanager is not None
        assert self.prometheus is not None and self.alertmanager is not None
        for name, server, child in (
            ("alertmanager", alertmanager, self.alertmanager),
            ("prometheus", prometheus, self.prometheus),
        ):
            child.start()

            def ready(server: Alertmanager | Prometheus = server) -> bool:
                answered, self.last_answer = server.ready()
                return answered

            if not self.wait_until(ready, deadline, subject=name, endpoint=f"{server.url}{READY_PATH}"):
                return False
        return True

    def https(self, tls: TlsFiles) -> _LoopbackTls:
        p = self.plan
        address = loopback_for(p.spec.proxy.host)
        return _LoopbackTls(address, tls.port, server_name=p.host_header, timeout=p.answer_timeout)

    def get(self, path: str, *, host: str | None = None) -> tuple[int, str]:
        """GET path through nginx, naming host (by default, the first name nginx answers)."""
        p = self.plan
        conn: http.client.HTTPConnection
        if p.tls:
            conn = self.https(p.tls)
        else:
            address = loopback_for(p.spec.proxy.host)
            conn = http.client.HTTPConnection(address, p.spec.proxy.port, timeout=p.answer_timeout)
        try:
            conn.request("GET", path, headers={"Host": host or p.host_header})
            response = conn.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        finally:
            conn.close()

    # -- --tls acme ----------------------------------------------------------------------------

    def obtain_certificate(self, certbot: Certbot) -> bool:
        """certbot certonly through the running nginx; then nginx serves the certificate. False when told to stop."""
        acme = certbot.acme
        placeholder = self.plan.tls is not None and self.plan.tls.cert != str(acme.cert)
        if placeholder:
            self.log(f"asking {acme.server} for a certificate for {' '.join(acme.names)}")
        certbot.start(acme.obtain_command())
        deadline = time.monotonic() + OBTAIN_TIMEOUT
        while (status := certbot.poll()) is None:
            if time.monotonic() > deadline:
                certbot.stop()
                raise ServerError(f"certbot did not finish within {OBTAIN_TIMEOUT:g}s; its output: {certbot.log}")
            if self.next_signal(0.1) in _STOP_SIGNALS:
                certbot.stop()
                self.log("stopped before the certificate was issued")
                return False
        if status != 0:
            raise acme.failure(certbot.reason(), self.plan.spec.proxy.port)
        if not placeholder:
            return True  # a certificate certonly renewed in place is watch_certificate's to reload
        certbot.serving()
        assert self.plan.tls is not None
        tls = dataclasses.replace(self.plan.tls, cert=str(acme.cert), key=str(acme.key))
        new_plan = dataclasses.replace(self.plan, tls=tls)
        write_nginx_config(new_plan)
        self.plan = new_plan
        before = self.nginx.own_children()
        self.reload_nginx()
        reloaded = time.monotonic()

        def served_by_new_workers_only() -> bool:
            # A new worker may answer while the old ones, with the placeholder, have not yet closed
            # their listening sockets: wait for them to exit, or for a second (one that a client's
            # keep-alive connection holds has long stopped accepting by then).
            old_left = bool(before & self.nginx.own_children()) and time.monotonic() < reloaded + 1.0
            return not old_left and self.serves(acme.cert)

        if not self.wait_until(served_by_new_workers_only, reloaded + self.plan.spec.proxy.ready_timeout):
            return False
        self.log(f"certificate issued for {' '.join(acme.names)}; nginx serves it")
        return True

    def serves(self, cert: Path) -> bool:
        """Whether nginx's HTTPS port presents cert (the first in its chain) now."""
        assert self.plan.tls is not None
        first = cert.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
        conn = self.https(self.plan.tls)
        try:
            conn.connect()
            assert isinstance(conn.sock, ssl.SSLSocket)
            served = conn.sock.getpeercert(binary_form=True)
        except OSError as exc:
            self.last_answer = f"{type(exc).__name__}: {exc}"
            return False
        finally:
            conn.close()
        self.last_answer = "nginx still presents the certificate it started with"
        return served == ssl.PEM_cert_to_DER_cert(first)

    def watch_certificate(self, certbot: Certbot, now: float) -> None:
        """Run `certbot renew` twice a day, and reload nginx whenever the certificate changed."""
        status = certbot.poll()
        if status:
            self.log(f"certbot renew failed: {certbot.reason()}; trying again in 12 h", level="error")
        certbot.renew_if_due(now)
        version = certbot.unserved(now)
        if version is None:
            return
        try:
            check_config(self.plan.nginx_binary, self.plan.run)
        except FlaskprodError as exc:
            self.log(f"certificate renewed, but nginx not reloaded: {exc}; trying again in {RELOAD_RETRY:g}s",
                     level="error")
            return
        self.reload_nginx()
        certbot.serving(version)
        self.log("certificate renewed; nginx reloaded to serve it")

    def supervise(self, children: Sequence[Child] | None = None) -> None:
        """Restart, with backoff, a child (of children, by default all) that died on its own; keep the ACME
        certificate fresh."""
        now = time.monotonic()
        if self.certbot is not None:
            self.watch_certificate(self.certbot, now)
        for child in self.children if children is None else children:
            status = child.exit_status()
            if status is not None and child.restart_at is None:
                child.unannounced = False
                # Its workers may outlive a killed master and hold the socket or the port.
                child.kill_group()
                delay = child.schedule_restart(now)
                self.log(
                    f"{child.name} (pid {child.pid}) {child.describe_exit(status)}; restarting in {delay:g}s",
                    level="error",
                    child=child.name,
                    **exit_fields(status),
                    restart_in=delay,
                )
            if child.restart_at is not None and now >= child.restart_at:
                if child is self.nginx:
                    self.start_nginx()  # onto nginx.conf as it is now, which a switch compares with
                else:
                    child.start()
                child.unannounced = True
            # Said once it serves again: an nginx that cannot bind its port exits instead (logged above, next time).
            if child.unannounced and child.exit_status() is None and child.listening():
                child.unannounced = False
                self.log(
                    f"{child.name} restarted (pid {child.pid})",
                    level="warning",
                    child=child.name,
                    pid=child.pid,
                    restarts=child.restarts,
                )

    def handle_hup(self) -> None:
        """Reload both: nginx starts new workers on a checked config, and a new app server replaces the running
        one. While a canary runs, nginx alone: the app servers' replacement waits for the canary to end."""
        # A new app server of the release starts beside the running one, as a deploy does, and nginx reloads once,
        # onto the new config and the new server together. The app servers' own reloads fall short: both keep the
        # settings they started with (Gunicorn's worker timeout, uWSGI's harakiri and mercy), where nginx and the
        # app take the edited ones; uWSGI's waits for every request in hand before its master loads the app again,
        # queueing the rest. Beside a canary a third app server would exceed the budget the database's connections
        # are counted for (two releases), so the replacement is held until promote or rollback leaves one.
        canary = self.plan.canary[0].number if self.plan.canary else None
        # nginx reloads beside a canary; else only if its config changed (deploy.switch), which the end's line says.
        self.log("reloading the app server, and nginx if its config changed" if canary is None else "reloading nginx")
        reloaded = "nginx and the app server" if canary is None else "nginx"
        from . import deploy  # which builds on this module

        before, conf_before = self.plan, self.plan.run.nginx_conf.read_text()
        put_back: Callable[[], None] | None = None  # of the config copy, once replaced
        put_back_tls = kept_tls(self.plan)  # the self-signed certificate, made again for new names
        try:
            if self.reload_spec is not None:
                # The config file and environment are read again; nginx.conf follows them.
                new_plan = replan(self.plan, self.reload_spec())
                write_nginx_config(new_plan)
                if canary is None:  # the copy the new app server reads
                    put_back = deploy.ship_config(new_plan)
                self.plan = new_plan
            else:
                check_config(self.plan.nginx_binary, self.plan.run)
        except FlaskprodError as exc:
            # A config that cannot apply reloads nothing: a new app server would only restart the running config.
            # nginx.conf is put back should the config copy have failed after it was replaced.
            self.put_back_nginx_conf(conf_before)
            put_back_tls()
            self.log(f"{reloaded} not reloaded, the running config stays: {exc}", level="error")
            return
        if canary is not None:
            self.reload_nginx()
            self.reload_prometheus()
            self.reload_held = True
            self.log(
                f"the app servers keep the config they started with while canary release {canary} runs (a third "
                "beside them would exceed the database connections counted for two): `flaskprod deploy --promote` "
                "or `flaskprod rollback` ends it, and the app server left is then replaced",
                level="warning",
            )
            return
        self.reload_held = False
        release = self.plan.running[0]
        self.busy = (f"SIGHUP's reload of release {release.number}", time.monotonic() + deploy.longest(self.plan, None))
        try:
            deploy.reload_app_server(self, release)
        except FlaskprodError as exc:
            # The running stack stays exactly as it was: nginx (never reloaded), the nginx.conf and certificate a
            # restarted nginx reads, the config copy a restarted worker reads, and Prometheus's rules, none taking
            # half the edit.
            self.plan = before
            if put_back is not None:
                put_back()
            self.put_back_nginx_conf(conf_before)
            put_back_tls()  # the certificate and key nginx presents, which a restarted nginx would read
            self.log(
                f"app server of release {release.number} not reloaded: {exc}; nginx, its config and the app server "
                "stay as they were",
                level="error",
            )
            return
        finally:
            self.busy = None
        self.reload_prometheus()

    def put_back_nginx_conf(self, text: str) -> None:
        """nginx.conf back to text (what it was before a reload that failed), in one step."""
        conf = self.plan.run.nginx_conf
        if conf.read_text() != text:
            staged = conf.with_name(f"{conf.name}.new")
            staged.write_text(text)
            staged.replace(conf)

    def apply_held_reload(self, request: Request) -> None:
        """Once a canary has ended: a SIGHUP that came while it ran replaces the app server left, as the main
        loop's next step (as one held during a wait is applied after it)."""
        if self.reload_held:
            self.reload_held = False
            message = (
                f"a new app server of release {self.plan.running[0].number} replaces the running one next: the "
                "SIGHUP that came during the canary is applied"
            )
            self.log(message)
            request.progress(message)
            self.signals.put(signal.SIGHUP)

    def reload_prometheus(self) -> None:
        """Its alert rules follow the reloaded spec (server.timeout, workers, threads): SIGHUP makes it read them.
        Alertmanager reads its config again when the webhook's URL (its file, or the file's text) changed."""
        p = self.plan
        if self.prometheus is not None and p.prometheus is not None:
            p.prometheus.write_config(p.run, p.spec, p.derived)
            self.prometheus.send(signal.SIGHUP)
        if self.alertmanager is not None and p.alertmanager is not None:
            try:
                changed = p.alertmanager.write_config(p.run, p.spec)
            except FlaskprodError as exc:
                self.log(f"alertmanager not reloaded, its running config stays: {exc}", level="error")
                return
            if changed:
                self.log("reloading alertmanager: the webhook's URL changed")
                self.alertmanager.send(signal.SIGHUP)

    def handle_term(self) -> int:
        """Graceful stop: readiness 503, the drain delay, nginx finishes what it accepted, then the app server."""
        drain = self.plan.spec.server.drain_delay
        said = f"readiness answers 503 for {drain:g}s, then " if drain else ""
        self.log(f"shutting down gracefully: {said}requests in flight finish")
        for release in self.plan.running:
            self.plan.drain_file(release).touch()
        cut = self._keep_serving(drain)
        if cut:
            self.log("told to stop again: stopping at once", level="warning")
        self.stop(graceful=not cut)
        self.log("stopped")
        return 0

    def _keep_serving(self, seconds: float) -> bool:
        """Supervise for the drain delay; whether a second stop signal cut it short."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if self.next_signal(min(left, TICK)) in _STOP_SIGNALS:
                return True
            self.supervise()
        return False

    def stop(self, *, graceful: bool = True) -> None:
        """In reverse start order: Prometheus (a stack going down on purpose is no outage to record), Alertmanager,
        nginx, so nothing new reaches the app server, then the app server; then whatever is left."""
        if self.certbot is not None:
            self.certbot.stop()
        for child in reversed(self.children):
            child.restart_at = None
            graceful = self._stopped(child, graceful)
            child.kill_group()
        if self.postgres_lock is not None:  # its PostgreSQL has stopped: another `up` may start one there
            self.postgres_lock.close()
        # Nothing runs now: its sockets, records, drain files and the links to them are no one's (the releases stay).
        self.plan.run.tidy()

    def _stopped(self, child: Child, graceful: bool) -> bool:
        """Stop child, gracefully or at once, and wait (a warning if it had to be killed); whether the stop is
        still graceful. A stop signal meanwhile (a second Ctrl-C) makes it quick, for child and those after it."""
        grace = self.plan.derived.timeouts.graceful + STOP_MARGIN if graceful else child.quick_grace
        child.send(child.stop_signal if graceful else child.quick_signal or child.stop_signal)
        deadline = time.monotonic() + grace
        while not child.wait(min(TICK, max(deadline - time.monotonic(), 0))):
            if time.monotonic() >= deadline:
                self.log(f"{child.name} did not stop within {grace:g}s; killing it", level="warning")
                break
            if graceful and self.told_to_stop_again():
                self.log(f"told to stop again: stopping {child.name} and the rest at once", level="warning")
                grace, graceful = child.quick_grace, False
                child.send(child.quick_signal or child.stop_signal)
                deadline = time.monotonic() + grace
        return graceful

    def told_to_stop_again(self) -> bool:
        """Whether a stop signal is among those queued (the rest mean nothing on the way out)."""
        stop = False
        while (sig := self.next_signal(0)) is not None:
            stop = stop or sig in _STOP_SIGNALS
        return stop

    def print_table(self) -> None:
        p, d, spec = self.plan, self.plan.derived, self.plan.spec
        assert p.release is not None
        url = p.url
        # gevent's worker runs a greenlet a request, however many threads the spec gives.
        workers = f"{counted(d.workers, 'worker')} x {counted(d.threads, 'thread')}"
        if d.worker_class in GREENLET_CLASSES:
            workers = f"{counted(d.workers, 'worker')} of greenlets"
        protocol = "uwsgi protocol" if p.protocol == "uwsgi" else "HTTP"
        pinned = ", a CPU each" if d.cpu_affinity else ""
        fair = ", fair GIL" if spec.server.fair_gil and d.threads > 1 and d.worker_class == "gthread" else ""
        metrics = f"{url}{spec.monitoring.metrics_path}" if spec.monitoring.metrics else "off"
        if p.prometheus:  # nginx's public port answers 404 there: the scraper has a listener of its own
            metrics = f"{p.prometheus.metrics_url(spec)} (loopback, for Prometheus)"
        if not p.app_serves(spec.monitoring.metrics_path):
            metrics = "none: the app does not install Production(app)"
        static = p.static_in(p.release)
        # Production(app) logs in spec.logging.format; an app without it, as it always has.
        app_logs = spec.logging.format if p.app_serves(spec.monitoring.ready_path) else "its own format"
        rows = [
            ("URL", f"{url}/"),
            (
                "app server",
                f"{spec.server.kind}, {workers} ({d.worker_class}{pinned}{fair}), "
                f"{protocol} on unix:{p.socket(p.release)}",
            ),
            ("release", f"{p.release.number}, copied {p.release.created} from {p.release.source}"),
            (
                "static",
                ", ".join(f"{mount.url}/ -> {mount.folder}" for mount in static) + " (nginx)" if static else "none",
            ),
            (
                "health",
                f"{url}{spec.monitoring.health_path}  readiness {url}{spec.monitoring.ready_path}"
                if p.app_serves(spec.monitoring.ready_path)
                else "none: the app does not install Production(app)",
            ),
            ("metrics", metrics),
            *([("prometheus", p.prometheus.describe(p.run))] if p.prometheus else []),
            *([("alertmanager", p.alertmanager.describe(spec))] if p.alertmanager else []),
            *([("postgres", p.postgres.describe())] if p.postgres else []),
            (
                "logs",
                f"app: stdout ({app_logs}); "
                f"nginx access: {p.run.access_log} (json); "
                "nginx errors and up: stderr",
            ),
            ("run dir", str(p.run.path)),
            *(
                [("certificate", f"{p.acme.cert} from {p.acme.server}, renewed by certbot (checked every 12 h)")]
                if p.acme
                else []
            ),
            (
                "control",
                f"Ctrl-C or kill -TERM {os.getpid()} stops gracefully; kill -HUP {os.getpid()} reloads; "
                "`flaskprod deploy` ships the project's current state, `flaskprod rollback` the release before",
            ),
        ]
        width = max(len(name) for name, _ in rows)
        try:
            print(f"flaskprod up: {spec.app.name} is ready", flush=False)
            for name, value in rows:
                print(f"  {name:<{width}}  {value}", flush=False)
            sys.stdout.flush()
        except BrokenPipeError:
            let_go(sys.stdout)
            self.log("stdout was closed by its reader: the ready table was cut short; serving on", level="warning")


def up(
    spec: Spec,
    *,
    config_path: str | None = None,
    reload_spec: Callable[[], Spec] | None = None,
    extras: tuple[str, ...] = (),
) -> int:
    """Run the production topology until stopped; the exit status (0 after a graceful stop).

    reload_spec, when given, reads the spec's sources again on SIGHUP; extras are `--with`'s values.
    """
    added = parse_up_extras(extras)
    claim = Claim(StackDir.at(spec.proxy.run_dir, scrapes="monitoring" in added))
    stack: Stack | None = None
    try:
        p = plan(spec, claim.run, claim=claim.take, config_path=config_path, extras=added)
        stack = Stack(p, reload_spec, keep=claim.keep)
        return stack.run()
    finally:
        # A start that failed, or was stopped, before it served takes back what it made.
        claim.release(failed=stack is None or not stack.served)
