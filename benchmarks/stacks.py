"""The stacks under test: how each is started, where it listens, and which processes are its workers."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from . import native, procs
from .ratios import ACCEPT_LOCK, DEFAULT, UNFAIR, UNFROZEN, UNPINNED

REPO = Path(__file__).resolve().parent.parent
TASKBOARD = native.TASKBOARD
STATIC_DIR = TASKBOARD / "taskboard" / "static"
NGINX_CONFS = Path(__file__).resolve().parent / "nginx"
BIN = Path(sys.executable).parent
NGINX = "/usr/sbin/nginx"

# built: what `flaskprod build` writes for containers, run natively (no Docker engine here).
Group = Literal["flaskprod", "peer", "baseline", "built"]


@dataclass(frozen=True, kw_only=True)
class Command:
    """One process a stack starts, as it is recorded in the results."""

    name: str
    args: list[str]
    cwd: Path
    # Variables this process gets beside the run's own (an image's ENV).
    env: dict[str, str] = field(default_factory=dict)

    def shown(self) -> str:
        rel = os.path.relpath(self.cwd, REPO)
        assigned = "".join(f"{k}={shlex.quote(v)} " for k, v in sorted(self.env.items()))
        return f"(cd {rel} && {assigned}{' '.join(self.args)})"


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A stack ready to start: its commands (in start order), the port clients use, and how to ask if it is up."""

    commands: list[Command]
    port: int
    host_header: str
    ready_path: str
    # Index of the command whose process tree holds the app's workers (None: no app, e.g. nginx alone).
    app_command: int | None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Stack:
    name: str
    label: str
    group: Group
    kind: Literal["up", "option2", "option3", "gunicorn", "flask-dev", "nginx-static", "image"]
    app: str = "wsgi:app"
    up_args: tuple[str, ...] = ()
    # Workloads this stack runs; None = every workload of the run.
    only: tuple[str, ...] | None = None
    # Left out of quick runs unless named with --stacks.
    full_only: bool = False
    # The folder the app is imported from, when not the repository's (benchmarks/deploy.py edits a copy).
    root: Path | None = None
    # The flaskprod source tree the stack runs, when not the installed one (benchmarks/ab.py's STACK@REV).
    source: Path | None = None
    # kind "image": the `flaskprod build` target whose app image and nginx image run here, natively.
    target: str = ""

    @property
    def cwd(self) -> Path:
        if self.root is not None:
            return self.root
        # The reference app is imported from its folder; the benchmark's own apps from the repository.
        return TASKBOARD if self.app == "wsgi:app" else REPO

    def plan(self, run_dir: Path) -> Plan:
        port = procs.free_port()
        cwd = self.cwd
        if self.kind == "up":
            args = [
                str(BIN / "flaskprod"),
                "up",
                self.app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--set",
                f"proxy.run_dir={run_dir / 'run'}",
                *self.up_args,
            ]
            # up's nginx closes connections for unknown host names; proxy.server_name is localhost.
            return Plan(
                commands=[Command(name="flaskprod up", args=args, cwd=cwd)],
                port=port,
                host_header="localhost",
                ready_path="/readyz",
                app_command=0,
            )
        if self.kind == "image":
            return _image_plan(self.target, run_dir, port)
        if self.kind == "option2":
            upstream = procs.free_port()
            gunicorn = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{upstream}", "--workers", "4", self.app]
            conf = _nginx_conf("option2.conf", run_dir, port=port, upstream_port=upstream)
            return Plan(
                commands=[Command(name="gunicorn", args=gunicorn, cwd=cwd), _nginx_command(conf)],
                port=port,
                host_header="example.com",
                ready_path="/readyz",
                app_command=0,
                files={"nginx.conf": conf.read_text()},
            )
        if self.kind == "option3":
            ini = run_dir / "uwsgi.ini"
            ini.write_text(_fill((NGINX_CONFS / "option3.ini").read_text(), run_dir))
            conf = _nginx_conf("option3.conf", run_dir, port=port)
            uwsgi = [str(BIN / "uwsgi"), "--ini", str(ini)]
            return Plan(
                commands=[Command(name="uwsgi", args=uwsgi, cwd=cwd), _nginx_command(conf)],
                port=port,
                host_header="example.com",
                ready_path="/readyz",
                app_command=0,
                files={"nginx.conf": conf.read_text(), "uwsgi.ini": ini.read_text()},
            )
        if self.kind == "gunicorn":
            args = [str(BIN / "gunicorn"), "--bind", f"127.0.0.1:{port}", self.app]
            return Plan(
                commands=[Command(name="gunicorn", args=args, cwd=cwd)],
                port=port,
                host_header="localhost",
                ready_path="/readyz",
                app_command=0,
            )
        if self.kind == "flask-dev":
            # `flask run` is threaded by default; no reloader and no debugger, as a demo would run it.
            args = [
                str(BIN / "flask"),
                "--app",
                self.app,
                "run",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-reload",
                "--no-debugger",
            ]
            return Plan(
                commands=[Command(name="flask run", args=args, cwd=cwd)],
                port=port,
                host_header="localhost",
                ready_path="/readyz",
                app_command=0,
            )
        conf = _nginx_conf("static.conf", run_dir, port=port)
        return Plan(
            commands=[_nginx_command(conf)],
            port=port,
            host_header="localhost",
            ready_path="/static/css/bundle.css",
            app_command=None,
            files={"nginx.conf": conf.read_text()},
        )


