"""A soft per-request deadline: a request past server.timeout gets a clean 504 and frees its worker.

The timeout counts from when the proxy in front passed the request on, where it says so (nginx's
X-Request-Start), as nginx's own read timeout does, queue included: counted from when a worker took
the request, it let nginx answer a queued request 504 first while the app ran it on for nobody and
counted it a success. A request that waited past its deadline is answered 504 before its view runs.

On the main thread (sync workers) the deadline is a SIGALRM timer: the handler raises in the view,
even out of a blocking sleep or socket read. Other threads (threaded workers) cannot receive a
signal's handler, so one watchdog thread per process raises the same exception in them
asynchronously; it lands at the thread's next Python instruction, so a thread stuck inside one
long C call (a sleep, a query without a statement timeout) is stopped only when that call returns.
For that case nginx answers 504 itself a little later; the app server's hard timeout (Gunicorn's
worker timeout, uWSGI's harakiri) kills a single-threaded worker still stuck after that, while
neither server kills a lone thread.

Under gevent's patches (Gunicorn's gevent worker) the requests are greenlets of one thread, which neither
reaches: there gevent's own Timeout raises in the request's greenlet where it next waits. The watchdog there
answered every request 500 ("cannot release un-acquired lock"): its lock is made before the worker patches.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from flask import g, has_app_context
from werkzeug.exceptions import GatewayTimeout

if TYPE_CHECKING:
    from werkzeug.wrappers.response import Response

P = ParamSpec("P")
R = TypeVar("R")
# A wait this far past the deadline is a clock set wrong (a time zone's offset, or never set), not a queue:
# believed, it would have the app answer every request 504. Such a request gets the whole timeout.
CLOCK_SET_WRONG = 600.0
# Set in the environ of a request that waited past its deadline: Flask answers it with waited_too_long().
EXPIRED_KEY = "flaskprod.expired"


class RequestTimeout(GatewayTimeout):
    """Raised inside a view whose request ran past its deadline; answered as 504."""

    description = "The request took too long and was stopped."

    def __init__(self, description: str | None = None, response: Response | None = None) -> None:
        super().__init__(description, response)
        # Made in the request's own thread or greenlet, where it is raised: by the alarm's handler, by the
        # interpreter from the watchdog's asynchronous exception, by waited_too_long, by the error page for a wait
        # the deadline ended (passed_in_a_wait); under gevent, before the call (_call_in_greenlet).
        _stopped.set(self)


# The RequestTimeout of the request running in this context, until the pipeline takes it (take_stopped).
_stopped: ContextVar[RequestTimeout | None] = ContextVar("flaskprod_deadline_stopped", default=None)


def take_stopped() -> RequestTimeout | None:
    """The RequestTimeout that stopped the current request, once; None if its deadline did not stop it.

    The pipeline logs it once the app has answered: flaskprod's error page, which did, is replaced by an app's
    own handler for HTTPException (flask-smorest registers one), and the client got its 504 with no line saying why.
    """
    stopped = _stopped.get()
    if stopped is not None:
        _stopped.set(None)
    return stopped


def counted_wait(timeout: float, waited: float | None) -> float:
    """How much of its timeout a request spent before the app started it: waited, as the proxy's
    X-Request-Start says (seconds_since: None if there is none, 0 if it lies ahead), but 0 for a wait
    more than CLOCK_SET_WRONG past the deadline. timeout or more: the request is past its deadline."""
    if waited is None or waited > timeout + CLOCK_SET_WRONG:
        return 0.0
    return waited


# flask.g's key: the request's deadline passed in a wait that answered with the wait's own error (passed_in_a_wait).
PASSED_IN_A_WAIT = "flaskprod_deadline_passed"


def passed_in_a_wait() -> None:
    """Note that the request's deadline passed in a wait that had to end in its own error instead: psycopg2's for a
    cancelled statement under gevent, where raising the deadline's exception through its wait callback would have
    psycopg2 close a connection its pool still holds. The error pages answer that error with the deadline's 504."""
    if has_app_context():
        setattr(g, PASSED_IN_A_WAIT, True)


def waited_too_long() -> RequestTimeout:
    """The 504 of a request that waited past its deadline, raised before any of the app's code runs: its client
    gets it, or has had nginx's already, and may be told that nothing was done."""
    return RequestTimeout("The request waited too long for the app and was not run.")


_installed = False  # whether this process's SIGALRM handler is ours; a forked child starts over


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    # Raising from the handler is the point: the exception surfaces in the running view.
    raise RequestTimeout()


