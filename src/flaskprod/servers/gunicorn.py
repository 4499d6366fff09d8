"""Gunicorn embedded through BaseApplication, with the hooks that keep metrics and draining correct."""

from __future__ import annotations

import atexit
import logging
import mmap
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, NoReturn

import ecs_logging
from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import AppImportError, HaltServer

from ..discovery import AppRef, load
from ..errors import FlaskprodError
from . import affinity, forkedpools, gcfreeze, stopnow
from .common import RunDir
from .freethreads import accepting_while_a_thread_is_free_of_conversations
from .greenlets import psycopg2_waits_in_gevents_loop
from .jsonrelay import Relay, say
from .memorybound import MemoryBound
from .responder import Responder, start_responder
from .turns import taking_turns, turns_taken

# Signals that cut a drain delay short: the operator wants the server gone now.
_IMPATIENT = (signal.SIGTERM, *stopnow.QUIT_NOW)
# Seconds a worker that could not load the app waits before leaving to be replaced.
LOAD_RETRY_PAUSE = 1.0
# The worker's attribute holding one byte shared with the arbiter: 1 once the worker has booted.
BOOTED = "flaskprod_booted"
# Seconds between looks, as a worker exits, at whether only the app's import-time threads are left to wait for.
EXIT_POLL = 0.05
# The non-daemon threads the app had started when this worker had loaded it (_post_worker_init): its pollers. None
# until then: a worker stopped as it loads the app (Ctrl-C at start) has run nothing else.
_started_at_import: list[threading.Thread] | None = None


class ServerLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no types
    """Gunicorn's logger, except that a request's exception the app logged already is not logged again.

    An exception a streamed body raises reaches Gunicorn as it reads the body, after flaskprod's layer has logged it
    with the request's id and re-raised it (so that the response is cut short, not ended as if whole): Gunicorn's
    "Error handling request" and its traceback, with no id, were a second record of the one failure. It is one line at
    debug instead, naming the id to find the app's record by; an exception the app did not log is Gunicorn's to log.
    """

    def exception(self, msg: str, *args: Any, **kwargs: Any) -> None:
        from ..runtime.pipeline import logged_by_the_app

        rid = logged_by_the_app(sys.exc_info()[1])
        if rid is None:
            super().exception(msg, *args, **kwargs)
        else:
            said = str(msg) % args if args else str(msg)  # Gunicorn passes an exception as msg at times
            self.error_log.debug("%s (logged by the app with request id %s)", said, rid)


class JsonLogger(ServerLogger):
    """Gunicorn's own error log in the ECS JSON of the app's logs (logging.format = json): a log shipper reads every
    line of the process alike, where "[2026-...] [123] [ERROR] Error handling request" and a traceback over many
    lines would each be a record of their own, unparsed."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            if getattr(handler, "_gunicorn", False):  # its stream handler, not one an app added itself
                handler.setFormatter(ecs_logging.StdlibFormatter())


def gunicorn_config(settings: dict[str, Any]) -> dict[str, Any]:
    """Gunicorn's own setting names and values for the effective settings (hooks are added separately)."""
    return {
        "bind": [settings["bind"]],
        "workers": settings["workers"],
        "threads": settings["threads"],
        "worker_class": settings["worker_class"],
        "timeout": settings["timeout"],
        "graceful_timeout": settings["graceful_timeout"],
        "keepalive": settings["keepalive"],
        "max_requests": settings["max_requests"],
        "max_requests_jitter": settings["max_requests_jitter"],
        "worker_tmp_dir": settings["worker_tmp_dir"],
        "backlog": settings["backlog"],
        "preload_app": settings["preload"],
        "proc_name": settings["proc_name"],
        "loglevel": settings["loglevel"],
        "accesslog": settings["accesslog"],
        "errorlog": settings["errorlog"],
        "logger_class": JsonLogger if settings["log_json"] else ServerLogger,
        # Gunicorn binds a unix socket under this umask, 0 by default: a 0777 socket any local user could send
        # requests through, past nginx, with X-Forwarded-* headers the app trusts from it. Owner and group
        # (nginx's, as systemd's unit and a pod's sidecar run it), as uWSGI's chmod-socket 660 gives.
        "umask": 0o007,
        # The control socket would be a file under $HOME or $XDG_RUNTIME_DIR that nothing here uses.
        "control_socket_disable": True,
        # The scheme is the connection's: only the app reads X-Forwarded-Proto, from proxy.trusted_hops proxies.
        # Gunicorn's own reading trusted any loopback client (and anyone on a unix socket) and answered 400
        # to a request through nginx that also carried the client's X-Forwarded-Ssl.
        "secure_scheme_headers": {},
    }


