"""Processes under test: started in their own session, found by their tree, killed by process group."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


def _port_band() -> range:
    """Ports this process hands out: below the kernel's ephemeral range and above the well-known services'.

    Port 0 would draw from the ephemeral range, the same pool every client connection's local port comes from, so
    a port picked there and bound a while later (pebble's challenge port, a stack's listener) can be taken in
    between by a connection of the other test worker; CI lost two TLS tests to that. Each pytest-xdist worker gets
    a band of its own, so two workers never pick the same port either.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first, last = 10000, max(low, 12000)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    size = (last - first) // max(count, 1)
    return range(first + index * size, first + (index + 1) * size)


def _ports(band: range) -> Iterator[int]:
    start = os.getpid() % len(band)  # a later run starts elsewhere, clear of its predecessor's TIME_WAITs
    while True:
        yield from band[start:]
        yield from band[:start]
        start = 0


_BAND = _port_band()
_next_port = _ports(_BAND)


def free_port() -> int:
    """A loopback port free now that nothing else in this run will be handed, in turn from this process's band."""
    for _ in range(len(_BAND)):
        port = next(_next_port)
        if "443" in str(port):
            # gixy-ng takes a listen with 443 anywhere in it (20443, 14431) for TLS, and fails a plain-HTTP config
            # for lacking ssl_protocols and HSTS: tests that grade a config with it would fail by the port drawn.
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


@dataclass
class ProcessGroup:
    """One started command; its own session, so its group can be killed whole, children included."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    # Groups of descendants that started their own sessions (flaskprod up's children do).
    extra_groups: set[int] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def remember_descendant_groups(self) -> None:
        for pid in descendants(self.pid):
            with contextlib.suppress(OSError):
                self.extra_groups.add(os.getpgid(pid))

    def kill(self) -> None:
        """SIGKILL every group this command made: a benchmark needs no graceful stop, only nothing left behind."""
        self.remember_descendant_groups()
        for pgid in {self.pid, *self.extra_groups}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)


def port_pair() -> int:
    """A free port whose next one is free too: an app server's in a container's image, and its metrics responder's
    beside it (sizing.responder_bind)."""
    while True:
        port, after = free_port(), free_port()
        if after == port + 1:
            return port


def start(name: str, args: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path) -> ProcessGroup:
    """Start args in a new session with stdout and stderr to log (app logs must not block on a pipe)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ProcessGroup(name=name, proc=proc, log=log)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(pid: int, children: Mapping[int, list[int]] | None = None) -> list[int]:
    """pid's descendants; children (from one scan of /proc) saves the scan when asking about several."""
    children = _children_map() if children is None else children
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def trees(roots: Iterable[int]) -> list[int]:
    """Each root and all its descendants, from one scan of /proc."""
    children = _children_map()
    return [pid for root in roots for pid in (root, *descendants(root, children))]


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def worker_pids(root: int) -> list[int]:
    """The app's workers under root: leaf processes that are not nginx.

    Masters (Gunicorn's arbiter, uWSGI's master, `flaskprod serve`, `flaskprod up`) all have
    children; the processes that run requests are the leaves. A single-process server
    (the Flask development server) is its own leaf.
    """
    children = _children_map()
    tree = [root, *descendants(root, children)]
    return [p for p in tree if p not in children and not command_name(p).startswith("nginx")]


def pss_bytes(pid: int) -> int | None:
    """Proportional set size: shared pages are split between the processes that map them."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return None


def http_status(
    host: str, port: int, path: str, host_header: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> int | None:
    """The status of one GET on its own connection, or None when nothing answered."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={**(headers or {}), "Host": host_header})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        conn.close()


def wait_ready(group: ProcessGroup, port: int, path: str, host_header: str, timeout: float = 60.0) -> None:
    """Return once path answers 200; raise with the log's tail when the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if group.proc.poll() is not None:
            raise RuntimeError(
                f"{group.name} exited with {group.proc.returncode} before it was ready:\n{group.log_tail()}"
            )
        if http_status("127.0.0.1", port, path, host_header) == 200:
            return
        time.sleep(0.1)
    raise RuntimeError(f"{group.name} was not ready on port {port}{path} within {timeout:g}s:\n{group.log_tail()}")
