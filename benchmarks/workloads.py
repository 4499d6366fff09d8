"""What each stack is asked to serve: the reference app's endpoints, and the slow-client attack."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Workload:
    name: str
    path: str
    label: str
    # Runs at every concurrency level of the mode (the small dynamic responses); others at the main level.
    sweep: bool = False
    # Measured in-process too, so the stack's throughput can be set against ceiling x cores.
    has_ceiling: bool = True
    # Sockets held open by clients that send their headers a byte at a time while wrk measures.
    slow_clients: int = 0
    # The database this workload needs the stack started with.
    database: str = "sqlite"


WORKLOADS: tuple[Workload, ...] = (
    Workload(name="page", path="/", label="small page (/)", sweep=True),
    Workload(name="ping", path="/api/ping", label="JSON API (/api/ping)", sweep=True),
    Workload(name="db", path="/api/db", label="DB read, SQLite (/api/db)"),
    Workload(name="static", path="/static/css/bundle.css", label="static file, 22 KB"),
    # A thread asleep does not use a core: per-core ceilings mean nothing for it.
    Workload(name="slow", path="/api/slow?ms=50", label="50 ms I/O wait (/api/slow)", has_ceiling=False),
    Workload(name="cpu", path="/api/cpu", label="CPU-bound, ~1 ms (/api/cpu)"),
    Workload(
        name="slowclients",
        path="/api/ping",
        label="/api/ping while 64 slow clients trickle headers",
        has_ceiling=False,
        slow_clients=64,
    ),
    Workload(name="db-pg", path="/api/db", label="DB read, PostgreSQL (/api/db)", database="postgresql"),
)

BY_NAME = {w.name: w for w in WORKLOADS}
