"""Child processes of `up`: started in their own process group, restarted with backoff when they die.

They stay in `up`'s session, unless its terminal would stop them (below). Linux shares the
cores between sessions before the processes in them (autogroup, on in Debian's kernel): with
nginx and the app server each in a session of its own, the smallest requests were served at
0.78x the rate (docs/defaults.md, "One session for the whole stack").
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import pwd
import signal
import subprocess
import termios
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..exits import describe_exit
from . import unixsockets

# First restart after this many seconds, doubling up to the cap; a child that ran for
# STABLE_AFTER seconds starts again from the first delay.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
STABLE_AFTER = 60.0
_PR_SET_PDEATHSIG = 1
def terminal_stops_background_writes(fds: tuple[int, ...] = (1, 2)) -> bool:
    """Whether `up` writes to a terminal set to `stty tostop`.

    There a child in `up`'s session, a background process group of that terminal, would be sent
    SIGTTOU at its first log line: stopped, or (Gunicorn handles SIGTTOU) its write retried for
    ever. Such children get sessions of their own, with no terminal to stop them.
    """
    for fd in fds:
        with contextlib.suppress(termios.error):
            if os.isatty(fd) and termios.tcgetattr(fd)[3] & termios.TOSTOP:
                return True
    return False


def die_with_parent(sig: signal.Signals = signal.SIGTERM) -> None:
    """Runs in the child before exec: if `up` is killed outright, the child gets sig instead of lingering.

    The children sit in their own process groups (so Ctrl-C reaches `up` alone, which then stops
    them gracefully); this is what still ties them to `up` if it cannot do that. A change of user
    clears it, so it runs after Popen's own (a child run as another user: Child.user).
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the process group is all there is
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)


def as_user(name: str | None) -> dict[str, Any]:
    """Popen's arguments that run a process as user name, with its groups (as `setpriv --init-groups` would);
    none for None."""
    if name is None:
        return {}
    entry = pwd.getpwnam(name)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": os.getgrouplist(name, entry.pw_gid)}


# /proc/net/tcp's state of a listening socket (TCP_LISTEN, in hex).
_TCP_LISTEN = "0A"


def _listeners(port: int) -> set[str]:
    """The inodes of the TCP sockets listening on port (any address, IPv4 or IPv6), as /proc/PID/fd names them."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()  # sl, local address:port (hex), remote, state, ..., inode (the tenth)
            if len(fields) > 9 and fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                found.add(f"socket:[{fields[9]}]")
    return found


def holds_listener(pid: int, port: int) -> bool:
    """Whether process pid holds a socket listening on TCP port: it, not another process that took the port while
    it was down (a connection would not tell them apart)."""
    listeners = _listeners(port)
    if not listeners:
        return False
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        with contextlib.suppress(OSError):
            if os.readlink(fd) in listeners:
                return True
    return False


@dataclass
class Child:
    """One supervised process: how to start it, and how it is asked to stop gracefully."""

    name: str
    command: list[str]
    stop_signal: signal.Signals
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    restarts: int = field(default=0)
    listens_on: Path | None = None  # its unix socket, removed once it has stopped
    listens_port: int | None = None  # its TCP port (Prometheus's, Alertmanager's): it serves once it holds a listener
    exit_meanings: Mapping[int, str] = field(default_factory=dict)  # its own statuses, as describe_exit reads them
    user: str | None = None  # who it runs as, when not `up`'s user (root's PostgreSQL runs as postgres)
    death_signal: signal.Signals = signal.SIGTERM  # what it gets when `up` dies without stopping it
    # How it is told to stop at once, when what it holds is not worth waiting for (nothing was served yet, or a
    # second Ctrl-C); None: its stop_signal is as quick as it gets.
    quick_signal: signal.Signals | None = None
    quick_grace: float = 2.0  # seconds it gets after quick_signal before it is killed
    # Whether it serves now (nginx: has bound its ports), where its unix socket (listens_on) does not tell.
    serves: Callable[[], bool] | None = None
    # Restarted, and not yet said to be: it is, once it serves (Stack.supervise).
    unannounced: bool = False

    def start(self) -> None:
        own_session = terminal_stops_background_writes()
        self.proc = subprocess.Popen(
            self.command,
            env=None if self.env is None else dict(self.env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            start_new_session=own_session,
            process_group=None if own_session else 0,
            preexec_fn=functools.partial(die_with_parent, self.death_signal),
            **as_user(self.user),
        )
        self.started_at = time.monotonic()
        self.restart_at = None

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def own_children(self) -> set[int]:
        """The child's own children now (nginx's workers); empty where /proc does not list them."""
        if self.pid is None:
            return set()
        try:
            return {int(pid) for pid in Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()}
        except (OSError, ValueError):
            return set()

    def exit_status(self) -> int | None:
        """The exit status once the process has ended (reaping it), else None."""
        if self.proc is None:
            return None
        return self.proc.poll()

    def describe_exit(self, status: int) -> str:
        return describe_exit(status, self.exit_meanings)

    def listening(self) -> bool:
        """Whether it serves now: serves() says so; else something listens on its socket (listens_on); else it holds
        a listener on its port (listens_port); else, running at all."""
        if self.serves is not None:
            return self.serves()
        if self.listens_on is not None:
            return unixsockets.waiting(self.listens_on) is not None
        if self.listens_port is not None:
            return self.pid is not None and holds_listener(self.pid, self.listens_port)
        return self.running()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, sig: int) -> None:
        if self.running():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, sig)

    def schedule_restart(self, now: float) -> float:
        """Plan the next start after a crash; the delay in seconds."""
        if now - self.started_at >= STABLE_AFTER:
            self.failures = 0
        delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0**self.failures)
        self.failures += 1
        self.restarts += 1
        self.restart_at = now + delay
        return delay

    def wait(self, timeout: float) -> bool:
        """True when the process ended within timeout seconds."""
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill_group(self) -> None:
        """SIGKILL whatever is left of the child's process group (its workers included)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.poll()
