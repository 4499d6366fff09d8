"""What a Gunicorn worker does on Ctrl-C: stop at once, let the requests in hand finish, and cut them on a second.

Ctrl-C in a terminal sends SIGINT to the whole group, so each worker gets it, and the arbiter then sends them
SIGQUIT. Gunicorn's own handlers fail at both ends:
- gthread's shuts its thread pool down inside the handler, and Gunicorn's base one raises SystemExit wherever
  the main thread is. Either, landing while that thread holds a lock of the pool (in submit(), say), leaves
  it held, and the worker hangs until graceful_timeout runs out and the arbiter kills it: 30 s in 3 runs of 4
  under load, and 1 in 30 with the base handler.
- The sync worker's (the base one) raises SystemExit inside the request in hand, which is answered 500 with
  its traceback in the log: 4 rounds in 20 of Ctrl-C under load.
Here the worker stops taking connections and exits once the requests in hand are answered, from a point
where it holds no lock. The threaded workers' requests already finished that way (the interpreter joins the
pool's threads on exit). A request that would not end is cut by a second Ctrl-C: SIGINT after the first
stop-now signal, as the arbiter sends workers SIGQUIT, never SIGINT.
"""

from __future__ import annotations

import abc
import atexit
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from gunicorn.workers.sync import SyncWorker

# What a worker takes as "stop now": Ctrl-C in a terminal, and what the arbiter sends it on SIGINT or SIGQUIT.
QUIT_NOW = (signal.SIGINT, signal.SIGQUIT)


class _StopNow(abc.ABC):
    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.stopping = False  # the first stop-now signal came

    def __call__(self, sig: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            # Here, not in exit_now: gthread's loop, seeing alive False, can end before it runs the exit queued to
            # it, and the worker then left through Gunicorn's own sys.exit, where a late SIGQUIT found the default
            # ("was sent SIGQUIT!", once in a CI run under load).
            atexit.register(_ignore_quit)
            self.worker.alive = False
            self.stop()
        elif sig == signal.SIGINT:
            self.cut()

    @abc.abstractmethod
    def stop(self) -> None:
        """The first stop-now signal: stop taking connections, and exit once the requests in hand are done."""

    @abc.abstractmethod
    def cut(self) -> None:
        """A second Ctrl-C: exit without waiting for the requests in hand."""

    def exit_now(self) -> None:
        # Ctrl-C reaches a worker twice within moments (the terminal's SIGINT, then the arbiter's SIGQUIT): the
        # second, however late, must not find the default an exiting interpreter puts back (_ignore_quit, at exit).
        sys.exit(0)


def _ignore_quit() -> None:
    """SIGQUIT ignored from the exiting worker's last steps on.

    An arbiter slow to relay Ctrl-C (under load) can send its SIGQUIT after the interpreter has put the
    default back, whose action kills the worker by the signal ("was sent SIGQUIT"). Once exiting, SIGQUIT can
    only mean "stop now", which this already is, and an ignored signal stays ignored through finalization.
    Done at exit, not in the handler: a SIGQUIT that came with the SIGINT waits for that handler to return,
    and would then find SIG_IGN, which Python reports as a traceback. Blocked first, so none reaches this
    thread between signal.signal running the pending handlers and changing the disposition. SIGINT keeps
    its handler: a second Ctrl-C still cuts the requests in hand.
    """
    if threading.current_thread() is not threading.main_thread():
        # A worker leaving past the app's import-time threads runs the exit handlers from a thread of its own and
        # ends at once (gunicorn._leave_past_threads_started_at_import): the stop-now handler is still in place.
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGQUIT})
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)


class _Threaded(_StopNow):
    """gthread: the exit is queued to the worker's own loop, which runs it between events."""

    def stop(self) -> None:
        self.worker.method_queue.defer(self.exit_now)

    def cut(self) -> None:
        # The main thread is already exiting, waiting on the pool's threads; only the process can end them.
        os._exit(0)


class _Sync(_StopNow):
    """sync: at once between requests, after the request in hand otherwise."""

    def __init__(self, worker: Any) -> None:
        super().__init__(worker)
        self.in_hand = False
        accept = worker.accept

        def accept_in_hand(listener: Any) -> None:
            # The sync worker's accept() also reads and answers the connection's one request.
            self.in_hand = True
            try:
                accept(listener)
            finally:
                # Also when accept() found no connection: a signal that came meanwhile waited for this.
                self.in_hand = False
                if self.stopping:
                    self.exit_now()

        worker.accept = accept_in_hand

    def stop(self) -> None:
        if not self.in_hand:
            self.exit_now()

    def cut(self) -> None:
        # SystemExit inside the request: it is answered 500, its cleanup runs, and the log shows where it was.
        self.exit_now()


def install(worker: Any) -> None:
    """Give the worker the stop-now handler for its kind; one Gunicorn has no hook for keeps its own."""
    if hasattr(worker, "method_queue"):
        handler: _StopNow = _Threaded(worker)
    elif isinstance(worker, SyncWorker):
        handler = _Sync(worker)
    else:
        return
    for sig in QUIT_NOW:
        signal.signal(sig, handler)