def _image_plan(target: str, run_dir: Path, port: int) -> Plan:
    """What `flaskprod build --target target` writes for the reference app, run as its containers would run it: the
    app image's CMD and ENV, then nginx with the nginx image's conf, the app's service name replaced by its address
    here (Compose's nginx asks Docker's DNS for it per request, so it holds no upstream connection open)."""
    project = native.copy_taskboard(run_dir / "taskboard")
    out = native.built(project, target, dict(os.environ))
    app_port = procs.port_pair()  # and the one after it, for the metrics responder beside it
    command, image_env = native.app_command((out / "Dockerfile").read_text(), app_port)
    nginx = native.native_nginx(project, out, run_dir / "nginx", port=port, upstream=f"127.0.0.1:{app_port}")
    return Plan(
        commands=[
            Command(name="app image", args=command, cwd=project, env=image_env),
            Command(name="nginx", args=[*nginx, "-e", "stderr", "-g", "daemon off;"], cwd=run_dir / "nginx"),
        ],
        port=port,
        host_header="localhost",
        ready_path="/readyz",
        app_command=0,
        files={"nginx.conf": (run_dir / "nginx" / "nginx.conf").read_text()},
    )


def _fill(text: str, run_dir: Path, **values: int) -> str:
    # root's nginx workers would run as nobody and could not reach a socket in a private temp dir.
    user_line = "user root;" if os.geteuid() == 0 else ""
    text = text.replace("@USER_LINE@", user_line).replace("@DIR@", str(run_dir)).replace("@STATIC@", str(STATIC_DIR))
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", str(value))
    left = re.findall(r"@[A-Z_]+@", text)
    if left:
        raise ValueError(f"unfilled placeholder(s) {left} in an nginx template")
    return text


def _nginx_conf(template: str, run_dir: Path, **values: int) -> Path:
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    conf = run_dir / "nginx.conf"
    conf.write_text(_fill((NGINX_CONFS / template).read_text(), run_dir, **values))
    return conf


def _nginx_command(conf: Path) -> Command:
    return Command(
        name="nginx",
        args=[NGINX, "-p", f"{conf.parent}/", "-c", str(conf), "-e", "stderr", "-g", "daemon off;"],
        cwd=conf.parent,
    )


@dataclass
class Running:
    plan: Plan
    groups: list[procs.ProcessGroup]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.plan.port}"

    def worker_pids(self) -> list[int]:
        if self.plan.app_command is None:
            return []
        return procs.worker_pids(self.groups[self.plan.app_command].pid)

    def alive(self) -> bool:
        return all(g.proc.poll() is None for g in self.groups)


@contextlib.contextmanager
def started(stack: Stack, run_dir: Path, env: Mapping[str, str], ready_timeout: float = 90.0) -> Iterator[Running]:
    """Start the stack's processes in order, wait until it answers, and kill every process group afterwards."""
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = stack.plan(run_dir)
    groups: list[procs.ProcessGroup] = []
    try:
        for cmd in plan.commands:
            log = run_dir / f"{cmd.name.replace(' ', '-')}.log"
            groups.append(procs.start(cmd.name, cmd.args, cwd=cmd.cwd, env={**env, **cmd.env}, log=log))
        procs.wait_ready(groups[-1], plan.port, plan.ready_path, plan.host_header, timeout=ready_timeout)
        for group in groups:
            if group.proc.poll() is not None:
                raise RuntimeError(f"{group.name} exited with {group.proc.returncode}:\n{group.log_tail()}")
            group.remember_descendant_groups()
        yield Running(plan=plan, groups=groups)
    finally:
        for group in reversed(groups):
            group.kill()


