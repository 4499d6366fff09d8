"""uWSGI run from an ini rendered from the same settings as Gunicorn, supervised by the serve process."""

from __future__ import annotations

import contextlib
import functools
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal

from ..discovery import AppRef
from ..errors import ServerError
from ..exits import APP_SERVER_EXITS, describe_exit
from ..runtime.pipeline import RESET_KEY
from ..spec import SETTINGS
from .common import RunDir, parse_bind
from .jsonrelay import Relay, say
from .memorybound import MemoryBound, children, signal_to
from .responder import Responder, start_responder
from .stopnow import STOP_AT_ONCE_BOUND, kill_what_is_left, killed_line, what_is_left
from .turns import turns_taken

if TYPE_CHECKING:
    from collections.abc import Iterable

    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ENTRY = "flaskprod.servers.uwsgi_entry:application"
# Request header buffer: uWSGI's 4 KiB default rejects ordinary large cookies with a 502 at the proxy.
BUFFER_SIZE = 32768
MAX_VARS = BUFFER_SIZE // 14
# Seconds between sweeps of the metrics directory for files of workers that have gone.
REAP_INTERVAL = 1.0
# SIGCHLD only wakes the loop so uWSGI's exit is noticed at once. SIGQUIT is Gunicorn's stop at once, as Ctrl-C: serve
# takes it so under uWSGI too. Unhandled, it dumped serve's core and left uWSGI's master and workers serving, orphaned.
_HANDLED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
# What serve takes as a stop: at once (SIGINT, SIGQUIT), or graceful (SIGTERM).
_STOPS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
_AT_ONCE = (signal.SIGINT, signal.SIGQUIT)
# Seconds between looks, once uWSGI's master has ended after a stop at once, at whether any of its processes remain.
LEFT_POLL = 0.1
# Seconds uWSGI's master gets to exit once its workers were killed at the end of a graceful stop.
CUT_GRACE = 5.0
# Seconds between repeats of SIGTERM until uWSGI stops: one that comes while its master loads the app, before
# the master-start hook makes SIGTERM a graceful stop, is lost (serve ran on until killed). Once stopping, uWSGI
# ignores the repeats.
TERM_AGAIN = 1.0
# Seconds between looks at workers that could not hear the master's SIGHUP yet (Supervisor.tell_late_workers).
LATE_POLL = 0.02
# Until uWSGI sets a worker's own handlers, SIGHUP's then SIGUSR2's (which the master never has), a worker has the
# master's SIGHUP: ignored from its start (uwsgi_setup), its reload handler once it runs, for a worker forked again.
WORKER_HANDLERS = (signal.SIGHUP, signal.SIGUSR2)
# The file beside the ini that serve writes its stop's deadline into (time.monotonic(), the system's clock, the same
# in every process), and on a second line why: uWSGI's master finishes its pools' work by then, not graceful_timeout
# after its own exit, which comes once the workers have finished theirs; after SIGINT, at once.
STOP_BY_FILE = "stop-by"


