"""Requests take turns for the interpreter lock (server.fair_gil).

CPython hands its lock to whichever thread asks while it is free. In a threaded worker under load,
the thread that just answered a request is back for its next one before the waiter it woke has been
scheduled, so it takes the lock again, and a request another thread accepted earlier waits while
dozens that came later are served: that was the tail of flaskprod's default stack (docs/defaults-log.md,
"Where the tail is"). Yielding as a request enters the app makes the turn fair: os.sched_yield
releases the lock and gives up the core, so the longest waiter, already woken, runs and takes the lock,
and this thread asks again behind it. One hand-over and one switch more per request; with nobody
waiting the yield returns at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..sizing import GREENLET_CLASSES

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


def taking_turns(app: WSGIApplication) -> WSGIApplication:
    """app, entered only after the threads already waiting for the interpreter lock have had it."""

    def app_in_turn(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        os.sched_yield()  # releases the interpreter lock around the system call
        return app(environ, start_response)

    return app_in_turn


def turns_taken(settings: Mapping[str, Any]) -> bool:
    """Whether the server's app takes turns: fair_gil on, and workers with threads to take them (gevent's run
    greenlets, which hand over only where they wait, and never race for the lock)."""
    greenlets = settings.get("worker_class") in GREENLET_CLASSES
    return bool(settings["fair_gil"]) and settings["threads"] > 1 and not greenlets
