"""A child interpreter that loads the user's app (for `check`, and the probe of init, serve, build and up):
in its own session, given proxy.ready_timeout to load, and one line when it exits, crashes or hangs instead."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .. import discovery
from ..errors import DiscoveryError

POLL_SECONDS = 0.05


def load_in_child(
    args: Sequence[str],
    *,
    label: str,
    bound: int,
    loaded: Path | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    if_slow: str | None = None,
    check: Callable[[], None] | None = None,
) -> int:
    """Run args until they exit, their output on stderr (stdout stays the command's); their exit status.

    Raises a DiscoveryError when the app had not loaded within bound seconds: the child has loaded it once
    it exits, or once loaded exists (what it does then is not bounded). if_slow is the advice for an app
    that is only slow; by default, raising the bound with --set. The child runs in its own session, so that
    whatever the app started goes with it when the group is killed: at the deadline, or when this process
    is interrupted. check is called as it waits: what it raises (a stop asked for) ends the load there.
    """
    process = subprocess.Popen(
        list(args),
        cwd=cwd,
        env=None if env is None else dict(env),
        stdin=subprocess.DEVNULL,
        stdout=_stderr_fd(),
        start_new_session=True,
    )
    # SIGTERM would end this process at once and leave the child, in a session of its own, loading on (`up`
    # stopping the `flaskprod serve` of a release being deployed): here it unwinds through the finally below.
    # A process that handles SIGTERM itself (`up`) keeps its handler.
    terminate = threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) in (
        signal.SIG_DFL,
        None,
    )
    if terminate:
        signal.signal(signal.SIGTERM, _exit_on_term)
    try:
        status = _wait(process, loaded, time.monotonic() + bound, check)
    finally:
        if terminate:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if check is not None:
        # A stop signal sent to the caller's process group can reach the child too, in the moment between its
        # fork and its setsid(), and end it as it ends the caller: that is the stop asked for, not a crash.
        check()
    if status is None:
        advice = if_slow or f"raise the bound (--set proxy.ready_timeout={2 * bound})"
        raise DiscoveryError(
            f"app {label!r} did not finish loading within proxy.ready_timeout = {bound}s: if it waits for a "
            "service (a database) when imported, start that service or connect on the first request instead; "
            f"if it is only slow, {advice}"
        )
    return status


def write_answer(path: Path, answer: object) -> None:
    """The child's answer for the parent; none when the parent's directory is gone: a Ctrl-C that reached the
    parent as it started this child (inside Popen, before it could stop it) made it remove the directory and
    leave, and a traceback here would be the last thing the user saw."""
    try:
        path.write_text(json.dumps(answer))
    except FileNotFoundError:
        if path.parent.exists():
            raise


def exit_child(code: int) -> None:
    """End the loading child with code once its output is written: threads the app started while importing
    would otherwise keep the interpreter alive."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _exit_on_term(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _wait(
    process: subprocess.Popen[bytes], loaded: Path | None, deadline: float, check: Callable[[], None] | None
) -> int | None:
    """The child's exit status, once what the app started as it loaded (a scheduler, a helper process) is
    stopped with it; None when it had not loaded the app by the deadline."""
    while os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        if time.monotonic() >= deadline and not (loaded is not None and loaded.exists()):
            return None
        if check is not None:
            check()
        time.sleep(POLL_SECONDS)
    # Not reaped yet, the child holds its process group's id, which no other process can have taken.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    return process.wait()


def ended_message(label: str, status: int) -> str:
    """The one line for a child that ended without a word: os._exit() or a crash in native code."""
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"app {label!r} crashed while loading (killed by {name})"
    return (
        f"app {label!r} exited while loading (exit status {status}, without a Python exception, as os._exit() "
        "does): a server importing it would exit too"
    )


def _stderr_fd() -> int:
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # replaced by a stream with no descriptor (a test runner's)
        return 2


def project_root(ref: discovery.AppRef, cwd: Path) -> Path:
    """cwd when the app lives under it (compose files and the like sit beside flaskprod.toml), else the app's."""
    app_root = Path(ref.path).resolve()
    here = cwd.resolve()
    return here if app_root == here or here in app_root.parents else app_root


def _user_frame(exc: BaseException, root: Path) -> str | None:
    """file:line of the deepest frame of exc's traceback in the project's own code (not an installed package)."""
    where = None
    tb = exc.__traceback__
    while tb is not None:
        path = Path(tb.tb_frame.f_code.co_filename)
        if path.is_absolute() and path.is_relative_to(root) and "site-packages" not in path.parts:
            where = f"{path.relative_to(root).as_posix()}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def exit_message(label: str, exc: BaseException, root: Path) -> str:
    """The one line for an app that raised SystemExit, KeyboardInterrupt or another BaseException while loading."""
    where = _user_frame(exc, root)
    if isinstance(exc, SystemExit):
        code = "" if exc.code is None else repr(exc.code)
        at = f" from {where}" if where else ""
        return (
            f"app {label!r} exited while loading (sys.exit({code}){at}): a server importing it would exit too; "
            'call sys.exit() only under `if __name__ == "__main__":`'
        )
    text = " ".join(str(exc).split())
    raised = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    at = f" ({where})" if where else ""
    return f"app {label!r} raised {raised} while loading{at}: a server importing it would stop too; remove the cause"
