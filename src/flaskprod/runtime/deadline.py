"""A soft per-request deadline: a request past server.timeout gets a clean 504 and frees its worker.

The app server's hard timeout (Gunicorn's worker timeout, uWSGI's harakiri) sits a few seconds
later and kills a worker that cannot be interrupted (stuck in C code); nginx waits longer still.
The deadline is a SIGALRM timer, so it only works where requests run on the main thread (Gunicorn
sync workers, uWSGI without threads); threaded workers rely on the hard timeout alone.
"""

from __future__ import annotations

import os
import signal
import threading
from types import FrameType

from werkzeug.exceptions import GatewayTimeout


class RequestTimeout(GatewayTimeout):
    """Raised inside a view whose request ran past its deadline; answered as 504."""

    description = "The request took too long and was stopped."


_installed = False  # whether this process's SIGALRM handler is ours; a forked child starts over


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    # Raising from the handler is the point: the exception surfaces in the running view.
    raise RequestTimeout()


def _forget_after_fork() -> None:
    global _installed
    _installed = False


os.register_at_fork(after_in_child=_forget_after_fork)


def arm(seconds: float) -> bool:
    """Start the deadline for the current request; False where it cannot apply (not the main thread)."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        return False
    if not _installed:
        # Installed lazily in the worker: servers reset signal handlers after forking.
        signal.signal(signal.SIGALRM, _on_alarm)
        _installed = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    return True


def disarm() -> None:
    signal.setitimer(signal.ITIMER_REAL, 0)