def render_ini(
    settings: dict[str, Any],
    *,
    protocol: Literal["http", "uwsgi"] | None = None,
    listen_max: int | None = None,
) -> str:
    """The uWSGI ini for the effective settings; protocol http faces clients, uwsgi sits behind nginx.

    protocol defaults to the settings' own; listen_max caps the backlog at the kernel's somaxconn,
    which uWSGI refuses to exceed.
    """
    protocol = protocol or settings.get("protocol", "http")
    if settings["worker_class"] not in ("sync", "gthread"):
        raise ServerError(
            f"worker_class {settings['worker_class']!r} is Gunicorn-only; use --server gunicorn or threads with uWSGI"
        )
    address = parse_bind(settings["bind"])
    bind = address if isinstance(address, str) else settings["bind"]
    backlog = settings["backlog"] if listen_max is None else min(settings["backlog"], listen_max)
    workers = settings["workers"]
    lines: list[tuple[str, Any]] = [
        ("master", True),
        ("module", ENTRY),
        ("pythonpath", settings["pythonpath"]),
        ("env", f"{SETTINGS['app.target'].env}={settings['app']}"),
        # Resolved here (auto needs the worker count, turns the thread count); the entry pins each worker it forks.
        ("env", f"{SETTINGS['server.cpu_affinity'].env}={'true' if settings['cpu_affinity'] else 'false'}"),
        ("env", f"{SETTINGS['server.gc_freeze'].env}={'true' if settings['gc_freeze'] else 'false'}"),
        ("env", f"{SETTINGS['server.fair_gil'].env}={'true' if turns_taken(settings) else 'false'}"),
        ("procname-prefix-spaced", settings["proc_name"]),
        ("auto-procname", True),
        ("http-socket" if protocol == "http" else "socket", bind),
    ]
    if isinstance(address, str):
        # uWSGI makes its socket 0755: nginx running as another user (a pod's sidecar, systemd's
        # www-data in the app's group) could not connect; group read-write is what it needs.
        lines.append(("chmod-socket", 660))
    if protocol == "http":
        # uWSGI's http-socket answers one request per connection and then closes it, without saying so
        # to an HTTP/1.1 client, which reuses it and gets a reset (every wrk request was a read error).
        lines.append(("add-header", "Connection: close"))
    lines += [
        ("listen", backlog),
        ("processes", workers),
        ("threads", settings["threads"]),
        # The app's own background threads (metrics, log shipping) need the GIL machinery on.
        ("enable-threads", True),
        # Off by default: nginx opens an upstream connection per request, and handing the lock over on
        # each (a futex wake, then the next holder scheduled) capped the accept rate with cores idle.
        ("thunder-lock", settings["accept_lock"]),
        ("harakiri", settings["timeout"]),
        ("max-requests", settings["max_requests"]),
        # uWSGI staggers by worker id instead of a random jitter: spread the same range across the workers.
        ("max-requests-delta", settings["max_requests_jitter"] // max(1, workers)),
        ("worker-reload-mercy", settings["graceful_timeout"]),
        ("reload-mercy", settings["graceful_timeout"]),
        # SIGTERM is a brutal reload in uWSGI 2.0; make it a graceful stop, as orchestrators expect.
        ("hook-master-start", "unix_signal:15 gracefully_kill_them_all"),
        ("die-on-term", True),
        ("need-app", True),
        ("strict", True),
        ("lazy-apps", False),
        ("single-interpreter", True),
        # Take the GIL and the import lock around each fork, and run the app's os.register_at_fork hooks (pool
        # disposal, metrics) in each worker. py-call-osafterfork ran the hooks but forked without the GIL: a thread
        # the app started in the master (Flask-Limiter's memory storage, a scheduler) could hold it at the fork,
        # and the worker then waited for it for ever, never serving a request.
        ("py-call-uwsgi-fork-hooks", True),
        ("vacuum", True),
        ("buffer-size", BUFFER_SIZE),
        # uWSGI's default of 64 variables is spent by about 100 headers, and it then drops the request: a 502 any
        # client could cause. Enough for every header a request within buffer-size can carry (14 bytes the least).
        ("max-vars", MAX_VARS),
        # The app writes its own access log when it faces clients; nginx does behind a proxy.
        ("disable-logging", True),
        ("ignore-sigpipe", True),
        ("ignore-write-errors", True),
        ("disable-write-exception", True),
    ]
    if not settings["max_requests"]:
        lines = [(k, v) for k, v in lines if not k.startswith("max-requests")]
    if settings["threads"] == 1:
        lines = [(k, v) for k, v in lines if k != "threads"]
    else:
        # uWSGI's harakiri kills the whole worker for one stuck thread, and with it every request its
        # other threads hold; like Gunicorn's gthread worker, a threaded worker is never killed for one.
        lines = [(k, v) for k, v in lines if k != "harakiri"]
    if not settings["accept_lock"]:
        lines = [(k, v) for k, v in lines if k != "thunder-lock"]
    body = "\n".join(f"{key} = {_ini_value(value)}" for key, value in lines)
    return f"; written by flaskprod from its settings; change flaskprod.toml, not this file\n[uwsgi]\n{body}\n"


def on_connection_scheme(app: WSGIApplication) -> WSGIApplication:
    """app, seeing the scheme of the connection uWSGI was handed, not one a client's header claims.

    uWSGI takes https from a request's X-Forwarded-Proto or X-Forwarded-Ssl, whoever sent it, with no
    setting to stop it; only the app reads those headers, from proxy.trusted_hops proxies. Over the uwsgi
    protocol the scheme is nginx's own (REQUEST_SCHEME, HTTPS); an http-socket is plain HTTP.
    """

    def app_on_connection_scheme(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        scheme = environ.get("REQUEST_SCHEME")
        if scheme != "http" and scheme != "https":
            scheme = "https" if environ.get("HTTPS", "").lower() in ("on", "1") else "http"
        environ["wsgi.url_scheme"] = scheme
        environ[RESET_KEY] = reset_connection
        _starting_threads_python_waits_for()
        return app(environ, start_response)

    return app_on_connection_scheme


def _starting_threads_python_waits_for() -> None:
    """A thread this request starts is non-daemon by default, as from Gunicorn's threads and uWSGI's first core.

    uWSGI's other cores are threads of its own, which Python knows as dummies, and a dummy is a daemon: every thread a
    request started there (threading.Thread(target=send_email).start()) was a daemon that the worker's graceful stop
    did not wait for, its work cut as the process ended (0 tasks of 8 finished, 8 of 8 on Gunicorn)."""
    here = threading.current_thread()
    if here.daemon and isinstance(here, threading._DummyThread):
        here._daemonic = False  # type: ignore[attr-defined]  # the property refuses a started thread


def stop_by_file() -> Path | None:
    """In uWSGI's master: the file serve writes its stop's deadline into, beside the ini it wrote."""
    import uwsgi  # only inside uWSGI

    ini = uwsgi.opt.get("ini")
    return Path(ini.decode() if isinstance(ini, bytes) else ini).parent / STOP_BY_FILE if ini else None


def reset_connection() -> None:
    """Make uWSGI's close of this request's connection a reset (SO_LINGER on, 0 s), for a streamed body that failed.

    uWSGI's response has no length (an http-socket's, Connection: close; the uwsgi protocol's): its clean close ends
    a cut body as if whole, where a reset is an error to the client. Over a unix socket (nginx in front, `up`) there
    is no reset to make: Linux ignores SO_LINGER and shutdown there, and a close is an error to the peer only when the
    closing end leaves data unread, while uWSGI has read all nginx sent. nginx's uwsgi module knows a body's end only
    from Content-Length (a chunked body passes through as it is), so it ends its chunked reply to the client normally.
    """
    import uwsgi  # only inside uWSGI

    # A duplicate of uWSGI's descriptor: the option is the socket's, and uWSGI's own close then resets it.
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(uwsgi.connection_fd())) as connection:
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _ini_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@functools.cache
def idempotent_graceful_stop(binary: str) -> bool:
    """Whether binary is uWSGI 2.0.27 or later, whose worker takes a second graceful-stop SIGHUP as a no-op (earlier,
    it cancelled the worker's threads again). A distribution's older uWSGI on PATH may be the one found."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
        return tuple(int(part) for part in out.strip().split("-")[0].split(".")[:3]) >= (2, 0, 27)
    except (OSError, ValueError, subprocess.SubprocessError):
        return False


def find_uwsgi() -> str:
    """The uwsgi binary of this virtualenv, else the one on PATH."""
    beside = Path(sys.executable).parent / "uwsgi"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("uwsgi")
    if found is None:
        raise ServerError("uwsgi not found: pip install 'flaskprod[uwsgi]'")
    return found


def somaxconn() -> int | None:
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return None


class Supervisor:
    """Run uWSGI as a child; forward signals (SIGTERM after the drain file), reap dead workers' metrics,
    recycle workers past their memory bound, and end a graceful stop that outlasts graceful_timeout.

    uWSGI's graceful stop waits for every request in hand however long it runs (its reload-mercy bounds
    reloads only), where Gunicorn's kills the workers graceful_timeout after SIGTERM: the grace period the
    orchestrators' stop timeouts are counted from. The signal handlers only record; the loop in run() does
    the work.
    """

    def __init__(
        self,
        command: list[str],
        run_dir: RunDir,
        drain_delay: float,
        bound: MemoryBound,
        graceful_timeout: float,
        relay: Relay | None = None,
    ) -> None:
        self.command = command
        self.relay = relay
        self.run_dir = run_dir
        self.drain_delay = drain_delay
        self.bound = bound
        self.graceful_timeout = graceful_timeout
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self.marked: set[int] = set()
        # Once SIGTERM reached uWSGI: when its graceful stop runs out, then when a brutal one does.
        self.stop_by: float | None = None
        self.kill_at: float | None = None
        self.term_again_at: float | None = None
        self.stopping = False  # told to stop (SIGTERM, SIGINT): uWSGI's exit is then no news
        self.at_once = False  # told to stop at once (SIGINT): a later SIGTERM gives the master's pools no more time
        # Once told to stop at once: when what is left of uWSGI is killed (stopnow.STOP_AT_ONCE_BOUND), and whether it
        # was (serve then exits 1).
        self.at_once_by: float | None = None
        self.at_once_why = ""
        self.killed_at_once = False
        # Workers without their own SIGHUP handler when uWSGI was told to stop or reload, each until when to look:
        # the master's one SIGHUP to each is lost on them, so serve tells them again once they have it. Off before
        # uWSGI 2.0.27, whose graceful stop a second SIGHUP could crash (it cancelled the worker's threads).
        self.late: dict[int, float] = {}

    def record(self, sig: int, frame: FrameType | None) -> None:
        self.signals.put_nowait(sig)

    def run(self) -> int:
        for forwarded in _HANDLED:
            signal.signal(forwarded, self.record)
        if self.relay is None:
            proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL)
        else:
            proc = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=self.relay.stdout, stderr=self.relay.stderr
            )
            self.relay.close_writers()  # uWSGI holds them: each pipe ends with its last process
            self.relay.start()
        try:
            while proc.poll() is None:
                sig: int | None
                try:
                    sig = self.signals.get(timeout=self._wait_at_most())
                except queue.Empty:
                    sig = None
                self.stopping = self.stopping or sig in _STOPS
                if sig == signal.SIGTERM:
                    self.run_dir.begin_drain()
                    cut_by = self._wait_drain_delay(proc)
                    if cut_by is not None and cut_by in _AT_ONCE:
                        # A stop at once that cut the delay short is one: it was a graceful stop with no bound, and a
                        # worker that takes no signal held serve for graceful_timeout after Ctrl-C.
                        self._stop_at_once(proc, cut_by)
                    else:
                        self._stop_gracefully(proc)
                elif sig == signal.SIGHUP:
                    self._tell(proc, sig)
                elif sig is not None and sig in _AT_ONCE:
                    self._stop_at_once(proc, sig)
                self._end_overdue_stop(proc)
                self._end_overdue_stop_at_once()
                self.tell_late_workers()
                self.reap_metrics()
                self.bound.sweep(lambda: children(proc.pid))
            # uWSGI's master can end before a worker that takes no signal, which is then below serve no more.
            while self.at_once_by is not None and what_is_left(os.getpid()):
                time.sleep(max(0.0, min(LEFT_POLL, self.at_once_by - time.monotonic())))
                self._end_overdue_stop_at_once()
            if self.relay is not None:
                self.relay.finish()  # uWSGI's last lines before serve's own
            if not self.told_to_stop():
                say(master_ended(proc.pid, proc.returncode), as_json=self.relay is not None)
            return 1 if self.killed_at_once else proc.returncode
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if self.relay is not None:
                self.relay.finish()
            for forwarded in _HANDLED:
                signal.signal(forwarded, signal.SIG_DFL)

    def _stop_gracefully(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGTERM's stop: uWSGI's graceful one, which _end_overdue_stop ends past graceful_timeout."""
        self._tell(proc, signal.SIGTERM)
        if self.stop_by is None and self.kill_at is None:
            self.stop_by = time.monotonic() + self.graceful_timeout
            ran_out = f"server.graceful_timeout = {self.graceful_timeout:g}s ran out"
            if not self.at_once:
                self._write_stop_by(self.stop_by, ran_out)
            self.term_again_at = time.monotonic() + TERM_AGAIN

    def _stop_at_once(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        """uWSGI's stop at once (its workers end mid-request): the master's pools get no wait either. Its SIGINT,
        whichever came: its own SIGQUIT is not Gunicorn's stop at once (it dumps the master's state, or stops it
        brutally, by version and build)."""
        name = signal.Signals(sig).name
        self.at_once = True
        self._write_stop_by(time.monotonic(), f"stopped at once ({name})")
        if self.at_once_by is None:
            self.at_once_by = time.monotonic() + STOP_AT_ONCE_BOUND
            self.at_once_why = f"still running {STOP_AT_ONCE_BOUND:g}s after {name} (stop at once)"
        proc.send_signal(signal.SIGINT)

    def _write_stop_by(self, deadline: float, why: str) -> None:
        """Tell uWSGI's master, in the file beside the ini, by when its thread pools' work ends, and why."""
        (self.run_dir.path / STOP_BY_FILE).write_text(f"{deadline!r}\n{why}\n")

    def told_to_stop(self) -> bool:
        """Whether a stop was asked, by a signal handled or one still queued: Ctrl-C, or systemd's SIGTERM to the
        whole group, reaches uWSGI's master too, which may end before the loop reads the signal."""
        while not self.signals.empty():
            # get_nowait() first: after `self.stopping or`, a queued SIGCHLD was never taken and this spun forever.
            self.stopping = self.signals.get_nowait() in _STOPS or self.stopping
        return self.stopping

    def _wait_at_most(self) -> float:
        """Seconds the loop may sleep: until its next sweep, or the stop's next deadline if sooner."""
        deadlines = [d for d in (self.stop_by, self.kill_at, self.term_again_at, self.at_once_by) if d is not None]
        if self.late:
            deadlines.append(time.monotonic() + LATE_POLL)
        if not deadlines:
            return REAP_INTERVAL
        return max(0.0, min(REAP_INTERVAL, min(deadlines) - time.monotonic()))

    def _tell(self, proc: subprocess.Popen[bytes], sig: int) -> None:
        """Send uWSGI's master a stop (SIGTERM) or a reload (SIGHUP), first noting the workers that cannot hear the
        SIGHUP it sends each of them in turn."""
        if idempotent_graceful_stop(self.command[0]):  # asked once, at the first stop or reload
            # Not for ever: a process the app started from the master (lazy-apps is off) is no worker to wait for.
            until = time.monotonic() + self.graceful_timeout
            for pid in children(proc.pid):
                if catches(pid, *WORKER_HANDLERS) is False:
                    self.late.setdefault(pid, until)
        proc.send_signal(sig)

    def tell_late_workers(self) -> None:
        """A worker keeps the master's SIGHUP from its fork until uWSGI sets its own (WORKER_HANDLERS): the master's
        SIGHUP that came between was lost, and the worker served on until graceful_timeout. Send it again once the
        handler is set; to a worker that heard the first, uWSGI's graceful stop (2.0.27 on) is idempotent."""
        for pid, until in list(self.late.items()):
            ready = catches(pid, *WORKER_HANDLERS)
            if ready is False and time.monotonic() < until:
                continue
            del self.late[pid]
            if ready:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGHUP)

    def _end_overdue_stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Past graceful_timeout the workers are killed, as Gunicorn's arbiter does; the master then exits on its
        own (a second signal finds it stopping already and is ignored), or is killed CUT_GRACE later."""
        now = time.monotonic()
        if proc.poll() is not None:
            return
        if self.term_again_at is not None and now >= self.term_again_at:
            self._tell(proc, signal.SIGTERM)
            self.term_again_at = now + TERM_AGAIN
        if self.stop_by is not None and now >= self.stop_by and not _workers_of(proc.pid):
            # Past its workers, the master is finishing the work queued in the app's thread pools, which it cuts at
            # this deadline itself (forkedpools.finish_pools_work_at_exit): it gets CUT_GRACE to exit.
            self.stop_by, self.term_again_at, self.kill_at = None, None, now + CUT_GRACE
        elif self.stop_by is not None and now >= self.stop_by:
            say(
                f"flaskprod: uWSGI's workers still running server.graceful_timeout = {self.graceful_timeout:g}s "
                "after SIGTERM, on a request in hand or a non-daemon thread of the app's, which Python's exit waits "
                "for (start it with daemon=True): killing them",
                as_json=self.relay is not None,
            )
            _kill_all(children(proc.pid))
            self.stop_by, self.term_again_at, self.kill_at = None, None, now + CUT_GRACE
        elif self.kill_at is not None and now >= self.kill_at:
            say(
                f"flaskprod: uWSGI's master still running {CUT_GRACE:g}s after server.graceful_timeout = "
                f"{self.graceful_timeout:g}s ran out: killing it",
                as_json=self.relay is not None,
            )
            _kill_all(children(proc.pid))  # the master would no longer reap them
            proc.kill()
            self.kill_at = None

    def _end_overdue_stop_at_once(self) -> None:
        """Past the bound of a stop at once, kill what is left of serve's processes: uWSGI's master waits for ever for
        a worker that does not end on its SIGINT (a view stuck in C code, signals blocked), and serve with it."""
        if self.at_once_by is None or time.monotonic() < self.at_once_by:
            return
        self.at_once_by = None
        if killed := kill_what_is_left(os.getpid()):
            say(killed_line(self.at_once_why, killed), as_json=self.relay is not None)
            self.killed_at_once = True

    def _wait_drain_delay(self, proc: subprocess.Popen[bytes]) -> int | None:
        """Wait out the drain delay; the stop signal that cut it short, if one did."""
        deadline = time.monotonic() + self.drain_delay
        while proc.poll() is None and (left := deadline - time.monotonic()) > 0:
            try:
                if (sig := self.signals.get(timeout=min(left, REAP_INTERVAL))) in _STOPS:
                    return sig
            except queue.Empty:
                pass
            self.reap_metrics()
        return None

    def reap_metrics(self) -> None:
        """uWSGI has no child-exit hook: mark each worker whose metric files remain but whose pid is gone."""
        from ..runtime.metrics import mark_worker_dead, pid_of_file

        try:
            names = os.listdir(self.run_dir.multiproc_dir)
        except OSError:
            return
        seen = {pid for name in names if (pid := pid_of_file(name)) is not None}
        # Marking folds a pid's files away: one whose files are gone may come back as a new worker's, to fold again.
        self.marked &= seen
        for pid in seen - self.marked:
            if not _alive(pid):
                mark_worker_dead(pid)
                self.marked.add(pid)


def master_ended(pid: int, status: int) -> str:
    """The line for uWSGI's master ending unasked. It names the master's pid, the one `ps` shows as "uWSGI master":
    the exit a supervisor above (`up`, systemd) logs is this serve process's, whose pid the operator never saw."""
    return f"flaskprod: uWSGI's master (pid {pid}) {describe_exit(status, APP_SERVER_EXITS['uwsgi'])}"


