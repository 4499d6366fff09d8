"""Instructions a request costs inside a real uWSGI worker, counted by valgrind: a figure the host cannot move.

Timings on this VM wander by a fifth between back-to-back runs with no steal at all, too much to
settle a cost of a few percent. cachegrind counts every instruction the worker runs, the same on
every run. The worker is uWSGI (one process, one thread, HTTP on loopback, the app loaded as `up`
loads it) sent the headers nginx adds; the count for `more` requests less the count for `fewer`,
over the difference, leaves start-up and exit out. Kernel time is not counted.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping

from . import procs
from .stacks import BIN, REPO

ENTRY = "flaskprod.servers.uwsgi_entry:application"
# What nginx sends with flaskprod's configuration (proxy.trusted_hops = 1 makes the app read them).
NGINX_HEADERS = {
    "X-Real-IP": "127.0.0.1",
    "X-Forwarded-For": "127.0.0.1",
    "X-Forwarded-Proto": "http",
    "X-Request-Id": "0123456789abcdef0123456789abcdef",
    "Connection": "close",
}
WARM_UP = 50  # requests before counting starts: imports on first use, the interpreter's specialising
_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def valgrind() -> str:
    found = shutil.which("valgrind")
    if found is None:
        raise RuntimeError("valgrind is not installed: install the Debian package valgrind (make bench does)")
    return found


def parse_irefs(stderr: str) -> int:
    """The instruction count cachegrind prints at exit ("I refs: 1,234"); the largest if it printed several."""
    counts = [int(found.replace(",", "")) for found in _IREFS.findall(stderr)]
    if not counts:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{stderr[-1500:]}")
    return max(counts)


def nginx_headers() -> dict[str, str]:
    """NGINX_HEADERS and when nginx passed the request on, now: the app counts its deadline from then, and a start
    taken once would be minutes old by the last request under valgrind (answered 504 without running the view)."""
    return {**NGINX_HEADERS, "X-Request-Start": f"t={time.time():.3f}"}


def count(target: str, path: str, requests: int, env: Mapping[str, str], *, timeout: float = 180) -> int:
    """Instructions a uWSGI worker serving target runs from start to exit, answering WARM_UP + requests."""
    port = procs.free_port()
    args = [
        valgrind(), "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        str(BIN / "uwsgi"), "--http-socket", f"127.0.0.1:{port}", "--module", ENTRY, "--processes", "1",
        "--enable-threads", "--die-on-term", "--need-app", "--disable-logging", "--chdir", str(REPO),
    ]  # fmt: skip
    worker_env = {**env, "FLASKPROD_APP__TARGET": target, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(
        args, cwd=REPO, env=worker_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + timeout
        # Under valgrind the app takes several seconds to load.
        while procs.http_status("127.0.0.1", port, path, "localhost", timeout, nginx_headers()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                output = proc.communicate()[1] if proc.poll() is not None else ""
                raise RuntimeError(f"uWSGI under valgrind did not answer:\n{output[-1500:]}")
            time.sleep(0.5)
        for _ in range(WARM_UP + requests - 1):
            status = procs.http_status("127.0.0.1", port, path, "localhost", timeout, nginx_headers())
            if status != 200:
                raise RuntimeError(f"{target} answered {path} with {status}")
        os.killpg(proc.pid, signal.SIGTERM)
        return parse_irefs(proc.communicate(timeout=timeout)[1])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def per_request(target: str, path: str, env: Mapping[str, str], *, fewer: int, more: int) -> float:
    """Instructions one request costs: (count(more) - count(fewer)) / (more - fewer)."""
    return (count(target, path, more, env) - count(target, path, fewer, env)) / (more - fewer)