def all_stacks(*, default_kind: str) -> list[Stack]:
    """Every stack; `default_kind` is what `up` picks with no --server (its twin is flaskprod-default)."""
    kinds = ["gunicorn", "uwsgi"]
    stacks = [Stack(name=DEFAULT, label="flaskprod up (defaults)", group="flaskprod", kind="up")]
    stacks += [
        Stack(
            name=f"flaskprod-{k}",
            label=f"flaskprod up --server {k}",
            group="flaskprod",
            kind="up",
            up_args=("--server", k),
        )
        # The default's twin would measure the very same stack again.
        for k in kinds
        if k != default_kind
    ]
    # Candidates for the defaults: other thread counts per worker (1 = sync workers, 2 x cores + 1 of them),
    # in full runs or by name.
    stacks += [
        Stack(
            name=f"flaskprod-{k}-threads{n}",
            label=f"flaskprod up --server {k} --threads {n}",
            group="flaskprod",
            kind="up",
            up_args=("--server", k, "--threads", str(n)),
            full_only=True,
        )
        for k, n in (("uwsgi", 1), ("uwsgi", 4), ("uwsgi", 8), ("uwsgi", 16), ("gunicorn", 1))
    ]
    # Other splits of processes and threads on 2 cores, each named workers x threads:
    # 5 x 4, the classic process count (2 x cores + 1) with fewer threads each; 4 x 6, as many threads in all
    # as the default (2 x 12) over twice the processes, so fewer contend for each interpreter lock, where
    # the tail on /api/ping grows; 3 x 8, the default before run 11 (one process more than cores).
    stacks += [
        Stack(
            name=f"flaskprod-uwsgi-{w}x{t}",
            label=f"flaskprod up --server uwsgi --workers {w} --threads {t}",
            group="flaskprod",
            kind="up",
            up_args=("--server", "uwsgi", "--workers", str(w), "--threads", str(t)),
            full_only=True,
        )
        for w, t in ((5, 4), (4, 6), (3, 8))
    ]
    # Each server with one of its defaults reversed: uWSGI's accept lock on; workers left to the scheduler;
    # the loaded app left to the garbage collector; threads not taking turns for the interpreter lock.
    stacks += [
        Stack(
            name=name,
            label=f"flaskprod up --server {k} --set {setting}",
            group="flaskprod",
            kind="up",
            up_args=("--server", k, "--set", setting),
            full_only=True,
        )
        for name, k, setting in (
            (ACCEPT_LOCK, "uwsgi", "server.accept_lock=true"),
            (UNPINNED, "uwsgi", "server.cpu_affinity=false"),
            (UNFROZEN, "uwsgi", "server.gc_freeze=false"),
            (UNFAIR, "uwsgi", "server.fair_gil=false"),
            ("flaskprod-gunicorn-unpinned", "gunicorn", "server.cpu_affinity=false"),
        )
    ]
    stacks += [
        Stack(
            name="guide-option2", label="guide Option 2: nginx -> gunicorn 4 sync (TCP)", group="peer", kind="option2"
        ),
        Stack(
            name="guide-option3",
            label="guide Option 3: nginx -> uWSGI 5 processes (socket)",
            group="peer",
            kind="option3",
        ),
        # No goal compares against these two: the quick run, for checking a change in under 3 minutes,
        # leaves them to the full run.
        Stack(
            name="gunicorn-bare",
            label="gunicorn (its defaults: 1 sync worker)",
            group="peer",
            kind="gunicorn",
            full_only=True,
        ),
        Stack(
            name="flask-dev",
            label="flask run (development server, threaded)",
            group="peer",
            kind="flask-dev",
            full_only=True,
        ),
        # What Production(app) costs on flaskprod's default stack: the same route with and without it.
        Stack(
            name="hello-bare",
            label="flaskprod up, bare Flask app",
            group="baseline",
            kind="up",
            app="benchmarks.apps.bare:app",
            only=("ping",),
        ),
        Stack(
            name="hello-production",
            label="flaskprod up, same app with Production(app)",
            group="baseline",
            kind="up",
            app="benchmarks.apps.production:app",
            only=("ping",),
        ),
        # The Compose targets, Option 2 and 3 as flaskprod builds them: what their nginx costs on small answers,
        # since Compose's asks Docker's DNS for the app per request and so holds no connection open to Gunicorn.
        *(
            Stack(
                name=f"built-{target}",
                label=f"flaskprod build -t {target}, run natively",
                group="built",
                kind="image",
                target=target,
                only=("page", "ping", "static", "slow"),
                full_only=True,
            )
            for target in ("compose", "compose-uwsgi")
        ),
        Stack(
            name="nginx-static",
            label="nginx serving the file directly",
            group="baseline",
            kind="nginx-static",
            only=("static",),
        ),
    ]
    return stacks


# `up:ARGS` names a stack the catalogue does not have: flaskprod up with those arguments, for a paired run.
AD_HOC = "up:"


def ad_hoc(name: str) -> Stack:
    """The stack `up:--workers 4 --threads 6` names, called flaskprod-up-workers-4-threads-6."""
    args = tuple(shlex.split(name.removeprefix(AD_HOC)))
    if not args:
        raise SystemExit(f"{name!r} gives flaskprod up no arguments: write e.g. 'up:--threads 8'")
    slug = re.sub(r"[^a-z0-9.=]+", "-", " ".join(args).lower()).strip("-")
    label = f"flaskprod up {shlex.join(args)}"
    return Stack(name=f"flaskprod-up-{slug}", label=label, group="flaskprod", kind="up", up_args=args)


def pick(stacks: Sequence[Stack], names: Sequence[str] | None, *, full: bool) -> list[Stack]:
    if not names:
        return [s for s in stacks if full or not s.full_only]
    known = {s.name for s in stacks}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown stack(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return [s for s in stacks if s.name in names]
