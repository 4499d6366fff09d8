"""Derived values: pure functions of the spec and the machine, computed once and reused by every layer."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .errors import SpecError
from .spec import Spec, parse_size

MIB = 1024 * 1024
# Assumed resident size of one worker when it has not been measured, and wherever the count is fixed for
# processes that start elsewhere or later (build's containers, up's releases); a small Flask app with
# SQLAlchemy sits near 60-90 MiB, so this leaves headroom.
DEFAULT_WORKER_MB = 128
# Share of the memory limit that workers may use; the rest is for the master, nginx and page cache.
MEMORY_SHARE = 0.75
# Seconds the app server's hard kill waits beyond the soft deadline at which the app answers 504.
KILL_MARGIN = 5
# Seconds nginx waits beyond the soft deadline before answering 504 itself: only a request the app
# could not stop (stuck in one C call) gets that far, and the hard kill frees its worker later.
PROXY_MARGIN = 2
# Seconds an orchestrator waits beyond the graceful timeout before SIGKILL.
SHUTDOWN_MARGIN = 5


@dataclass(frozen=True, kw_only=True)
class Machine:
    """What this process may use: CPUs (possibly fractional under a quota) and memory in bytes."""

    cpus: float
    memory: int
    # CPUs the scheduler may run this process on (its affinity mask); None when unknown.
    cpuset: int | None = None

    @property
    def owns_cpus(self) -> bool:
        """True when no quota is below the CPU set: the cores are this process's to share out, not a slice."""
        return self.cpuset is not None and self.cpus >= self.cpuset

    @property
    def cores(self) -> int:
        """Whole CPUs for sizing: a 1.5 CPU quota counts as 2, never less than 1."""
        return max(1, math.ceil(self.cpus - 1e-9))


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _cgroup_v2_dirs(root: Path) -> list[Path]:
    """This process's cgroup v2 directory and its ancestors, innermost first (limits nest)."""
    base = root / "sys/fs/cgroup"
    own = "/"
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            own = line[3:] or "/"
    parts = [p for p in own.split("/") if p]
    dirs = [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]
    return [d for d in dirs if d.is_dir()]