# The signals that stop a worker: Ctrl-C, the arbiter's stop-now (SIGQUIT) and its graceful stop (SIGTERM).
HELD_ACROSS_FORK = frozenset({signal.SIGINT, signal.SIGQUIT, signal.SIGTERM})


def _post_worker_init(worker: Any) -> None:
    """Chain the worker's SIGTERM handler so its own readiness flips to draining the moment it is told to stop;
    give it a stop-now handler that neither deadlocks nor cuts the request in hand."""
    from ..runtime import draining
    from ..runtime.deadline import on_greenlets

    stopnow.install(worker)
    if on_greenlets():
        psycopg2_waits_in_gevents_loop()
    else:
        global _started_at_import
        _started_at_import = app_threads()
    getattr(worker, BOOTED)[0] = 1
    _refusing_once_stopped(worker)
    accepting_while_a_thread_is_free_of_conversations(worker)

    previous = signal.getsignal(signal.SIGTERM)

    def on_term(sig: int, frame: FrameType | None) -> None:
        draining.begin()  # records only; the worker's own handler does the rest
        if callable(previous):
            previous(sig, frame)

    signal.signal(signal.SIGTERM, on_term)
    # Gunicorn asks that SIGTERM not interrupt system calls of in-flight requests; keep that.
    signal.siginterrupt(signal.SIGTERM, False)


def _refusing_once_stopped(worker: Any) -> None:
    """A threaded worker that stops accepting closes its copy of the listening socket at once.

    The arbiter closes its own as it stops; the gthread worker kept its copy open until its requests in
    hand were done, so the kernel went on queueing connections nobody would accept: each new request hung
    until the last worker exited (up to graceful_timeout) and was then reset. With every copy closed it is
    refused at once, and a client or load balancer can go elsewhere. A worker recycled alone (max_requests,
    the memory bound, SIGHUP) leaves the socket open in the arbiter and the other workers.
    """
    stop_accepting = getattr(worker, "set_accept_enabled", None)
    if stop_accepting is None:
        return  # the sync worker: it exits as soon as its one request is answered

    def set_accept_enabled(enabled: bool) -> None:
        stop_accepting(enabled)
        if not enabled and not worker.alive:
            for listener in worker.sockets:
                listener.close()

    worker.set_accept_enabled = set_accept_enabled


def _booted_flag(server: Any, worker: Any) -> None:
    """In the arbiter: the byte the worker sets once booted (_post_worker_init), read when it exits
    (FlaskprodArbiter.reap_workers); shared memory, since the status a worker exits with cannot say."""
    setattr(worker, BOOTED, mmap.mmap(-1, 1))


def _pre_fork(server: Any, worker: Any) -> None:
    """In the arbiter: give the worker about to be forked the CPU slot no live worker holds."""
    taken = (getattr(w, affinity.SLOT, None) for w in server.WORKERS.values())
    setattr(worker, affinity.SLOT, affinity.free_slot((s for s in taken if s is not None), server.num_workers))


def _post_fork(server: Any, worker: Any) -> None:
    affinity.pin(getattr(worker, affinity.SLOT))


def _held_until_handled(server: Any, worker: Any) -> None:
    """In the new worker: the stop signals held across the fork (FlaskprodArbiter.spawn_worker) land as soon as
    Gunicorn has set the worker's own handlers, which exit it at once while it loads the app."""
    init_signals = worker.init_signals

    def init_signals_then_let_in() -> None:
        init_signals()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_ACROSS_FORK)

    worker.init_signals = init_signals_then_let_in


def _plain_signals_in_its_children(server: Any, worker: Any) -> None:
    """In the new worker: a process it forks (a multiprocessing.Pool's, as the app is imported) gets Python's own
    handling of the signals Gunicorn's worker handles, not the worker's handlers.

    Inherited, they kept such a process from ending: a Pool's terminate() at the worker's exit sent SIGTERM, which
    only marked the copy of the worker as stopping, and the worker waited to join the process until
    server.graceful_timeout ran out and the arbiter killed it (1 stop in 3); the process then outlived serve, holding
    the listening socket. A process that forks with no worker handling signals (subprocess's exec) is unaffected."""
    stop_signals = [*worker.SIGNALS, signal.SIGINT]

    def as_python_has_them() -> None:
        signal.set_wakeup_fd(-1)  # the worker's pipe: the child's signals woke the worker's loop
        for sig in stop_signals:
            signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

    os.register_at_fork(after_in_child=as_python_has_them)


