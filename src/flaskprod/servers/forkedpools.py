"""Thread pools the app started before its server forked, made to run work again in each forked worker.

uWSGI's master imports the app and forks the workers (Gunicorn's with server.preload): a
concurrent.futures.ThreadPoolExecutor whose threads started as the app was imported (a warm-up task, work submitted
at import) has, in each worker, only the records of threads that did not survive the fork. The executor counts them
toward max_workers and takes an idle one as free, so it starts no thread, and the work a request submits (an email
sent after the response) was queued and never run: not served, not cut at the stop, just lost, with no error.
"""

from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import thread as pool_threads
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
    """The live threads of this process's concurrent.futures thread pools: work the app gave them, no poller."""
    return {t for t in list(pool_threads._threads_queues) if t.is_alive()}


def finish_pools_work(deadline: float) -> set[threading.Thread]:
    """Shut every live thread pool down once its queued work is done, waiting until deadline (time.monotonic()); the
    pools' threads still running then.

    In the process that imports the app and forks (uWSGI's master, Gunicorn's with server.preload) the pools run what
    the app submitted as it was imported; that process ends past the app's threads (a poller never ends), and ended
    with the work still queued: cut, never run. A pool's shutdown queues its end behind that work."""
    threads = live_pool_threads()
    for executor in {id(e): e for t in threads if (e := _executor_of(t)) is not None}.values():
        executor.shutdown(wait=False)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return {t for t in threads if t.is_alive()}


def _executor_of(thread: threading.Thread) -> ThreadPoolExecutor | None:
    """The pool whose thread this is: its target holds a weak reference to the executor."""
    args = getattr(thread, "_args", ())  # Thread.run deletes it once its target returns: never, while it runs
    executor = args[0]() if args else None
    return executor if isinstance(executor, ThreadPoolExecutor) else None


# The C exit hook finish_pools_work_at_exit registered: kept referenced, as C holds only its address.
_exit_hook: Any = None


def finish_pools_work_at_exit(grace: float) -> None:
    """In uWSGI's master: as it exits, its thread pools' queued work is finished first, for up to grace seconds.

    The master runs no Python as it exits (uWSGI skips its plugins' exit handlers there, Python's atexit among them),
    and its C exit() ended the process with the work the app submitted at import still queued: cut, never run. A C
    exit handler is the one hook left; in the workers forked from here it does nothing, as Python's exit is theirs."""
    global _exit_hook
    if _exit_hook is not None:
        return
    master = os.getpid()

    def finish(_: object) -> None:
        if os.getpid() == master:
            finish_pools_work(time.monotonic() + grace)

    # ctypes takes the GIL around the call, which the master does not hold. __cxa_atexit is what C's atexit() calls
    # (glibc exports no atexit symbol); with no library handle the hook runs at exit(), before uWSGI's own.
    _exit_hook = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(finish)
    ctypes.CDLL(None).__cxa_atexit(_exit_hook, None, None)