def cgroup_cpu_limit(root: Path = Path("/")) -> float | None:
    """CPUs allowed by a cgroup quota (v2 cpu.max, else v1 cfs quota/period), or None when unlimited."""
    limits = []
    for d in _cgroup_v2_dirs(root):
        text = _read(d / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and period:
                limits.append(int(quota) / int(period))
    for v1 in ("sys/fs/cgroup/cpu,cpuacct", "sys/fs/cgroup/cpu"):
        quota_text = _read(root / v1 / "cpu.cfs_quota_us")
        period_text = _read(root / v1 / "cpu.cfs_period_us")
        if quota_text and period_text and int(quota_text) > 0:
            limits.append(int(quota_text) / int(period_text))
            break
    return min(limits) if limits else None


def cgroup_memory_limit(root: Path = Path("/")) -> int | None:
    """Bytes allowed by a cgroup (v2 memory.max, else v1 memory.limit_in_bytes), or None when unlimited."""
    limits = []
    for d in _cgroup_v2_dirs(root):
        text = _read(d / "memory.max")
        if text and text != "max":
            limits.append(int(text))
    v1 = _read(root / "sys/fs/cgroup/memory/memory.limit_in_bytes")
    # v1 reports "no limit" as a page-rounded huge number rather than a word.
    if v1 and int(v1) < 2**60:
        limits.append(int(v1))
    return min(limits) if limits else None


def machine_memory(root: Path = Path("/")) -> int:
    for line in (_read(root / "proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 1024 * MIB


def detect_machine(root: Path = Path("/"), affinity: int | None = None) -> Machine:
    """The CPUs and memory this process may use, honouring cgroup limits and CPU affinity."""
    if affinity is None:
        affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = cgroup_cpu_limit(root)
    cpus = float(affinity) if quota is None else min(float(affinity), quota)
    total = machine_memory(root)
    limit = cgroup_memory_limit(root)
    return Machine(cpus=cpus, memory=total if limit is None else min(total, limit), cpuset=affinity)


def auto_workers(machine: Machine, worker_mb: float, cap: int | None = None, *, threads: int = 1) -> int:
    """min(by CPU, workers that fit in the memory share at worker_mb each, cap), at least 1.

    By CPU: single-threaded workers need 2 x cores + 1 so a core has work while another worker
    waits on I/O. Threaded workers wait on I/O in their threads, so one process per core keeps
    every core busy; a process more than cores gets preempted while one of its threads holds the
    interpreter lock, which stalls all its threads and stretches the tail (measured in
    docs/defaults.md). At least 2, so a worker being recycled never leaves the socket unserved.
    """
    by_cpu = 2 * machine.cores + 1 if threads == 1 else max(2, machine.cores)
    by_memory = int(machine.memory * MEMORY_SHARE // (worker_mb * MIB))
    workers = min(by_cpu, by_memory)
    if cap is not None:
        workers = min(workers, cap)
    return max(1, workers)


@dataclass(frozen=True, kw_only=True)
class Timeouts:
    """The timeout chain, in seconds; every layer reads these so none can drift."""

    request: int  # soft deadline: the app answers 504 and the worker moves on
    server: int  # Gunicorn timeout / uWSGI harakiri: a worker still busy this long is killed
    graceful: int  # in-flight requests get this long after SIGTERM or a reload
    proxy_read: int  # nginx read timeout: after the app's 504, before the hard kill
    proxy_connect: int
    drain: int  # after SIGTERM, readiness reports 503 this long while requests are still served
    shutdown_grace: int  # Kubernetes terminationGracePeriodSeconds, Swarm stop_grace_period, systemd TimeoutStopSec
    keepalive: int  # app server keep-alive towards the proxy
    upstream_keepalive: int  # nginx upstream keepalive_timeout: shorter than the app server's


@dataclass(frozen=True, kw_only=True)
class Pool:
    size: int
    overflow: int


@dataclass(frozen=True, kw_only=True)
class Derived:
    """Everything computed from the spec and the machine."""

    machine: Machine
    workers: int
    threads: int  # a worker's: worker_threads(spec), conversations' included
    worker_class: str
    max_requests: int
    max_requests_jitter: int
    recycle_memory_mb: int  # workers past it are recycled (servers/memorybound.py); 0 = off
    cpu_affinity: bool  # each worker pinned to a CPU of its own
    worker_tmp_dir: str | None
    timeouts: Timeouts
    pool: Pool
    max_body_bytes: int  # nginx's client_max_body_size: see max_body_bytes()


# Gunicorn's worker classes that run a greenlet a request rather than threads: no thread counts, turns or kept
# connections apply to them.
GREENLET_CLASSES = frozenset({"gevent", "eventlet"})


def worker_class(spec: Spec) -> str:
    if spec.server.worker_class != "auto":
        return spec.server.worker_class
    return "gthread" if spec.server.threads > 1 else "sync"


def worker_threads(spec: Spec) -> int:
    """Threads a worker runs: server.threads for requests, and for a threaded worker server.conversation_threads
    more, once made concrete for the app (servers/websockets.py; auto is none until then).

    A conversation holds its thread for as long as it lasts. With only server.threads, 12 open WebSockets filled
    a worker of the defaults, and every request that worker took next waited until nginx answered 504.
    """
    server = spec.server
    if server.threads == 1 or server.conversation_threads == "auto":
        return server.threads
    return server.threads + server.conversation_threads


def timeouts(spec: Spec) -> Timeouts:
    server = spec.server
    graceful = server.graceful_timeout
    hard = server.timeout + KILL_MARGIN
    return Timeouts(
        request=server.timeout,
        server=hard,
        graceful=graceful,
        proxy_read=server.timeout + PROXY_MARGIN,
        proxy_connect=5,
        drain=server.drain_delay,
        # The orchestrator must outwait the drain and the graceful stop, or it kills in-flight requests.
        shutdown_grace=server.drain_delay + graceful + SHUTDOWN_MARGIN,
        keepalive=server.keepalive,
        upstream_keepalive=max(1, server.keepalive - 1),
    )


def db_pool(spec: Spec, processes: int, threads: int) -> Pool:
    """Per-process pool so that processes x (size + overflow) stays within the connection budget."""
    db = spec.database
    budget = db.connection_budget
    per_process = budget // processes
    if per_process < 1:
        raise SpecError(
            f"database.connection_budget {budget} is less than the {processes} app processes; "
            "raise the budget or lower server.workers"
        )
    overflow = min(db.max_overflow, per_process - 1)
    if db.pool_size == "auto":
        # One connection per thread is all a worker can use at once.
        size = max(1, min(threads, per_process - overflow))
    else:
        size = db.pool_size
        if processes * (size + overflow) > budget:
            raise SpecError(
                f"database.pool_size {size} with max_overflow {overflow} needs {processes * (size + overflow)} "
                f"connections for {processes} processes, over database.connection_budget {budget}; "
                "lower pool_size or raise connection_budget"
            )
    return Pool(size=size, overflow=overflow)


# Connections a database server keeps beyond the app's pools: an operator's psql, a migration or a backup
# still gets in while every pool is full. PostgreSQL's own superuser_reserved_connections (3) are among them.
ADMIN_CONNECTIONS = 5


def max_connections(pool: Pool, processes: int) -> int:
    """The database server's max_connections for processes app processes, each holding pool at its fullest."""
    return processes * (pool.size + pool.overflow) + ADMIN_CONNECTIONS


def tmp_dir(spec: Spec, shm: Path = Path("/dev/shm")) -> str | None:
    if spec.server.worker_tmp_dir != "auto":
        return spec.server.worker_tmp_dir
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


# Request-count recycling where the server staggers it at random (Gunicorn's jitter).
AUTO_MAX_REQUESTS = 10000
# A worker at this many times the loaded app's memory is leaking; the floor leaves room for caches.
RECYCLE_MEMORY_FACTOR = 4
RECYCLE_MEMORY_FLOOR_MB = 512


def recycle_requests(spec: Spec) -> int:
    """server.max_requests made concrete: auto recycles by request count on Gunicorn only.

    uWSGI staggers request-count restarts by worker id (max-requests-delta), not at random, and
    does not restart a worker before min-worker-lifetime (10 s): under steady load every worker
    reached its count in the same tick and the socket had no worker for 0.7 s (docs/defaults.md).
    """
    if spec.server.max_requests != "auto":
        return spec.server.max_requests
    return 0 if spec.server.kind == "uwsgi" else AUTO_MAX_REQUESTS


def worker_memory_mb(spec: Spec, measured: float | None) -> float:
    """MiB one worker needs: the setting, else what the probe measured, else a typical Flask app's."""
    if spec.server.worker_memory_mb != "auto":
        return spec.server.worker_memory_mb
    return measured or DEFAULT_WORKER_MB


def recycle_memory_mb(spec: Spec, worker_mb: float) -> int:
    """server.recycle_memory_mb made concrete: a bound well above what the loaded app needs."""
    if spec.server.recycle_memory_mb != "auto":
        return spec.server.recycle_memory_mb
    return max(RECYCLE_MEMORY_FLOOR_MB, round(RECYCLE_MEMORY_FACTOR * worker_mb))


def pin_workers(spec: Spec, machine: Machine, workers: int) -> bool:
    """server.cpu_affinity made concrete: auto pins threaded workers that each get a whole CPU.

    A process runs Python on one core at a time anyway (the interpreter lock); pinned, its threads
    hand the lock over on that core rather than waking a thread on the other; on 2 CPUs, alternated
    round by round, that served 1.16x to 1.40x the requests/s (docs/defaults.md). Single-threaded workers, more
    workers than CPUs, or a CPU quota on a shared set of cores are left to the scheduler, which can
    move a process off a core another is keeping busy.
    """
    if spec.server.cpu_affinity != "auto":
        return spec.server.cpu_affinity
    return (
        spec.server.threads > 1
        and machine.owns_cpus
        and machine.cpuset is not None
        and machine.cpuset > 1
        and workers <= machine.cpuset
    )


def max_body_bytes(spec: Spec, app_limits: Iterable[int | None] = ()) -> int:
    """nginx's client_max_body_size for the apps behind it, given the MAX_CONTENT_LENGTH each runs with.

    That is proxy.max_body_size where Production(app) set it, or the app's own value, which it keeps
    (runtime/config.py): nginx then refuses what the app would, and passes what it takes. An app with no
    limit (None: no Production(app), or None set after it) gets proxy.max_body_size at nginx all the same,
    since a body nginx let through unbounded would spool to its disk unbounded. With two apps behind it (a
    canary), the larger: each still refuses past its own. nginx reads 0 as "no limit" where Flask reads
    "no body", so an app's 0 is 1 byte here (the app answers 413 for that byte).
    """
    spec_limit = parse_size(spec.proxy.max_body_size)
    limits = [spec_limit if limit is None else limit for limit in app_limits] or [spec_limit]
    return max(1, max(limits))


def derive(
    spec: Spec,
    machine: Machine | None = None,
    *,
    worker_mb: float | None = None,
    replicas: int = 1,
    shm: Path = Path("/dev/shm"),
    app_body_limit: int | None = None,
) -> Derived:
    """All derived values for spec on machine; replicas multiplies processes for the DB budget;
    app_body_limit is the app's MAX_CONTENT_LENGTH as it loaded (see max_body_bytes)."""
    machine = machine or detect_machine()
    server = spec.server
    needed_mb = worker_memory_mb(spec, worker_mb)
    if server.workers == "auto":
        workers = auto_workers(machine, needed_mb, server.worker_cap, threads=server.threads)
    else:
        workers = server.workers
    max_requests = recycle_requests(spec)
    return Derived(
        machine=machine,
        workers=workers,
        threads=worker_threads(spec),
        worker_class=worker_class(spec),
        max_requests=max_requests,
        max_requests_jitter=server.max_requests_jitter if max_requests else 0,
        recycle_memory_mb=recycle_memory_mb(spec, needed_mb),
        cpu_affinity=pin_workers(spec, machine, workers),
        worker_tmp_dir=tmp_dir(spec, shm),
        timeouts=timeouts(spec),
        # From the request threads alone: a conversation rarely holds a database connection while it waits.
        pool=db_pool(spec, workers * replicas, server.threads),
        max_body_bytes=max_body_bytes(spec, [app_body_limit]),
    )


# Beside a TCP bind (a container's deploy.app_port), the metrics responder takes the next port.
RESPONDER_PORT_OFFSET = 1


def responder_bind(address: str) -> str:
    """Where the metrics responder of the app server at address listens (monitoring.metrics_responder): beside a
    unix socket, one of its own in the same directory (app.sock -> app.prom: no longer, so a directory whose path
    the app server's socket fits fits it too); beside host:port, the next port. The app server's `serve` binds it,
    and nginx passes scrapes to it, from this alone."""
    if address.startswith("unix:"):
        return f"{address.removesuffix('.sock')}.prom"
    host, _, port = address.rpartition(":")
    return f"{host}:{responder_port(int(port))}"


def responder_port(port: int) -> int:
    """The metrics responder's port beside an app server on port (a container's deploy.app_port)."""
    if port + RESPONDER_PORT_OFFSET > 65535:
        raise SpecError(
            f"the app server's port {port} leaves none after it for its metrics responder: choose a port below 65535"
        )
    return port + RESPONDER_PORT_OFFSET
