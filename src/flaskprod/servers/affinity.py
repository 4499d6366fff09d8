"""Pinning workers to CPUs (server.cpu_affinity): worker slot n runs on the n-th CPU this process may use.

Both servers number their workers' slots from 0: uWSGI by worker id, Gunicorn by the lowest slot no
live worker holds, so a replacement worker takes over the core of the one it replaces. The CPUs are
those of the affinity mask, not 0..n-1, so a container given CPUs 4-5 pins to 4 and 5.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

# Attribute a Gunicorn worker object carries from the arbiter's pre_fork to the child's post_fork.
SLOT = "flaskprod_cpu_slot"


def cpu_for(slot: int, allowed: Iterable[int]) -> int:
    cpus = sorted(allowed)
    return cpus[slot % len(cpus)]


def pin(slot: int) -> int:
    """Pin the calling process (all its threads to come) to the slot's CPU; the CPU chosen."""
    cpu = cpu_for(slot, os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    return cpu


def free_slot(taken: Iterable[int], workers: int) -> int:
    """The lowest slot no live worker holds; past the worker count (old and new workers during a reload) wrap."""
    used = set(taken)
    for slot in range(workers):
        if slot not in used:
            return slot
    return len(used) % max(1, workers)