def _freeze_before_fork(server: Any, worker: Any) -> None:
    """With preload the master holds the app: frozen before the fork, every worker shares it frozen.

    Before every fork rather than once: a reload loads the app afresh, and after the first freeze the
    collection walks only what the master made since.
    """
    gcfreeze.freeze_loaded()


def _post_worker_init_freezing(worker: Any) -> None:
    """Without preload each worker loads its own app: frozen before its first request."""
    _post_worker_init(worker)
    gcfreeze.freeze_loaded()


def _in_turn(hooks: list[Callable[[Any, Any], None]]) -> Callable[[Any, Any], None]:
    # Gunicorn takes one function per hook and checks its arity, so the parts are called from a two-argument one.
    def hook(server: Any, worker: Any) -> None:
        for part in hooks:
            part(server, worker)

    return hook


def _child_exit(server: Any, worker: Any) -> None:
    from ..runtime.metrics import mark_worker_dead

    getattr(worker, BOOTED).close()
    mark_worker_dead(worker.pid)


def _leave_to_be_replaced(exc: FlaskprodError) -> None:
    """Exit this worker so that the arbiter forks another, instead of halting the whole server.

    Another worker of this server loaded the same code, so the failure is most likely something
    passing: the app's database restarting while max_requests recycled this worker, say. Gunicorn
    takes any worker's boot error as fatal and stops every worker with it, turning a blip into an
    outage. The pause bounds the retries to one import a second per worker.
    """
    logging.getLogger("gunicorn.error").error(
        "The app failed to load in a new worker after loading in another (%s); retrying in %gs", exc, LOAD_RETRY_PAUSE
    )
    time.sleep(LOAD_RETRY_PAUSE)
    sys.exit(1)


