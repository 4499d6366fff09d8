"""Thread pools the app started before its server forked, made to run work again in each forked worker.

uWSGI's master imports the app and forks the workers (Gunicorn's with server.preload): a
concurrent.futures.ThreadPoolExecutor whose threads started as the app was imported (a warm-up task, work submitted
at import) has, in each worker, only the records of threads that did not survive the fork. The executor counts them
toward max_workers and takes an idle one as free, so it starts no thread, and the work a request submits (an email
sent after the response) was queued and never run: not served, not cut at the stop, just lost, with no error.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import queue
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import thread as pool_threads
from pathlib import Path
from typing import Any

_registered = False


def repair_after_fork() -> None:
    """Once per process: in every child this process forks, the pools it forked with start threads afresh."""
    global _registered
    if not _registered:
        _registered = True
        os.register_at_fork(after_in_child=_restart_forked_pools)


def _restart_forked_pools() -> None:
    # Registered after threading's own fork hook, so a thread left behind by the fork reads as not alive here.
    for executor in _forked_pools():
        executor._shutdown_lock = threading.Lock()  # a thread the fork left behind may have held the parent's
        executor._threads = {t for t in executor._threads if t.is_alive()}
        executor._idle_semaphore = threading.Semaphore(0)
        _drop_parents_work(executor._work_queue)
    for pool in _forked_thread_pools():
        _restart_thread_pool(pool)
    _forget_parents_processes()


def _thread_pools() -> list[Any]:
    """The multiprocessing.pool.ThreadPools of this process not terminated (running, or closed and finishing), found
    by the exit finalizer each registers (there is no other record of them); none unless multiprocessing.pool was
    imported."""
    pools_module = sys.modules.get("multiprocessing.pool")
    finalizers = sys.modules.get("multiprocessing.util")
    if pools_module is None or finalizers is None:
        return []
    pools = []
    for finalizer in list(finalizers._finalizer_registry.values()):
        pool = finalizer._weakref() if getattr(finalizer, "_weakref", None) is not None else None
        if isinstance(pool, pools_module.ThreadPool) and pool._state in (pools_module.RUN, pools_module.CLOSE):
            pools.append(pool)
    return pools


def _forked_thread_pools() -> list[Any]:
    """The ThreadPools whose handler thread the fork left behind (read as not alive here): in this child, the work
    a request gives one was queued for threads that do not exist, and never ran (its result waited for ever)."""
    return [pool for pool in _thread_pools() if pool._state == "RUN" and not pool._task_handler.is_alive()]


def _restart_thread_pool(pool: Any) -> None:
    """The pool built afresh in this child, as it was made: new queues (the parent's could be locked, and the work in
    them is the parent's, which its threads run), new threads. The parent's exit finalizer is dropped first: at this
    child's exit it would end the parent's threads, not these."""
    pool._terminate.cancel()
    pool.__init__(pool._processes, pool._initializer, pool._initargs)


def _forget_parents_processes() -> None:
    """The processes multiprocessing started in the parent (a multiprocessing.Pool's, a ProcessPoolExecutor's) are not
    this child's: at its exit, multiprocessing sent the daemonic ones SIGTERM and joined the others (an
    AssertionError's traceback). A pool process killed so while holding its pool's queue lock left Gunicorn's
    preloaded master waiting for that lock at its own exit, for ever. multiprocessing clears the record the same way
    in each process it starts itself."""
    started = sys.modules.get("multiprocessing.process")
    if started is not None:
        started._children = set()  # type: ignore[attr-defined]


def _forked_pools() -> list[ThreadPoolExecutor]:
    """The executors, not shut down, with a thread the fork left behind."""
    pools: dict[int, ThreadPoolExecutor] = {}
    for thread in list(pool_threads._threads_queues):
        if thread.is_alive():
            continue
        executor = _executor_of(thread)
        if executor is not None and not executor._shutdown:
            pools[id(executor)] = executor
    return list(pools.values())


def _drop_parents_work(work: queue.SimpleQueue[Any]) -> None:
    """Work queued before the fork is the parent's, whose threads run it: run here as well, each worker would do it
    again (the email sent once per worker)."""
    while True:
        try:
            work.get_nowait()
        except queue.Empty:
            return


def live_pool_threads() -> set[threading.Thread]:
    """The live threads of this process's thread pools (concurrent.futures's, multiprocessing.pool.ThreadPool's): work
    the app gave them, no poller."""
    threads = {t for t in list(pool_threads._threads_queues) if t.is_alive()}
    return threads | {t for pool in _thread_pools() for t in _threads_of(pool) if t.is_alive()}


def _threads_of(pool: Any) -> list[threading.Thread]:
    """A ThreadPool's threads: its workers and the three that feed them."""
    return [*pool._pool, pool._worker_handler, pool._task_handler, pool._result_handler]


def finish_pools_work(deadline: float) -> set[threading.Thread]:
    """Shut every live thread pool down once its queued work is done, waiting until deadline (time.monotonic()); the
    pools' threads still running then.

    In the process that imports the app and forks (uWSGI's master, Gunicorn's with server.preload) the pools run what
    the app submitted as it was imported; that process ends past the app's threads (a poller never ends), and ended
    with the work still queued: cut, never run. A pool's shutdown queues its end behind that work."""
    threads = live_pool_threads()
    for executor in {id(e): e for t in threads if (e := _executor_of(t)) is not None}.values():
        executor.shutdown(wait=False)
    for pool in _thread_pools():
        pool.close()  # its threads end once the work queued is done; at exit, multiprocessing's finalizer cut it
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {t for t in threads if t.is_alive()}


def _executor_of(thread: threading.Thread) -> ThreadPoolExecutor | None:
    """The pool whose thread this is: its target holds a weak reference to the executor."""
    args = getattr(thread, "_args", ())  # Thread.run deletes it once its target returns: never, while it runs
    # A ThreadPool's threads have args too, not a weak reference first.
    executor = args[0]() if args and isinstance(args[0], weakref.ref) else None
    return executor if isinstance(executor, ThreadPoolExecutor) else None


# The C exit hook finish_pools_work_at_exit registered: kept referenced, as C holds only its address.
_exit_hook: Any = None


def finish_pools_work_at_exit(grace: float, stop_by_file: Path | None) -> None:
    """In uWSGI's master: as it exits, its thread pools' queued work is finished first, until the deadline serve wrote
    into stop_by_file as it told uWSGI to stop (server.graceful_timeout from then), else for grace seconds.

    Counted from the master's own exit, which comes once the workers have finished their requests, the wait outlasted
    the timeout serve keeps: serve killed the master mid-wait, saying falsely that the workers were still running.

    The master runs no Python as it exits (uWSGI skips its plugins' exit handlers there, Python's atexit among them),
    and its C exit() ended the process with the work the app submitted at import still queued: cut, never run. A C
    exit handler is the one hook left; the workers forked from here drop it, as Python's exit is theirs."""
    global _exit_hook
    if _exit_hook is not None:
        return
    master = os.getpid()

    def finish(_: object) -> None:
        if os.getpid() == master:
            deadline, why = _finish_by_the_stop(grace, stop_by_file)
            if live_pool_threads():
                print(f"flaskprod: cutting the work still queued in the app's thread pools in uWSGI's master: {why}",
                      file=sys.stderr, flush=True)
            end_process_pools(deadline)
            # Python's exit would end multiprocessing's processes too (the daemonic a multiprocessing.Pool runs):
            # left, they outlived serve.
            if (started := sys.modules.get("multiprocessing.util")) is not None:
                _within(deadline, started._exit_function)
            _kill_processes_left()

    # ctypes takes the GIL around the call, which the master does not hold. __cxa_atexit is what C's atexit() calls
    # (glibc exports no atexit symbol); with no library handle the hook runs at exit(), before uWSGI's own. Registered
    # under a handle of its own, so that each worker drops it as it is forked (_drop_exit_hook): a worker told to stop
    # at once (SIGINT) exits from its signal handler with Python already finalized, and entering the hook there to
    # find it was not the master crashed the worker (a segfault's backtrace in the log at every Ctrl-C).
    _exit_hook = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(finish)
    ctypes.CDLL(None).__cxa_atexit(_exit_hook, None, ctypes.addressof(_EXIT_HOOK_HANDLE))
    os.register_at_fork(after_in_child=_drop_exit_hook)


def _kill_processes_left() -> None:
    """The processes multiprocessing started here that its exit did not end by the stop's deadline (after a stop at
    once, none was given), killed: the master's exit would leave them running, orphaned, in serve's process group."""
    started = sys.modules.get("multiprocessing.process")
    for process in list(getattr(started, "_children", ())):
        popen = getattr(process, "_popen", None)
        if popen is not None and popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGKILL)


