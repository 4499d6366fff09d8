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
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from gunicorn.workers.sync import SyncWorker

from .memorybound import children

# What a worker takes as "stop now": Ctrl-C in a terminal, and what the arbiter sends it on SIGINT or SIGQUIT.
QUIT_NOW = (signal.SIGINT, signal.SIGQUIT)
# Seconds serve waits, once told to stop at once (SIGINT, SIGQUIT), before it kills what is left of its processes and
# exits 1. No setting measures "at once": server.graceful_timeout is SIGTERM's grace (30 s), which a Ctrl-C is pressed
# not to wait for, and a worker that ignores the stop (a view stuck in C code, signals blocked) would have held serve
# for ever on uWSGI, and the master's own exit (with preload, the app's exit handlers) on Gunicorn. The 5 s are
# uwsgi.CUT_GRACE's, what serve already gives uWSGI's master to exit once nothing is left to wait for; a Gunicorn
# request in hand still running then is cut, as a second Ctrl-C would cut it.
STOP_AT_ONCE_BOUND = 5.0


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


def what_is_left(serve: int) -> list[int]:
    """The processes left of serve's (its server's master, workers, and the processes they started), not yet ended
    (zombies, which only a reap removes, count as ended). Where serve leads its process group (its own session, as
    systemd, a container or a terminal's job starts it), every other process of that group: a worker whose master
    ended without it is no longer below serve. Otherwise (serve in a shell's pipeline) only its descendants in the
    group, not its siblings there."""
    group = os.getpgid(serve)
    if group == serve:
        return [pid for pid, pgrp in _groups().items() if pgrp == group and pid != serve]
    found: list[int] = []
    parents = [serve]
    while parents:
        below = [pid for parent in parents for pid in children(parent)]
        found.extend(pid for pid in below if _groups([pid]).get(pid) == group)
        parents = below
    return found


def _groups(pids: list[int] | None = None) -> dict[int, int]:
    """The process group of each live process of pids (every process, without); zombies left out."""
    proc = Path("/proc")
    found = {}
    for pid in pids if pids is not None else [int(e.name) for e in proc.iterdir() if e.name.isdigit()]:
        try:
            stat = (proc / str(pid) / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
            if fields[0] not in ("Z", "X"):
                found[pid] = int(fields[2])
        except (OSError, ValueError, IndexError):
            continue
    return found


def kill_what_is_left(serve: int) -> list[str]:
    """SIGKILL what is left of serve's processes (what_is_left); each one killed, named as ps shows it, with its pid."""
    killed = []
    for pid in what_is_left(serve):
        name = _process_name(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            killed.append(f"{name} (pid {pid})")
    return killed


def killed_line(why: str, killed: list[str]) -> str:
    """The one line serve says as it ends a stop at once that outlasted its bound."""
    if not killed:  # serve's own exit is what hung (Gunicorn's master: the app's exit handlers, with preload)
        return f"flaskprod: {why}: killed nothing (serve's other processes had ended), exiting serve"
    return f"flaskprod: {why}: killed {', '.join(killed)}"


def _process_name(pid: int) -> str:
    """What ps shows for pid: its process title (uWSGI's and Gunicorn's name their role), else its command."""
    try:
        words = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
    except OSError:
        return "a process"
    return " ".join(words)[:60] or "a process"


def bound_stop_at_once(why: str, *, say: Callable[[str], None], before_exit: Callable[[], None]) -> None:
    """In serve's own process, told to stop at once: past STOP_AT_ONCE_BOUND, kill what is left of its processes, say
    so, and exit 1, whatever its main thread is waiting on. A thread, as that main thread may be the one hung."""
    serve = os.getpid()

    def watch() -> None:
        time.sleep(STOP_AT_ONCE_BOUND)
        killed = kill_what_is_left(serve)
        before_exit()
        say(killed_line(f"still running {STOP_AT_ONCE_BOUND:g}s after {why}", killed))
        os._exit(1)

    threading.Thread(target=watch, name="flaskprod-stop-bound", daemon=True).start()
