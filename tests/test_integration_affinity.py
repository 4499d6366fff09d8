"""server.cpu_affinity under real servers: each worker's request threads run on a CPU of their own,
and a worker that dies is replaced on the CPU it left."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from flaskprod.sizing import detect_machine
from tests.conftest import Server, StartServer

pytestmark = pytest.mark.integration

# The request thread reports its own mask: sched_getaffinity(0) is per thread on Linux, so this
# shows what the serving thread may run on, not only the process's first thread.
APP = """
import os
import time

from flask import Flask

from flaskprod import Production

app = Flask(__name__)
Production(app)


@app.get("/where")
def where():
    time.sleep(0.05)  # holds a thread, so concurrent requests spread over the workers
    return {"pid": os.getpid(), "cpus": sorted(os.sched_getaffinity(0))}
"""

SERVERS = ["gunicorn", "uwsgi"]
CPUS = sorted(os.sched_getaffinity(0))


def where_by_pid(
    server: Server, want: int, exclude: frozenset[int] = frozenset(), seconds: float = 20
) -> dict[int, list[int]]:
    """CPUs each worker's threads may use, by pid, once `want` pids outside `exclude` answered (bounded)."""
    seen: dict[int, list[int]] = {}
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(8) as pool:
        while len(set(seen) - exclude) < want and time.monotonic() < deadline:
            for response in pool.map(lambda _: server.get("/where", headers={"Connection": "close"}), range(8)):
                assert response.status_code == 200, response.text
                body = response.json()
                seen[body["pid"]] = body["cpus"]
    assert len(set(seen) - exclude) >= want, f"only workers {sorted(seen)} answered in {seconds}s:\n{server.output()}"
    return {pid: cpus for pid, cpus in seen.items() if pid not in exclude}


def test_this_machine_has_cpus_to_pin_to() -> None:
    # Pinning two workers apart needs two CPUs; CI's machine has them, and a run without them must say so.
    assert len(CPUS) >= 2, f"these tests need 2 CPUs in the affinity mask, this process has {CPUS}"


@pytest.mark.parametrize("kind", SERVERS)
def test_threaded_workers_each_run_on_a_cpu_of_their_own_and_a_replacement_takes_the_freed_one(
    serve_app: StartServer, kind: str
) -> None:
    server = serve_app(APP, workers=2, args=("--server", kind, "--threads", "4", "--set", "server.cpu_affinity=true"))
    first = where_by_pid(server, 2)
    assert all(len(cpus) == 1 for cpus in first.values()), first
    assert sorted(cpus[0] for cpus in first.values()) == CPUS[:2], first

    victim, (freed,) = next(iter(first.items()))
    os.kill(victim, signal.SIGKILL)
    replaced = where_by_pid(server, 2, exclude=frozenset({victim}))
    new = {pid: cpus for pid, cpus in replaced.items() if pid not in first}
    assert list(new.values()) == [[freed]], f"replacement of {victim} (CPU {freed}): {replaced}"


@pytest.mark.parametrize("kind", SERVERS)
def test_auto_leaves_single_threaded_workers_to_the_scheduler(serve_app: StartServer, kind: str) -> None:
    server = serve_app(APP, workers=2, args=("--server", kind, "--threads", "1"))
    assert all(cpus == CPUS for cpus in where_by_pid(server, 2).values())


@pytest.mark.parametrize("kind", SERVERS)
def test_auto_pins_threaded_workers_when_each_has_a_cpu_of_its_own(serve_app: StartServer, kind: str) -> None:
    server = serve_app(APP, workers=2, args=("--server", kind, "--threads", "2"))
    masks = sorted(where_by_pid(server, 2).values())
    # Under a CPU quota below the CPU set (a shared node) auto must not pin; with whole CPUs it must.
    expected = [[cpu] for cpu in CPUS[:2]] if detect_machine().owns_cpus else [CPUS, CPUS]
    assert masks == expected


def test_an_apps_own_uwsgi_post_fork_hook_runs_beside_the_pinning(serve_app: StartServer) -> None:
    """uWSGI has one post_fork_hook, which pinning takes: the hook the app set (or uwsgidecorators' @postfork chain)
    runs after it, in each worker, and sees the worker's CPU."""
    hooked = APP.replace(
        "app = Flask(__name__)",
        "def noted():\n"
        "    global NOTED\n"
        "    NOTED = sorted(os.sched_getaffinity(0))\n"
        "NOTED = None\n"
        "try:\n"
        "    import uwsgi  # not in serve's own look at the app\n"
        "    uwsgi.post_fork_hook = noted\n"
        "except ImportError:\n"
        "    pass\n"
        "app = Flask(__name__)\n"
        "@app.get('/noted')\n"
        "def noted_view():\n"
        "    return {'pid': os.getpid(), 'cpus': NOTED}",
    )
    server = serve_app(
        hooked, workers=2, args=("--server", "uwsgi", "--threads", "4", "--set", "server.cpu_affinity=true")
    )
    pinned = where_by_pid(server, 2)
    noted = {}
    for _ in range(40):
        body = server.get("/noted", headers={"Connection": "close"}).json()
        noted[body["pid"]] = body["cpus"]
    assert noted and all(cpus == pinned[pid] for pid, cpus in noted.items()), (noted, pinned)