class FlaskprodArbiter(Arbiter):  # type: ignore[misc]
    """Gunicorn's arbiter, except that SIGTERM first marks the server as draining, and workers past
    server.recycle_memory_mb are recycled.

    The drain file makes every worker's /readyz answer 503 at once; for drain_delay seconds the
    server keeps accepting, so a load balancer can take it out of rotation; then Gunicorn's own
    graceful stop lets in-flight requests finish within graceful_timeout.
    """

    app: FlaskprodApplication

    def __init__(self, app: FlaskprodApplication) -> None:
        super().__init__(app)
        # SIGTERM to one worker is Gunicorn's graceful stop of it; the loop below forks its replacement.
        self.memory_bound = MemoryBound(app.settings["recycle_memory_mb"], recycle=self._recycle)
        # Every stop-at-once signal (SIGINT, SIGQUIT) as it comes, for a graceful stop's watch (_watch_for_at_once):
        # the arbiter's loop reads no signal once it stops, and its queue is read by Gunicorn's stop loop alone.
        self.at_once_signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def signal(self, sig: int, frame: FrameType | None) -> None:
        super().signal(sig, frame)
        if sig in stopnow.QUIT_NOW:
            self.at_once_signals.put_nowait(sig)  # SimpleQueue's put is safe in a signal handler

    def spawn_worker(self) -> int:
        # Until the worker sets its own handlers, the fork has the arbiter's, which queue a signal to the arbiter's
        # loop, in the worker's copy, where nothing reads it: a Ctrl-C (and the arbiter's SIGQUIT after it) or a
        # SIGTERM landing there was lost, and the worker served on until graceful_timeout ran out. Blocked across
        # the fork, they wait in the worker for its handlers (_held_until_handled lets them in).
        signal.pthread_sigmask(signal.SIG_BLOCK, HELD_ACROSS_FORK)
        try:
            return int(super().spawn_worker())
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HELD_ACROSS_FORK)  # the arbiter; the worker exits from there

    def reap_workers(self) -> None:
        """Gunicorn's, except that a worker which booted and then exited 3 or 4 is replaced like any other.

        Gunicorn reads those statuses as its own "worker failed to boot" and "app failed to load" and halts
        every worker with it: the app's sys.exit(3) in a handler (a threaded worker re-raises it in its main
        thread), an os._exit(3), a C library's exit(3) took the whole server down (uWSGI respawns the one
        worker). A worker that never booted still halts it: its replacement would fail alike.
        """
        while True:
            workers = dict(self.WORKERS)
            try:
                super().reap_workers()
                return
            except HaltServer as halt:
                # Gunicorn took the worker off its list and raised before child_exit, which closes its flag.
                gone = [w for pid, w in workers.items() if pid not in self.WORKERS and not getattr(w, BOOTED).closed]
                if len(gone) != 1 or not getattr(gone[0], BOOTED)[0]:
                    raise
                (worker,) = gone
                self.log.error(
                    "Worker (pid:%s) had booted when it exited %s, which Gunicorn reads as a failed boot: replacing it",
                    worker.pid,
                    halt.exit_status,
                )
                worker.tmp.close()
                self.cfg.child_exit(self, worker)

    def handle_int(self) -> None:
        self.told_at_once = "SIGINT"
        super().handle_int()

    def handle_quit(self) -> None:
        # Gunicorn's own SIGQUIT is its stop at once, as Ctrl-C: serve's too, whichever server runs.
        self.told_at_once = "SIGQUIT"
        super().handle_quit()

    def stop(self, graceful: bool = True) -> None:
        # Ctrl-C stops at once (stop(False)), then halt() calls stop() again: the first call says which stop it is.
        if self.app.stop_began is None:
            self.app.stop_began = (time.monotonic(), graceful)
            if not graceful:
                # Gunicorn waits graceful_timeout for its workers, then kills them; not the master's own exit, and
                # a worker's request in hand keeps a stop at once waiting that long.
                self.app.bound_stop_at_once(getattr(self, "told_at_once", "a stop at once"))
            else:
                self._watch_for_at_once()
        super().stop(graceful)

    def _watch_for_at_once(self) -> None:
        """Once a graceful stop has begun, a stop at once (Ctrl-C, SIGQUIT) gets serve's bound all the same.

        Gunicorn makes it its quick stop of the workers, but nothing bounded the master's own exit: with preload, an
        exit handler of the app's held serve for ever after Ctrl-C. A thread, as the main thread may be the one held."""

        def watch() -> None:
            sig = self.at_once_signals.get()
            self.app.bound_stop_at_once(signal.Signals(sig).name)

        threading.Thread(target=watch, name="flaskprod-stop-at-once", daemon=True).start()

    def _recycle(self, pid: int) -> None:
        if pid not in self.WORKERS:
            raise ProcessLookupError(pid)
        self.kill_worker(pid, signal.SIGTERM)

    def manage_workers(self) -> None:
        # Called by the main loop at least once a second, after dead workers are reaped.
        self.memory_bound.sweep(lambda: list(self.WORKERS))
        super().manage_workers()

    def handle_term(self) -> None:
        self.app.run_dir.begin_drain()
        delay = self.app.settings["drain_delay"]
        if delay:
            self.log.info("Draining: /readyz answers 503; stopping in %ss", delay)
            cut_by = self._keep_serving(delay)
            # A stop at once that cut the delay short is one (`up` does alike): it was a graceful stop, workers and
            # all, with no bound, so a worker that takes no signal held serve for graceful_timeout after Ctrl-C.
            if cut_by == signal.SIGINT:
                self.handle_int()
            elif cut_by == signal.SIGQUIT:
                self.handle_quit()
        raise StopIteration

    def _keep_serving(self, seconds: float) -> int | None:
        """Serve on for seconds; the signal that cut them short, if one did (a stop at once's first)."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            received: list[int] = self.wait_for_signals(timeout=min(left, 1.0))
            if impatient := [sig for sig in received if sig in _IMPATIENT]:
                return next((sig for sig in impatient if sig in stopnow.QUIT_NOW), impatient[0])
            if signal.SIGCHLD in received:
                self.reap_workers()
            self.murder_workers()
            self.manage_workers()
        return None


class FlaskprodApplication(BaseApplication):  # type: ignore[misc]
    """The app and its settings as Gunicorn sees them: cfg from the settings dict, load() from discovery."""

    def __init__(self, settings: dict[str, Any], app: AppRef, run_dir: RunDir, relay: Relay | None = None) -> None:
        self.settings = settings
        self.app_ref = app
        self.run_dir = run_dir
        self.relay = relay
        self.responder: Responder | None = None
        # When the arbiter began to stop, and whether gracefully (SIGTERM) or at once (Ctrl-C, SIGQUIT).
        self.stop_began: tuple[float, bool] | None = None
        super().__init__()

    def bound_stop_at_once(self, signal_name: str) -> None:
        """Past stopnow.STOP_AT_ONCE_BOUND, what is left of serve's processes is killed, and serve exits 1."""

        def before_exit() -> None:
            if self.relay is not None:
                self.relay.give_back()
            self.run_dir.remove()

        stopnow.bound_stop_at_once(
            f"{signal_name} (stop at once)",
            say=lambda line: say(line, as_json=self.settings["log_json"]),
            before_exit=before_exit,
        )

    def pools_deadline(self) -> float:
        """Until when the stopped master finishes the work its thread pools hold: server.graceful_timeout from a
        graceful stop's start, as for the workers' requests; none for a stop at once."""
        if self.stop_began is None or not self.stop_began[1]:
            return time.monotonic()
        return self.stop_began[0] + float(self.settings["graceful_timeout"])

    def load_config(self) -> None:
        hooks: dict[str, Callable[..., None]] = {
            "child_exit": _child_exit,
            "post_worker_init": _post_worker_init,
        }
        pre_fork: list[Callable[[Any, Any], None]] = [_booted_flag]
        post_fork: list[Callable[[Any, Any], None]] = [_held_until_handled, _plain_signals_in_its_children]
        if self.relay is not None:
            relay = self.relay
            post_fork.append(lambda server, worker: relay.forked())
        if self.settings["cpu_affinity"]:
            pre_fork.append(_pre_fork)
            post_fork.append(_post_fork)
        if self.settings["gc_freeze"]:
            if self.settings["preload"]:
                pre_fork.append(_freeze_before_fork)
            else:
                hooks["post_worker_init"] = _post_worker_init_freezing
        if self.settings["metrics_bind"]:
            hooks["when_ready"] = self._start_responder
        hooks["pre_fork"] = _in_turn(pre_fork)
        hooks["post_fork"] = _in_turn(post_fork)
        for key, value in {**gunicorn_config(self.settings), **hooks}.items():
            self.cfg.set(key, value)

    def _start_responder(self, server: Any) -> None:
        """In the arbiter, once it listens (before it forks the workers): scrapes answered outside the worker pool.

        Once: a reload (SIGHUP) keeps it. The workers, forked from here, run no copy of its thread and close their
        copies of its sockets (servers/responder.py)."""
        if self.responder is None:
            self.responder = start_responder(self.settings, str(self.run_dir.multiproc_dir))

    def load(self) -> Any:
        try:
            wsgi = load(self.app_ref)
        except FlaskprodError as exc:
            if exc.__cause__ is None:
                # Gunicorn prints an AppImportError as one line and stops with "App failed to load".
                raise AppImportError(str(exc)) from None
            if self.run_dir.app_loaded_before() and not isinstance(exc.__cause__, SyntaxError):
                _leave_to_be_replaced(exc)
            raise  # a bug in the app: Gunicorn logs the traceback the user needs, then stops
        self.run_dir.mark_app_loaded()
        if self.settings["preload"] and (told := forkedpools.process_pools_told("Gunicorn's master (server.preload)")):
            say(told, as_json=self.settings["log_json"])
        return taking_turns(wsgi) if turns_taken(self.settings) else wsgi

    def run(self) -> None:
        # Before the arbiter exists: with preload it imports the app at once, and Production(app) writes its
        # first metric files into the multi-process directory as it loads.
        self.run_dir.prepare()
        FlaskprodArbiter(self).run()


