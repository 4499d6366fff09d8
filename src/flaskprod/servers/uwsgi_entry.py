"""uWSGI's entry point: `module = flaskprod.servers.uwsgi_entry:application` loads the app the spec names."""

from __future__ import annotations

import functools
import io
import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..discovery import find_app
from ..runtime.pipeline import logged_by_the_app
from ..spec import load_spec
from . import affinity, forkedpools, gcfreeze
from .jsonrelay import say
from .turns import taking_turns
from .uwsgi import on_connection_scheme, stop_by_file

# uWSGI's Python plugin points sys.stdout at stderr; the app's JSON logs belong on stdout (fd 1),
# as under Gunicorn, so log shippers find them in one place.
sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True, encoding="utf-8")


def _print_unless_logged(
    kind: type[BaseException], exc: BaseException, tb: TracebackType | None, *, then: Callable[..., Any]
) -> None:
    """uWSGI's Python plugin prints a request's exception through sys.excepthook (PyErr_Print): the traceback, on
    stderr, with no request id. One that flaskprod's layer logged already (a streamed body's, which it re-raises so that
    uWSGI cuts the response short) would be a second record of the one failure: uWSGI's own goes for the others."""
    if logged_by_the_app(exc) is None:
        then(kind, exc, tb)


# Before the app loads: an app that sets a hook of its own keeps it, and prints what it will.
sys.excepthook = functools.partial(_print_unless_logged, then=sys.excepthook)

# The master imports the app and forks the workers: a thread pool it started as it loaded runs work in each worker.
forkedpools.repair_after_fork()
spec = load_spec()
# serve exports the app it found as FLASKPROD_APP__TARGET, so this finds the same one.
loaded = find_app(spec.app.target)
if told := forkedpools.process_pools_told("uWSGI's master"):
    say(told, as_json=False)  # serve's relay makes each of uWSGI's lines a record when the logs are JSON
# The master runs the work the app gave a thread pool as it was imported: its exit finishes what is still queued.
forkedpools.finish_pools_work_at_exit(spec.server.graceful_timeout, stop_by_file())
# uWSGI loads the app here, in the master (lazy-apps off), and forks the workers after: they inherit it frozen.
if spec.server.gc_freeze:
    gcfreeze.freeze_loaded()
# The ini resolves fair_gil: on only when the workers have threads to take turns.
application = on_connection_scheme(taking_turns(loaded) if spec.server.fair_gil else loaded)


def _pin_worker_before(then: Callable[[], object] | None) -> Callable[[], None]:
    """uWSGI's post_fork_hook: pin this worker to its CPU, then run the hook the app set (uwsgidecorators' chain
    among them), whose threads inherit the CPU."""
    import uwsgi  # only inside uWSGI

    def pin_worker() -> None:
        affinity.pin(uwsgi.worker_id() - 1)
        if then is not None:
            then()

    return pin_worker


# The ini says whether to pin (auto resolved). uWSGI runs post_fork_hook in each worker it forks, once the worker
# knows its id and before it starts the worker's threads, so they inherit the CPU. Not an os.register_at_fork hook:
# those run straight after the fork (py-call-uwsgi-fork-hooks), where every worker's id still reads 0.
if spec.server.cpu_affinity is True:
    import uwsgi  # only inside uWSGI

    uwsgi.post_fork_hook = _pin_worker_before(getattr(uwsgi, "post_fork_hook", None))