def _set_async_exc(ident: int, exc: type[BaseException] | None) -> None:
    """Raise exc in thread ident at its next instruction (None withdraws one not yet raised)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None)


class Watchdog:
    """One daemon thread that stops request threads past their deadline.

    Every request arms and disarms, so neither takes a lock unless a deadline has fired: with one
    lock, request threads queued on it while its holder waited for the interpreter lock (py-spy
    showed a tenth of a worker's samples there). Each arm files a new token in `_due`; the one
    who pops it, the request (disarm) or the watchdog (firing), owns it, and dict.pop is atomic.
    A disarm that finds its token gone waits for the watchdog's lock, held across pop and raise,
    then withdraws an exception not yet raised; call_with_deadline absorbs one raised on the way.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._due: dict[object, tuple[int, float]] = {}  # token -> (thread ident, time.monotonic() deadline)
        self._local = threading.local()
        self._thread: threading.Thread | None = None
        self._wakes_at = math.inf  # when the watchdog looks next
        self._idle_look = math.inf  # how long it waits with nothing armed: the last deadline's length
        self.looks = 0  # times the watchdog has woken and looked: not once per request

    def arm(self, timeout: float, waited: float = 0.0) -> None:
        due = time.monotonic() + timeout - waited
        token = self._local.token = object()
        self._due[token] = (threading.get_ident(), due)
        # The whole length, not what is left: looks a waited request's rest apart would come to nothing.
        self._idle_look = timeout
        # Woken only for a deadline before its next look. A wake per request would cost a thread
        # switch and a hand-over of the interpreter lock on every request. Every deadline is
        # server.timeout after nginx passed its request on, and the app takes requests in about
        # that order, so a new one is rarely earlier than the look already planned.
        if self._thread is None or due < self._wakes_at:
            with self._lock:
                if self._thread is None:
                    # Started lazily in the worker: threads do not survive the server's fork.
                    self._thread = threading.Thread(target=self._run, name="flaskprod-deadline", daemon=True)
                    self._thread.start()
                self._lock.notify()

    def disarm(self) -> None:
        if self._due.pop(self._local.token, None) is None:
            # The watchdog took it: wait until it has raised, then withdraw it if still pending.
            with self._lock:
                _set_async_exc(threading.get_ident(), None)

    def _run(self) -> None:
        with self._lock:
            while True:
                self.looks += 1
                now = time.monotonic()
                for token, (ident, due) in list(self._due.items()):
                    if due <= now and self._due.pop(token, None) is not None:
                        _set_async_exc(ident, RequestTimeout)
                dues = [due for _, due in list(self._due.values())]
                self._wakes_at = min(dues, default=now + self._idle_look)
                self._lock.wait(None if self._wakes_at == math.inf else self._wakes_at - now)


_watchdog = Watchdog()


def _forget_after_fork() -> None:
    global _installed, _watchdog
    _installed = False
    _watchdog = Watchdog()


os.register_at_fork(after_in_child=_forget_after_fork)


def arm(timeout: float, waited: float = 0.0) -> None:
    """Start the deadline for the current request: timeout from a start waited (less than timeout) seconds ago."""
    global _installed
    if threading.current_thread() is not threading.main_thread():
        _watchdog.arm(timeout, waited)
        return
    if not _installed:
        # Installed lazily in the worker: servers reset signal handlers after forking.
        signal.signal(signal.SIGALRM, _on_alarm)
        _installed = True
    signal.setitimer(signal.ITIMER_REAL, timeout - waited)


def disarm() -> None:
    if threading.current_thread() is not threading.main_thread():
        _watchdog.disarm()
    else:
        signal.setitimer(signal.ITIMER_REAL, 0)


def on_greenlets() -> bool:
    """Whether gevent has patched threading in this process, as Gunicorn's gevent worker does: requests are
    greenlets, which only gevent can interrupt."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("threading"))


def _call_in_greenlet(seconds: float, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    from gevent import Timeout

    # Made here, not by gevent's hub, which makes it in its own greenlet: out of the request's reach (take_stopped).
    stop = RequestTimeout()
    try:
        with Timeout(seconds, stop):
            return call(*args, **kwargs)
    except RequestTimeout:
        _stopped.set(None)  # raised out of the call: its caller has it, no request's handler answered it
        raise
    finally:
        if stop.__traceback__ is None:  # never raised: the call ended within its deadline
            _stopped.set(None)


def call_with_deadline(
    timeout: float, waited: float, call: Callable[P, R], *args: P.args, **kwargs: P.kwargs
) -> R:
    """call(*args, **kwargs), stopped with RequestTimeout once timeout has passed since a start waited seconds ago."""
    if on_greenlets():
        return _call_in_greenlet(timeout - waited, call, *args, **kwargs)
    arm(timeout, waited)
    try:
        return call(*args, **kwargs)
    except RequestTimeout:
        _stopped.set(None)  # raised out of the call: its caller has it, no request's handler answered it
        raise
    finally:
        try:
            disarm()
        except RequestTimeout:
            # The deadline passed just as the call returned (raised on entering disarm): the result stands.
            _stopped.set(None)