def run(settings: dict[str, Any], app: AppRef, run_dir: RunDir) -> int:
    """Run Gunicorn in this process until it stops; its exit status."""
    master = os.getpid()
    # Every line of the process tree in JSON: the workers' plain ones (print(), a library's logger) too.
    relay = Relay("stderr") if settings["log_json"] else None
    application = FlaskprodApplication(settings, app, run_dir, relay)
    if relay is not None:
        relay.take_over()
    # With preload the arbiter imports the app and forks the workers: a thread pool it started then runs in each.
    forkedpools.repair_after_fork()
    status = 0
    try:
        application.run()
    except SystemExit as exc:
        if os.getpid() != master:
            _leave_past_threads_started_at_import(exc.code)
            raise  # a forked worker leaving: not ours to intercept
        code = exc.code
        if isinstance(code, str):
            print(code, file=sys.stderr)  # Gunicorn's own reason for stopping, e.g. a config error
        status = exit_status(code)
    finally:
        if os.getpid() == master:
            if relay is not None:
                relay.give_back()  # the workers' last lines before serve's own
            if application.responder is not None:
                application.responder.close()
            run_dir.remove()
    # A multiprocessing.pool.ThreadPool's threads are daemons, which Python's exit does not wait for: its own exit
    # handler then cut the work the app queued in it as it was imported (server.preload).
    if app_threads() or forkedpools.live_pool_threads():
        _leave_without_app_threads(status, application, as_json=settings["log_json"])
    return status


