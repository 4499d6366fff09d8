"""Where the cores went during one wrk run: the app server, nginx, wrk itself, the hypervisor, and idle.

wrk, nginx and the app server share this machine's cores, so a stack's throughput is bounded by the
CPU the app server gets, not by the machine's cores. On a virtual machine the host can also take
the cores away: /proc/stat counts that as steal, time a vCPU wanted to run and was not let. It is
the only figure here that says a run was slowed by something outside the machine. Each figure is
CPU seconds over wall seconds (1.0 = one core busy for the whole run).
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
    busy: int  # the machine's ticks running anything, all cores (neither idle nor stolen)
    idle: int
    stolen: int  # ticks the hypervisor ran something else while this machine's vCPUs wanted to run
    wrk: float  # CPU seconds of this process's waited-for children (wrk) so far


def machine_ticks(proc_stat: str) -> tuple[int, int, int]:
    """(busy, idle, stolen) ticks of all cores from the text of /proc/stat; iowait counts as idle.

    guest and guest_nice (fields 9 and 10) are already inside user and nice, so they are left out.
    """
    first = proc_stat.splitlines()[0].split()[1:]
    user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in first[:8])
    return user + nice + system + irq + softirq, idle + iowait, steal


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
    busy, idle, stolen = machine_ticks(Path("/proc/stat").read_text())
    return Snapshot(app=app, nginx=nginx, busy=busy, idle=idle, stolen=stolen, wrk=_children_seconds())


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
        "stolen": round((after.stolen - before.stolen) * per_tick, 2),
    }
