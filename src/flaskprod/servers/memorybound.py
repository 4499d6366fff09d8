"""server.recycle_memory_mb: a worker past its memory bound is recycled, seen from outside the worker.

uWSGI's own reload-on-rss reads /proc/self/stat after every request (open, fstat, read, close, and the
kernel walking every thread of the worker): 500 against 475 µs of worker CPU per /api/ping request
(docs/defaults-log.md); Gunicorn has no memory bound of its own. Reading each worker's /proc/PID/statm once a
second from the process that supervises the workers costs them nothing. A worker found past the bound
is recycled the server's graceful way (uWSGI: SIGHUP to the worker; Gunicorn: SIGTERM from the
arbiter): it stops accepting, finishes the requests it holds, exits, and a replacement is forked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .jsonrelay import say

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
# uWSGI's min-worker-lifetime: a worker is left its first 10 s, so a bound below the loaded app's own
# size recycles each worker every 10 s rather than in a loop of forks.
MIN_LIFETIME_S = 10.0
# Seconds between sweeps: a leak grows over minutes, not within a second.
SWEEP_INTERVAL_S = 1.0


def children(pid: int, proc: Path = Path("/proc")) -> list[int]:
    """The processes pid forked (uWSGI's workers, for the master)."""
    found: list[int] = []
    try:
        tasks = list((proc / str(pid) / "task").iterdir())
        for task in tasks:
            found.extend(int(child) for child in (task / "children").read_text().split())
    except FileNotFoundError:
        # Gone, or a kernel without CONFIG_PROC_CHILDREN: ask every process for its parent instead.
        return _children_by_parent(pid, proc)
    except (OSError, ValueError):
        return []
    return sorted(set(found))


def _children_by_parent(pid: int, proc: Path) -> list[int]:
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry.name, proc)[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(int(entry.name))
    return sorted(found)


def _stat_fields(pid: int | str, proc: Path) -> list[str]:
    """The fields of /proc/PID/stat after the command name: the state (field 3) first."""
    stat = (proc / str(pid) / "stat").read_text()
    # The command name, in parentheses, may hold spaces and parentheses: count from its last one.
    return stat[stat.rindex(")") + 2 :].split()


def resident_mb(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Resident memory of pid in MiB (what reload-on-rss compares); None once it has gone."""
    try:
        resident_pages = int((proc / str(pid) / "statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * PAGE_BYTES / (1024 * 1024)


def age_s(pid: int, proc: Path = Path("/proc")) -> float | None:
    """Seconds since pid started; None once it has gone."""
    try:
        started_ticks = int(_stat_fields(pid, proc)[19])  # field 22, starttime: clock ticks since boot
    except (OSError, ValueError, IndexError):
        return None
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started_ticks / TICKS_PER_SECOND


def _plain(message: str) -> None:
    say(message, as_json=False)


@dataclass
class MemoryBound:
    """Recycle each worker once its resident memory reaches limit_mb, by the server's own graceful way."""

    limit_mb: int
    # Asks one worker (by pid) to finish its requests and exit; raises ProcessLookupError if it has gone.
    recycle: Callable[[int], None]
    min_lifetime_s: float = MIN_LIFETIME_S
    interval_s: float = SWEEP_INTERVAL_S
    proc: Path = Path("/proc")
    # Writes a notice to stderr in one write: plain, unless the server's lines are relayed as JSON (jsonrelay.say).
    say: Callable[[str], None] = _plain
    # Workers already told: a worker finishing its requests is not told again.
    told: set[int] = field(default_factory=set)
    _next_sweep: float = 0.0

    def sweep(self, workers: Callable[[], Iterable[int]]) -> list[int]:
        """Recycle the workers past the bound (looked at once per interval at most); the pids recycled."""
        now = time.monotonic()
        if self.limit_mb <= 0 or now < self._next_sweep:
            return []
        self._next_sweep = now + self.interval_s
        alive = set(workers())
        self.told &= alive
        recycled = []
        for pid in sorted(alive - self.told):
            resident = resident_mb(pid, self.proc)
            age = age_s(pid, self.proc)
            if resident is None or age is None or resident < self.limit_mb or age < self.min_lifetime_s:
                continue
            try:
                self.recycle(pid)
            except ProcessLookupError:
                continue
            self.told.add(pid)
            recycled.append(pid)
            self.say(
                f"flaskprod: worker (pid: {pid}) resident {resident:.0f} MiB, past server.recycle_memory_mb "
                f"= {self.limit_mb}: recycling it gracefully"
            )
        return recycled


def signal_to(signum: int) -> Callable[[int], None]:
    """A recycle that sends pid signum (uWSGI recycles a worker gracefully on SIGHUP)."""

    def send(pid: int) -> None:
        os.kill(pid, signum)

    return send
