"""The memory bound (server.recycle_memory_mb) on real processes: a stand-in master and the workers it forks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flaskprod.servers.memorybound import MemoryBound, age_s, children, resident_mb, signal_to
from tests.support import wait_for

# A master that forks two workers; each worker records SIGHUP in its own file and exits, as uWSGI's do.
MASTER = """
import os, signal, sys, time
out = sys.argv[1]
for n in range(2):
    if os.fork() == 0:
        def recycled(signum, frame):
            open(os.path.join(out, str(os.getpid())), "w").close()
            os._exit(0)
        signal.signal(signal.SIGHUP, recycled)
        block = bytearray(8 * 1024 * 1024)  # resident: a worker of at least 8 MiB
        for i in range(0, len(block), 4096):
            block[i] = 1
        while True:
            time.sleep(1)
while True:
    time.sleep(1)
"""


@pytest.fixture
def master(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    proc = subprocess.Popen([sys.executable, "-c", MASTER, str(tmp_path)], start_new_session=True)
    try:
        wait_for(lambda: len(children(proc.pid)) == 2, timeout=10)
        yield proc, tmp_path
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def recycled(out: Path) -> set[int]:
    return {int(p.name) for p in out.iterdir()}


def test_reads_the_workers_of_a_master_their_memory_and_age(master: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, _ = master
    workers = children(proc.pid)
    assert len(workers) == 2 and proc.pid not in workers
    wait_for(lambda: all((resident_mb(w) or 0) >= 8 for w in workers), timeout=10)
    ages = [age_s(w) for w in workers]
    assert all(a is not None and 0 <= a < 60 for a in ages), ages
    own = resident_mb(os.getpid())
    assert own is not None and own > 8
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert (children(gone.pid), resident_mb(gone.pid), age_s(gone.pid)) == ([], None, None)


def test_workers_past_the_bound_get_sighup_once(master: tuple[subprocess.Popen[bytes], Path]) -> None:
    proc, out = master
    workers = children(proc.pid)
    wait_for(lambda: all((resident_mb(w) or 0) >= 8 for w in workers), timeout=10)
    hup = signal_to(signal.SIGHUP)
    # Under the bound, or too young: left be.
    assert MemoryBound(limit_mb=100_000, recycle=hup, min_lifetime_s=0).sweep(lambda: workers) == []
    assert MemoryBound(limit_mb=1, recycle=hup, min_lifetime_s=3600).sweep(lambda: workers) == []
    said: list[str] = []
    bound = MemoryBound(limit_mb=1, recycle=hup, min_lifetime_s=0, interval_s=3600, say=said.append)
    assert bound.sweep(lambda: children(proc.pid)) == sorted(workers)
    wait_for(lambda: recycled(out) == set(workers), timeout=10)
    # One whole line each, through the writer the server gives (jsonrelay.say: one write, JSON under uWSGI's relay).
    assert [line.split(" resident ")[0] for line in said] == [f"flaskprod: worker (pid: {w})" for w in sorted(workers)]
    # The next sweep waits for its interval.
    assert bound.sweep(lambda: children(proc.pid)) == []


def test_a_worker_told_is_not_told_again_while_it_finishes(tmp_path: Path) -> None:
    # A worker that ignores SIGHUP (busy finishing its requests) is signalled once, not every sweep.
    ready = tmp_path / "ready"
    code = (
        "import os, signal, sys, time\n"
        "if os.fork() == 0:\n"
        "    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "    open(sys.argv[1], 'w').close()\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(ready)], start_new_session=True)
    try:
        wait_for(ready.exists, timeout=10)
        worker = children(proc.pid)
        bound = MemoryBound(limit_mb=1, recycle=signal_to(signal.SIGHUP), min_lifetime_s=0, interval_s=0)
        assert bound.sweep(lambda: children(proc.pid)) == worker and len(worker) == 1
        assert bound.sweep(lambda: children(proc.pid)) == []
        assert children(proc.pid) == worker  # still alive, still told
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_without_children_files_the_parents_are_asked(tmp_path: Path) -> None:
    # A kernel built without CONFIG_PROC_CHILDREN has no task/*/children: each process's stat names its parent.
    (tmp_path / "100" / "task" / "100").mkdir(parents=True)
    for pid, parent in ((200, 100), (201, 100), (300, 1)):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (uWSGI worker 1) S {parent} 100 100 0 -1 4194560 0")
    (tmp_path / "self").mkdir()
    assert children(100, tmp_path) == [200, 201]
    assert children(999, tmp_path) == []


def test_a_worker_gone_before_its_recycle_is_skipped() -> None:
    def gone(pid: int) -> None:
        raise ProcessLookupError(pid)

    bound = MemoryBound(limit_mb=1, recycle=gone, min_lifetime_s=0, interval_s=0)
    assert bound.sweep(lambda: [os.getpid()]) == [] and bound.told == set()


def test_no_bound_looks_at_nothing() -> None:
    def looked() -> list[int]:
        raise AssertionError("a bound of 0 lists no workers")

    assert MemoryBound(limit_mb=0, recycle=signal_to(signal.SIGHUP)).sweep(looked) == []
