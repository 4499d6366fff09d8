"""Sizing: cgroup-aware machine detection and the derived values, fed fake cgroup trees."""

from __future__ import annotations

from pathlib import Path

import pytest

from flaskprod.errors import SpecError
from flaskprod.servers.affinity import cpu_for, free_slot
from flaskprod.sizing import (
    MIB,
    Machine,
    auto_workers,
    db_pool,
    derive,
    detect_machine,
    max_body_bytes,
    timeouts,
    worker_class,
)
from flaskprod.spec import Spec
from tests.buildkit import write_tree

GIB = 1024 * MIB


def tree(root: Path, files: dict[str, str], mem_total_kib: int = 16 * 1024 * 1024) -> Path:
    """A fake filesystem root with /proc/meminfo and the given cgroup files."""
    return write_tree(root, {"proc/meminfo": f"MemTotal:       {mem_total_kib} kB\nMemFree: 1 kB\n", **files})


def test_v2_quota_and_memory(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cpu.max": "150000 100000\n",
            "sys/fs/cgroup/memory.max": f"{2 * GIB}\n",
        },
    )
    machine = detect_machine(root, affinity=8)
    assert machine == Machine(cpus=1.5, memory=2 * GIB, cpuset=8)
    assert machine.cores == 2
    assert not machine.owns_cpus  # a quota of 1.5 on 8 shared cores


def test_v2_max_means_no_limit(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/memory.max": "max\n",
        },
        mem_total_kib=4 * 1024 * 1024,
    )
    machine = detect_machine(root, affinity=4)
    assert machine == Machine(cpus=4.0, memory=4 * GIB, cpuset=4)
    assert machine.owns_cpus


def test_v2_nested_cgroup_takes_tightest_ancestor(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "proc/self/cgroup": "0::/kubepods/pod1/app\n",
            "sys/fs/cgroup/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/pod1/cpu.max": "50000 100000\n",
            "sys/fs/cgroup/kubepods/pod1/app/cpu.max": "max 100000\n",
            "sys/fs/cgroup/kubepods/memory.max": f"{GIB}\n",
            "sys/fs/cgroup/kubepods/pod1/app/memory.max": "max\n",
        },
    )
    machine = detect_machine(root, affinity=16)
    assert machine == Machine(cpus=0.5, memory=GIB, cpuset=16)
    assert machine.cores == 1


def test_v1_quota_and_memory(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
            "sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": f"{512 * MIB}\n",
        },
    )
    assert detect_machine(root, affinity=32) == Machine(cpus=2.0, memory=512 * MIB, cpuset=32)


def test_v1_unlimited(tmp_path: Path) -> None:
    root = tree(
        tmp_path,
        {
            "sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
            "sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
            "sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n",
        },
        mem_total_kib=8 * 1024 * 1024,
    )
    assert detect_machine(root, affinity=6) == Machine(cpus=6.0, memory=8 * GIB, cpuset=6)


def test_no_cgroups_uses_affinity_and_meminfo(tmp_path: Path) -> None:
    root = tree(tmp_path, {}, mem_total_kib=1024 * 1024)
    assert detect_machine(root, affinity=3) == Machine(cpus=3.0, memory=GIB, cpuset=3)


def test_affinity_below_quota_wins(tmp_path: Path) -> None:
    root = tree(tmp_path, {"proc/self/cgroup": "0::/\n", "sys/fs/cgroup/cpu.max": "400000 100000\n"})
    machine = detect_machine(root, affinity=2)
    assert machine.cpus == 2.0
    assert machine.owns_cpus  # a quota of 4 does not narrow 2 cores


@pytest.mark.parametrize(
    ("cpus", "memory", "worker_mb", "cap", "expected"),
    [
        (2, 16 * GIB, 128, None, 5),  # 2 x 2 + 1
        (4, 16 * GIB, 128, None, 9),
        (8, 1 * GIB, 128, None, 6),  # 0.75 GiB / 128 MiB: memory caps it
        (8, 1 * GIB, 100, None, 7),
        (0.5, 16 * GIB, 128, None, 3),  # a half-CPU quota counts as one core
        (16, 64 * GIB, 128, 8, 8),  # explicit cap
        (2, 64 * MIB, 128, None, 1),  # never below one
    ],
)
def test_auto_workers(cpus: float, memory: int, worker_mb: int, cap: int | None, expected: int) -> None:
    assert auto_workers(Machine(cpus=cpus, memory=memory), worker_mb, cap) == expected


