"""Thread pools the app started before its server forked, made to run work again in each forked worker.

uWSGI's master imports the app and forks the workers (Gunicorn's with server.preload): a
concurrent.futures.ThreadPoolExecutor whose threads started as the app was imported (a warm-up task, work submitted
at import) has, in each worker, only the records of threads that did not survive the fork. The executor counts them
toward max_workers and takes an idle one as free, so it starts no thread, and the work a request submits (an email
sent after the response) was queued and never run: not served, not cut at the stop, just lost, with no error.
"""

from __future__ import annotations

import os
import queue
import threading
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
    """The executors, not shut down, with a thread the fork left behind: each thread's target holds a weak reference
    to its executor."""
    pools: dict[int, ThreadPoolExecutor] = {}
    for thread in list(pool_threads._threads_queues):
        if thread.is_alive():
            continue
        args = getattr(thread, "_args", ())  # Thread.run deletes it once its target returns: never, here
        executor = args[0]() if args else None
        if isinstance(executor, ThreadPoolExecutor) and not executor._shutdown:
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