# The handle the exit hook is registered under, its address unique to it.
_EXIT_HOOK_HANDLE = ctypes.c_char()


def _drop_exit_hook() -> None:
    """In a forked child: run the master's exit hook now, where it does nothing (not the master) and is safe, which
    takes it off the child's exit handlers."""
    ctypes.CDLL(None).__cxa_finalize(ctypes.addressof(_EXIT_HOOK_HANDLE))


# Seconds between looks at the stop-by file while the pools' work runs.
STOP_BY_POLL = 0.1


def _finish_by_the_stop(grace: float, stop_by_file: Path | None) -> tuple[float, str]:
    """Let the pools finish their work until the stop's deadline, and that deadline and why it ends the wait.

    The deadline is serve's, read again as the work runs: after Ctrl-C at a terminal, or systemd's SIGTERM to the
    whole group, the master hears the signal as soon as serve and may reach its exit before serve wrote the file.
    Without one (uWSGI exiting on its own) it is grace seconds from now."""
    fallback = (time.monotonic() + grace, f"server.graceful_timeout = {grace:g}s ran out")
    while True:
        deadline, why = _stop_by(stop_by_file) or fallback
        step = min(deadline, time.monotonic() + STOP_BY_POLL)
        if not finish_pools_work(step) or time.monotonic() >= deadline:
            return deadline, why