@pytest.mark.parametrize(
    ("cpus", "memory", "expected"),
    [
        (2, 16 * GIB, 2),  # one process per core: threads wait on I/O, processes use the cores
        (8, 16 * GIB, 8),
        (1, 16 * GIB, 2),  # never fewer than 2: one serves while the other is recycled
        (0.5, 16 * GIB, 2),
        (8, 256 * MIB, 1),  # memory still caps it
    ],
)
def test_auto_workers_with_threads(cpus: float, memory: int, expected: int) -> None:
    assert auto_workers(Machine(cpus=cpus, memory=memory), 128, threads=8) == expected


def test_derive_uses_measured_worker_memory_unless_configured() -> None:
    machine = Machine(cpus=8, memory=2 * GIB)
    assert derive(Spec(), machine, worker_mb=300).workers == 5  # 1.5 GiB / 300 MiB
    configured = Spec().replace(**{"server.worker_memory_mb": 512})
    assert derive(configured, machine, worker_mb=300).workers == 3
    assert derive(Spec().replace(**{"server.workers": 2}), machine).workers == 2


def test_worker_class_follows_threads() -> None:
    assert worker_class(Spec()) == "gthread"  # threads = 12 by default
    assert worker_class(Spec().replace(**{"server.threads": 1})) == "sync"
    assert worker_class(Spec().replace(**{"server.threads": 4})) == "gthread"
    assert worker_class(Spec().replace(**{"server.threads": 4, "server.worker_class": "gevent"})) == "gevent"


def test_timeout_chain_is_ordered() -> None:
    spec = Spec().replace(**{"server.timeout": 20, "server.graceful_timeout": 25, "server.keepalive": 5})
    chain = timeouts(spec)
    # The app answers 504 first, nginx for what the app could not stop, then the hard kill frees the worker.
    assert chain.server > chain.proxy_read > chain.request == 20
    assert chain.shutdown_grace > chain.graceful == 25
    drained = timeouts(spec.replace(**{"server.drain_delay": 10}))
    assert drained.shutdown_grace > drained.drain + drained.graceful == 35
    assert chain.upstream_keepalive < chain.keepalive


def test_max_requests_jitter_on_by_default_and_tmp_dir(tmp_path: Path) -> None:
    derived = derive(Spec(), Machine(cpus=2, memory=8 * GIB), shm=tmp_path)
    assert derived.max_requests > 0 and derived.max_requests_jitter > 0
    assert derived.recycle_memory_mb >= 512  # Gunicorn recycles by memory too, beside the count
    assert derived.worker_tmp_dir == str(tmp_path)
    assert derive(Spec(), Machine(cpus=2, memory=8 * GIB), shm=tmp_path / "absent").worker_tmp_dir is None
    off = derive(Spec().replace(**{"server.max_requests": 0}), Machine(cpus=2, memory=8 * GIB))
    assert off.max_requests_jitter == 0


@pytest.mark.parametrize(("processes", "threads", "budget"), [(5, 1, 80), (9, 4, 80), (20, 8, 40), (3, 16, 100)])
def test_pool_stays_within_budget(processes: int, threads: int, budget: int) -> None:
    spec = Spec().replace(**{"database.connection_budget": budget})
    pool = db_pool(spec, processes, threads)
    assert pool.size >= 1
    assert processes * (pool.size + pool.overflow) <= budget
    assert pool.size <= threads


def test_replicas_multiply_processes_for_the_budget() -> None:
    spec = Spec().replace(**{"server.workers": 5, "server.threads": 8, "database.connection_budget": 60})
    one = derive(spec, Machine(cpus=2, memory=8 * GIB)).pool
    three = derive(spec, Machine(cpus=2, memory=8 * GIB), replicas=3).pool
    assert 5 * (one.size + one.overflow) <= 60 and 15 * (three.size + three.overflow) <= 60
    assert three.size < one.size


def test_explicit_pool_over_budget_is_an_error() -> None:
    spec = Spec().replace(**{"database.pool_size": 10, "database.connection_budget": 20})
    with pytest.raises(SpecError, match=r"needs 60 connections for 5 processes, over database\.connection_budget 20"):
        db_pool(spec, 5, 1)


def test_budget_below_processes_is_an_error() -> None:
    with pytest.raises(SpecError, match="less than the 9 app processes"):
        db_pool(Spec().replace(**{"database.connection_budget": 4}), 9, 1)


