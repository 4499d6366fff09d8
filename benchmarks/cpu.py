"""Where the cores went during one wrk run: the app server, nginx, wrk itself, and what stayed idle.

wrk, nginx and the app server share this machine's cores, so a stack's throughput is bounded by the
CPU the app server gets, not by the machine's cores. Each figure is CPU seconds over wall seconds
(1.0 = one core busy for the whole run).
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from . import procs

_TICKS = os.sysconf("SC_CLK_TCK")


def stat_ticks(stat: str) -> tuple[str, int]:
    """(command name, CPU ticks) from a /proc/PID/stat line: its own time plus its reaped children's.

    A child that exits during the run is counted through its parent (a uWSGI master reaps its recycled
    workers), so the difference of two snapshots holds the whole tree's time, dead or alive.
    """
    head, _, tail = stat.rpartition(")")
    name = head.partition("(")[2]
    # Fields after the name, from state (field 3): utime, stime, cutime, cstime are fields 14-17.
    fields = tail.split()
    return name, sum(int(f) for f in fields[11:15])


@dataclass(frozen=True)
class Snapshot:
    app: int  # ticks of every process in the stack's trees that is not nginx
    nginx: int
    busy: int  # the machine's non-idle ticks, all cores
    idle: int
    wrk: float  # CPU seconds of this process's waited-for children (wrk) so far


def _machine_ticks() -> tuple[int, int]:
    """(busy, idle) ticks of all cores from /proc/stat; iowait counts as idle."""
    first = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in first[:8]]  # user nice system idle iowait irq softirq steal
    idle = values[3] + values[4]
    return sum(values) - idle, idle


def _children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def snapshot(roots: Iterable[int]) -> Snapshot:
    app = nginx = 0
    for pid in procs.trees(roots):
        try:
            name, ticks = stat_ticks(Path(f"/proc/{pid}/stat").read_text())
        except OSError:
            continue  # gone between the listing and the read: its parent's cutime has it
        if name.startswith("nginx"):
            nginx += ticks
        else:
            app += ticks
    busy, idle = _machine_ticks()
    return Snapshot(app=app, nginx=nginx, busy=busy, idle=idle, wrk=_children_seconds())


def cores_used(before: Snapshot, after: Snapshot, seconds: float) -> dict[str, float]:
    """Cores' worth of CPU each part used between two snapshots `seconds` apart."""
    if seconds <= 0:
        return {}
    per_tick = 1 / (_TICKS * seconds)
    app = (after.app - before.app) * per_tick
    nginx = (after.nginx - before.nginx) * per_tick
    wrk = (after.wrk - before.wrk) / seconds
    busy = (after.busy - before.busy) * per_tick
    return {
        "app": round(app, 2),
        "nginx": round(nginx, 2),
        "wrk": round(wrk, 2),
        # Kernel threads, the harness's slow clients, anything else running on the machine.
        "other": round(max(0.0, busy - app - nginx - wrk), 2),
        "idle": round((after.idle - before.idle) * per_tick, 2),
    }