def _stop_by(stop_by_file: Path | None) -> tuple[float, str] | None:
    """The stop's deadline serve wrote, and why it ends the wait, if serve told this process to stop (not so when
    uWSGI exits on its own): its first line is the deadline (time.monotonic()), its second the reason."""
    try:
        deadline, why = stop_by_file.read_text().split("\n", 1) if stop_by_file is not None else ("", "")
        return (float(deadline), why.strip()) if deadline else None
    except (OSError, ValueError):
        return None


def process_pools_told(master: str) -> str | None:
    """The warning for the process pools the app started as it was imported, where master forks the workers; None
    when there are none. Unlike a thread pool, such a pool cannot be given fresh threads in a worker: its processes
    are the master's, fed by its helper threads, which the fork leaves behind. A ProcessPoolExecutor never used at
    import starts its processes in each worker on first use, and is no concern."""
    # A ThreadPool's helper threads look like a Pool's; it is started afresh in each worker (_restart_thread_pool).
    thread_pools = {t for pool in _thread_pools() for t in _threads_of(pool)}
    kinds = sorted({
        kind for thread in threading.enumerate()
        if thread not in thread_pools and (kind := _process_pool_of(thread)) is not None
    })
    if not kinds:
        return None
    its = "its" if len(kinds) == 1 else "their"
    return (
        f"flaskprod: {' and '.join(kinds)} started by the app as it was imported, in {master}: the fork leaves {its} "
        "helper threads behind, so the work a worker gives it never runs (the request waits for ever); create the "
        "pool in each worker (on the first request, or with "
        "os.register_at_fork(after_in_child=...))"
    )


def _process_pool_of(thread: threading.Thread) -> str | None:
    """The kind of process pool thread helps run, if any."""
    if type(thread).__name__ == "_ExecutorManagerThread":  # a ProcessPoolExecutor, started by its first submit
        return "a concurrent.futures.ProcessPoolExecutor"
    target = getattr(thread, "_target", None)
    if getattr(target, "__qualname__", "").startswith("Pool._handle_"):  # its own and ThreadPool's helper threads
        return "a multiprocessing.Pool"
    return None


def end_process_pools(deadline: float) -> None:
    """End the ProcessPoolExecutors, their queued work done first, waiting until deadline.

    Python's exit does so from a hook of threading's, before its exit handlers; a process that ends past the app's
    threads (a poller) skips that hook, and multiprocessing's exit handler then joined the pool's processes, which
    wait for work for ever: Gunicorn's preloaded master never ended."""
    if (pools := sys.modules.get("concurrent.futures.process")) is not None and pools._threads_wakeups:
        _within(deadline, pools._python_exit)


def _within(deadline: float, call: Callable[[], object]) -> None:
    """call() in a thread of its own, waited for until deadline: past it, this process ends without it."""
    caller = threading.Thread(target=call, name="flaskprod-pools-exit", daemon=True)
    caller.start()
    caller.join(max(0.0, deadline - time.monotonic()))