def exit_status(code: object) -> int:
    """The status a SystemExit with code ends a process with."""
    return code if isinstance(code, int) else (0 if code is None else 1)


def app_threads() -> list[threading.Thread]:
    """The non-daemon threads running besides the main one and this one: the app's, since flaskprod's are daemons.
    In Gunicorn's master, those it started as it was imported there (server.preload), as the master serves nothing."""
    here = (threading.current_thread(), threading.main_thread())
    return [t for t in threading.enumerate() if t not in here and not t.daemon and t.is_alive()]


def _leave_past_threads_started_at_import(code: object) -> None:
    """In a worker leaving: exit once all Python's exit still waits for is the app's import-time threads (pollers).

    Python's exit joins every non-daemon thread: a poller the app started as each worker imported it kept the worker
    from exiting until the arbiter killed it at server.graceful_timeout, on every stop, reload and recycle, its exit
    handlers never run. The gthread pool's threads (the requests in hand), and any the app started since, are waited
    for as before; then the exit handlers run and the worker ends with its status. The main thread counts as alive
    until Python's exit begins (threading._shutdown stops it), so the worker's own unwinding is never cut short."""
    from ..runtime.deadline import on_greenlets

    if on_greenlets():
        return  # gevent's threads are greenlets, which Python's exit does not wait for
    started = app_threads() if _started_at_import is None else [t for t in _started_at_import if t.is_alive()]
    if not started:
        return
    status = exit_status(code)

    def leave_once_only_they_remain() -> None:
        while any(t.is_alive() for t in started):
            if not threading.main_thread().is_alive() and all(t in started for t in app_threads()):
                _exit_past_threads(status)
            time.sleep(EXIT_POLL)

    threading.Thread(target=leave_once_only_they_remain, name="flaskprod-exit", daemon=True).start()


def _leave_without_app_threads(status: int, application: FlaskprodApplication, *, as_json: bool) -> None:
    """End the stopped master with status, not waiting for the app's threads (app_threads): Python's exit joins every
    non-daemon thread, and a poller's loop never ends, so with preload serve outlived its stop until something killed
    it (systemd's stop timeout, `docker stop`'s 10 s). The exit handlers still run.

    A thread pool's threads are no poller: the master runs the work the app gave the pool as it was imported, and
    ending past them cut what was still queued. That work is finished first, within server.graceful_timeout; returns
    when nothing else is left, for Python's own exit."""
    deadline = application.pools_deadline()
    cut = forkedpools.finish_pools_work(deadline)
    forkedpools.end_process_pools(deadline)
    if cut:
        graceful = application.stop_began is not None and application.stop_began[1]
        why = f"server.graceful_timeout = {application.settings['graceful_timeout']:g}s ran out" if graceful else (
            "told to stop at once"
        )
        say(f"flaskprod: cutting the work still queued in the app's thread pools in Gunicorn's master: {why}",
            as_json=as_json)
    pollers = [t for t in app_threads() if t not in cut]
    if pollers:
        names = ", ".join(sorted(t.name for t in pollers))
        say(
            f"flaskprod: not waiting for the app's threads in Gunicorn's master ({names}): started as the app was "
            "imported with server.preload on, they ran there and in no worker; start them in each worker "
            "(os.register_at_fork(after_in_child=...), or on the first request)",
            as_json=as_json,
        )
    if app_threads():
        _exit_past_threads(status)


def _exit_past_threads(status: int) -> NoReturn:
    """End this process with status as Python's exit would, its exit handlers and buffered output included, without
    joining the non-daemon threads that exit would wait on for ever."""
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