def test_uwsgi_recycles_by_memory_not_by_request_count_unless_told() -> None:
    machine = Machine(cpus=2, memory=8 * GIB)
    uwsgi = Spec().replace(**{"server.kind": "uwsgi"})
    derived = derive(uwsgi, machine, worker_mb=90)
    assert (derived.max_requests, derived.max_requests_jitter) == (0, 0)
    assert derived.recycle_memory_mb == 512  # 4 x 90 MiB is under the floor
    assert derive(uwsgi, machine, worker_mb=300).recycle_memory_mb == 1200
    told = derive(uwsgi.replace(**{"server.max_requests": 2000, "server.recycle_memory_mb": 0}), machine)
    assert (told.max_requests, told.recycle_memory_mb) == (2000, 0)
    measured = uwsgi.replace(**{"server.worker_memory_mb": 200})
    assert derive(measured, machine, worker_mb=90).recycle_memory_mb == 800  # the setting wins over the probe


@pytest.mark.parametrize(
    ("threads", "workers", "machine", "expected"),
    [
        (12, 2, Machine(cpus=2, memory=8 * GIB, cpuset=2), True),  # the default on 2 whole CPUs
        (4, 3, Machine(cpus=4, memory=8 * GIB, cpuset=4), True),  # fewer workers than CPUs
        (1, 2, Machine(cpus=2, memory=8 * GIB, cpuset=2), False),  # single-threaded: the scheduler balances
        (12, 3, Machine(cpus=2, memory=8 * GIB, cpuset=2), False),  # more workers than CPUs would share one
        (12, 2, Machine(cpus=2, memory=8 * GIB, cpuset=8), False),  # a 2-CPU quota on 8 shared cores
        (12, 1, Machine(cpus=1, memory=8 * GIB, cpuset=1), False),  # one CPU: nothing to choose
        (12, 2, Machine(cpus=2, memory=8 * GIB), False),  # CPU set unknown
    ],
)
def test_auto_cpu_affinity_pins_threaded_workers_that_each_get_a_whole_cpu(
    threads: int, workers: int, machine: Machine, expected: bool
) -> None:
    spec = Spec().replace(**{"server.threads": threads, "server.workers": workers})
    assert derive(spec, machine).cpu_affinity is expected


def test_cpu_affinity_setting_overrides_auto() -> None:
    shared = Machine(cpus=2, memory=8 * GIB, cpuset=8)
    assert derive(Spec().replace(**{"server.cpu_affinity": True}), shared).cpu_affinity is True
    whole = Machine(cpus=2, memory=8 * GIB, cpuset=2)
    assert derive(Spec().replace(**{"server.cpu_affinity": False}), whole).cpu_affinity is False


def test_worker_slots_map_onto_the_cpus_this_process_may_use() -> None:
    assert [cpu_for(slot, {5, 4}) for slot in range(3)] == [4, 5, 4]  # a container given CPUs 4-5
    assert free_slot([], 2) == 0
    assert free_slot([0], 2) == 1
    assert free_slot([1], 2) == 0  # a replacement takes the slot its predecessor left
    assert free_slot([0, 1], 2) == 0  # during a reload, old and new workers wrap around


@pytest.mark.parametrize(
    ("app_limits", "expected"),
    [
        ((), 10 * MIB),  # nothing learnt of the app: proxy.max_body_size, which Production(app) gives it
        ((10 * MIB,), 10 * MIB),  # Production(app) set it from proxy.max_body_size
        ((20 * MIB,), 20 * MIB),  # the app's own, which it keeps: nginx refused its 11 MiB uploads
        ((MIB,), MIB),  # a smaller one of its own: nginx answers 413 first, as for any limit of the app's
        ((None,), 10 * MIB),  # the app reads any size: nginx still bounds what it spools to disk
        ((0,), 1),  # Flask's 0 is "no body", nginx's "no limit": one byte, which the app refuses itself
        ((3 * MIB, 20 * MIB), 20 * MIB),  # two releases (a canary): nginx passes what either takes
        ((None, MIB), 10 * MIB),
    ],
)
def test_nginxs_body_limit_is_the_apps_max_content_length(app_limits: tuple[int | None, ...], expected: int) -> None:
    assert max_body_bytes(Spec(), app_limits) == expected


def test_derive_takes_the_body_limit_from_the_app() -> None:
    machine = Machine(cpus=2, memory=8 * GIB)
    assert derive(Spec(), machine, app_body_limit=20 * MIB).max_body_bytes == 20 * MIB
    assert derive(Spec(), machine, app_body_limit=None).max_body_bytes == 10 * MIB
    assert derive(Spec().replace(**{"proxy.max_body_size": "0"}), machine).max_body_bytes == 1