def catches(pid: int, *signums: int, proc: Path = Path("/proc")) -> bool | None:
    """Whether process pid has a handler for each of signums (SigCgt in its status); None once it has exited."""
    try:
        status = (proc / str(pid) / "status").read_text()
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("State", "Z").split()[0] in ("Z", "X"):
        return None
    caught = int(fields.get("SigCgt", "0"), 16)
    return all(caught >> (signum - 1) & 1 for signum in signums)


def _workers_of(master: int) -> list[int]:
    """The master's children that are uWSGI workers, by the handler only a worker sets (SIGUSR2); not a process the
    app's multiprocessing pool started in the master."""
    return [pid for pid in children(master) if catches(pid, signal.SIGUSR2)]


def _kill_all(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(settings: dict[str, Any], app: AppRef, run_dir: RunDir) -> int:
    """Write the ini into the run directory and supervise uWSGI until it stops; its exit status."""
    binary = find_uwsgi()
    ini = run_dir.path / "uwsgi.ini"
    ini.write_text(render_ini(settings, protocol=settings["protocol"], listen_max=somaxconn()))
    responder: Responder | None = None
    try:
        run_dir.prepare()
        # SIGHUP to a worker is uWSGI's graceful recycle of that worker alone.
        relay = Relay("uwsgi") if settings["log_json"] else None
        bound = MemoryBound(
            settings["recycle_memory_mb"],
            recycle=signal_to(signal.SIGHUP),
            say=functools.partial(say, as_json=relay is not None),
        )
        command = [binary, "--ini", str(ini)]
        if settings["metrics_bind"]:
            # Here, in the supervisor, not in uWSGI's master: scrapes answered outside the worker pool, from the
            # files (servers/responder.py). uWSGI is started by fork and exec, so it holds none of its sockets.
            responder = start_responder(settings, str(run_dir.multiproc_dir))
        return Supervisor(command, run_dir, settings["drain_delay"], bound, settings["graceful_timeout"], relay).run()
    finally:
        if responder is not None:
            responder.close()
        run_dir.remove()
