"""`python -m benchmarks.deploy`: ship a code change under a steady load, flaskprod against the peers' ways.

Each method starts its stack on a copy of the reference app, puts a steady, paced load on it from many
connections (a new connection per request, every outcome recorded with its times), ships a new version
mid-run as operators of that stack do, and records what clients saw: failures, the longest request,
latencies around the switch against steady state, and how long the new code took to answer.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from . import machine, procs
from .native import copy_taskboard
from .outfolder import cannot_write
from .run import base_env, round_order, stack_env
from .stacks import BIN, REPO, Command, Running, Stack, all_stacks, started

OUT = REPO / "docs" / "benchmarks" / "deploy"
OUT_KEEP_ALIVE = REPO / "docs" / "benchmarks" / "deploy-keep-alive"
VERSION_PATH = "/bench/version"
# Added to wsgi.py in the benchmark's copy of the app only: the version a release answers with.
VERSION_MODULE = "benchversion"
PROBE = f'''

# bench: added by benchmarks/deploy.py to its copy of the app; the code change it ships is {VERSION_MODULE}.py.
from {VERSION_MODULE} import VERSION  # noqa: E402


@app.get("{VERSION_PATH}")
def bench_version() -> str:
    return VERSION
'''
# What this benchmark runs, of what machine.versions() records.
VERSIONS = ("nginx", "flaskprod", "flask", "werkzeug", "gunicorn", "uwsgi", "sqlalchemy")
# Half of this before and half after the moment the new code first answered: the switch window.
SWITCH_WINDOW_S = 2.0

Switch = Literal["deploy", "hup", "restart"]
Failure = Literal["refused", "reset", "timeout", "other"]
Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]
Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class Method:
    """A stack and the way its operators ship new code to it."""

    name: str
    label: str
    stack: Stack
    switch: Switch
    # What the command does, from the server's documentation (shown beside the figures).
    how: str


# The stacks as `make bench` starts them; uWSGI as the default, so the Gunicorn twin is among them.
_STACKS = {stack.name: stack for stack in all_stacks(default_kind="uwsgi")}

METHODS = (
    Method(
        name="flaskprod-deploy",
        label="flaskprod up (default server) + `flaskprod deploy`",
        stack=_STACKS["flaskprod-default"],
        switch="deploy",
        how=(
            "copies the project into a new release, starts its app server on a socket of its own beside the old "
            "one, waits for its /readyz, repoints the link nginx connects through at it (nginx.conf unchanged, and "
            "nginx keeps no connections to uWSGI: no reload), waits for the old one's queue to empty, then drains "
            "and stops the old app server (README, `flaskprod deploy`)"
        ),
    ),
    Method(
        name="flaskprod-gunicorn-deploy",
        label="flaskprod up --server gunicorn + `flaskprod deploy`",
        stack=_STACKS["flaskprod-gunicorn"],
        switch="deploy",
        how=(
            "copies the project into a new release, starts its app server on a socket of its own beside the old "
            "one, waits for its /readyz, points nginx at it with a graceful reload (nginx keeps idle connections to "
            "Gunicorn's threaded workers, which go with its old workers), waits for nginx's old workers to exit, "
            "then drains and stops the old app server (README, `flaskprod deploy`)"
        ),
    ),
    Method(
        name="option2-hup",
        label="guide Option 2 (nginx -> Gunicorn 4 sync): `kill -HUP` to the Gunicorn master",
        stack=_STACKS["guide-option2"],
        switch="hup",
        how=(
            "Gunicorn's graceful reload: the master forks new workers, which import the app afresh (the guide "
            "does not preload it), and at once sends SIGTERM to the old ones, which finish their requests "
            "and exit (gunicorn/arbiter.py, `reload`); until a new worker has imported the app, none accepts, "
            "and requests wait in the listening socket's backlog"
        ),
    ),
    Method(
        name="option2-restart",
        label="guide Option 2 (nginx -> Gunicorn 4 sync): Gunicorn stopped (SIGTERM) and started again",
        stack=_STACKS["guide-option2"],
        switch="restart",
        how=(
            "what a plain `systemctl restart` does: SIGTERM to the master (Gunicorn stops gracefully: workers "
            "finish their requests), then the same command again; while nothing listens, nginx answers 502"
        ),
    ),
    Method(
        name="option3-hup",
        label="guide Option 3 (nginx -> uWSGI 5 processes): `kill -HUP` to the uWSGI master",
        stack=_STACKS["guide-option3"],
        switch="hup",
        how=(
            "uWSGI's graceful reload of the whole instance (its docs: SIGHUP \"gracefully reload all the workers "
            "and the master process\"): the master waits for the workers to finish their requests, re-executes "
            "itself keeping the socket open, loads the app and forks new workers; meanwhile requests wait in "
            "the socket's backlog (uWSGI's default listen queue: 100)"
        ),
    ),
)
BY_NAME = {m.name: m for m in METHODS}


@dataclass(frozen=True, kw_only=True)
class Settings:
    clients: int = 32  # connections open at once
    rate: float = 500.0  # requests per second over all clients, while the stack keeps up
    warmup_s: float = 1.0  # load before the steady-state window opens
    steady_s: float = 4.0  # steady state measured before the switch command
    after_s: float = 3.0  # load kept on after the new code first answered
    max_switch_s: float = 30.0  # longest wait for the new code; a switch that never lands is recorded so
    timeout_s: float = 10.0  # per request; a longer one counts as a timeout
    max_requests: int = 40_000  # the load's count bound; its time bound is the sum of the times above
    # Each client keeps its connection from request to request (HTTP/1.1 keep-alive), as browsers and API
    # clients do, instead of a new one per request: a reload of nginx closes the idle ones under them.
    keep_alive: bool = False


# --- outcomes and their statistics (pure) ---


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """One request: seconds since the load began when it was sent and when it ended, and what came back."""

    start: float
    end: float
    status: int | None = None
    failure: Failure | None = None
    body: str = ""

    @property
    def ms(self) -> float:
        return (self.end - self.start) * 1e3


def parse_response(data: bytes) -> tuple[int, str]:
    """Status and body of a whole HTTP/1.x response read to EOF; ValueError when it is not one."""
    head, sep, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status_line) < 2 or not status_line[0].startswith(b"HTTP/") or not status_line[1].isdigit():
        raise ValueError(f"not an HTTP response: {data[:80]!r}")
    return int(status_line[1]), body.decode("utf-8", "replace").strip()


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of values; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))  # ceil(n * q / 100), at least the first
    return ordered[int(rank) - 1]


def _latency(outcomes: Sequence[Outcome]) -> dict[str, float | int | None]:
    answered = [o.ms for o in outcomes if o.status is not None]
    p50, p99 = percentile(answered, 50), percentile(answered, 99)
    return {
        "answered": len(answered),
        "p50_ms": None if p50 is None else round(p50, 1),
        "p99_ms": None if p99 is None else round(p99, 1),
    }


def summarize(
    outcomes: Sequence[Outcome], *, command_at: float, warmup_s: float, old: str, new: str
) -> dict[str, Any]:
    """A run's figures: counts, the longest request, latencies in steady state and around the switch.

    command_at: when the switch command was issued (seconds since the load began). The switch lands when
    the new version first answers; the window is SWITCH_WINDOW_S centred there (from the command on when
    it never lands), and holds every request in progress during it, so one queued while a server reloaded
    counts though it was sent earlier. Steady state is every request sent after the warm-up and answered
    before the command. Latencies count answered requests of any status; failures are counted apart.
    """
    kinds = ("refused", "reset", "timeout", "other")
    failures = {kind: sum(1 for o in outcomes if o.failure == kind) for kind in kinds}
    new_at = min((o.end for o in outcomes if o.body == new and o.status == 200), default=None)
    old_after = [o.end for o in outcomes if o.body == old and o.status == 200 and o.end > command_at]
    centre = command_at + SWITCH_WINDOW_S / 2 if new_at is None else new_at
    half = SWITCH_WINDOW_S / 2
    window = [o for o in outcomes if o.start < centre + half and o.end >= centre - half]
    steady = [o for o in outcomes if warmup_s <= o.start and o.end < command_at]
    return {
        "sent": len(outcomes),
        "ok": sum(1 for o in outcomes if o.status is not None and 200 <= o.status < 300),
        "non_2xx": sum(1 for o in outcomes if o.status is not None and not 200 <= o.status < 300),
        "statuses": _counts(str(o.status) for o in outcomes if o.status is not None and not 200 <= o.status < 300),
        "connection_errors": sum(failures.values()),
        "failures": failures,
        "longest_ms": round(max((o.ms for o in outcomes), default=0.0), 1),
        "switch_s": None if new_at is None else round(new_at - command_at, 2),
        # Until the last answer from the old code: between the two, both versions answer.
        "last_old_s": round(max(old_after) - command_at, 2) if old_after else None,
        "steady": _latency(steady),
        "window": {**_latency(window), "sent": len(window), "failed": sum(1 for o in window if o.status != 200)},
    }


def _counts(keys: Any) -> dict[str, int]:
    found: dict[str, int] = {}
    for key in keys:
        found[key] = found.get(key, 0) + 1
    return dict(sorted(found.items()))


# Figures a method's rounds are summed up by, as a path into a run's summary.
MEDIAN_OF = {
    "sent": ("sent",),
    "non_2xx": ("non_2xx",),
    "connection_errors": ("connection_errors",),
    "longest_ms": ("longest_ms",),
    "steady_p50_ms": ("steady", "p50_ms"),
    "steady_p99_ms": ("steady", "p99_ms"),
    "window_p50_ms": ("window", "p50_ms"),
    "window_p99_ms": ("window", "p99_ms"),
    "switch_s": ("switch_s",),
    "command_s": ("command_s",),
}


def _get(summary: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = summary
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def medians(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over the rounds that have it, and every round's value (None: none had it)."""
    out: dict[str, Any] = {"rounds": len(runs)}
    for name, path in MEDIAN_OF.items():
        values = [_get(r, path) for r in runs]
        present = [v for v in values if v is not None]
        out[name] = statistics.median(present) if present else None
        out[f"{name}_by_round"] = values
    # A switch that never landed in some round is not hidden by the median of the others.
    out["switch_missed"] = sum(1 for r in runs if r.get("switch_s") is None)
    out["failed_requests"] = [r["non_2xx"] + r["connection_errors"] for r in runs]
    return out


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _by_round(values: Sequence[float | None], digits: int = 0) -> str:
    return ", ".join(_num(v, digits) for v in values)


def table(results: Mapping[str, Any]) -> list[str]:
    """The Markdown table: one row per method, medians over its rounds, failures by round beside them."""
    lines = [
        "| method | requests sent | non-2xx | connection errors | longest request ms "
        "| steady p50 / p99 ms | switch window p50 / p99 ms | command to new code s | command took s "
        "| failed requests by round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method in results["methods"]:
        m = method["medians"]
        switch = _num(m["switch_s"], 2)
        if m["switch_missed"]:
            switch += f" (never in {m['switch_missed']} of {m['rounds']})"
        lines.append(
            f"| {method['label']} | {_num(m['sent'])} | {_num(m['non_2xx'])} | {_num(m['connection_errors'])} "
            f"| {_num(m['longest_ms'])} | {_num(m['steady_p50_ms'], 1)} / {_num(m['steady_p99_ms'], 1)} "
            f"| {_num(m['window_p50_ms'], 1)} / {_num(m['window_p99_ms'], 1)} | {switch} | {_num(m['command_s'], 2)} "
            f"| {_by_round(m['failed_requests'])} |"
        )
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    s, mach, v = results["settings"], results["machine"], results["versions"]
    lines = [
        "# Shipping new code under load" + (", clients keeping their connections" if s.get("keep_alive") else ""),
        "",
        "Generated by `python -m benchmarks.deploy` from `results.json` beside it; do not edit by hand.",
        "",
        f"{results['rounds']} round{'s' if results['rounds'] != 1 else ''}, "
        f"{results['started']} to {results['finished']}, commit {results['commit']}; "
        "the methods alternated, each round starting a further one along. Medians over the rounds:",
        "",
        *table(results),
        "",
        "## What the figures mean",
        "",
        f"- Each method ran on a fresh copy of the reference app (`examples/taskboard`, `wsgi:app`) with one "
        f"endpoint added, `GET {VERSION_PATH}`, which answers the version in `{VERSION_MODULE}.py`. The load: "
        f"{s['clients']} connections at once, {s['rate']:g} requests/s in all while the stack keeps up (a client "
        "whose request is slow sends its next one late), "
        + (
            "each client keeping its connection open from request to request (HTTP/1.1 keep-alive, as browsers "
            "and API clients do) and opening another only once the server closed it, "
            if s.get("keep_alive")
            else "a new connection per request, "
        )
        + f"each request's outcome and times recorded; bounded by {s['max_requests']:,} requests and the run's "
        "time.",
        f"- After {s['warmup_s']:g} s of warm-up and {s['steady_s']:g} s of steady state, the benchmark rewrites "
        f"`{VERSION_MODULE}.py` and ships it the method's way; the load goes on until "
        f"{s['after_s']:g} s after the new version first answered (or {s['max_switch_s']:g} s, when it never did).",
        "- *requests sent*: every request of the run. *non-2xx*: answers with another status (nginx's 502 when "
        "no app server takes the request). *connection errors*: requests with no answer at all (connection "
        "refused, reset or closed before an answer, or no answer within "
        f"{s['timeout_s']:g} s). *failed requests by round*: the two added up, each round.",
        "- *longest request*: the slowest request of the run, answered or not: what the most unlucky user waited.",
        "- *steady p50 / p99*: answered requests sent after the warm-up and answered before the command. *switch "
        f"window*: answered requests in progress at any time in the {SWITCH_WINDOW_S:g} s centred on the moment "
        "the new code first answered (a request held in a queue while the server reloaded is in it).",
        "- *command to new code*: from issuing the command to the first answer of the new version. flaskprod's "
        "`deploy` starts the new release beside the old one, waits for its /readyz, then switches nginx, so this "
        "includes the new release's start; the old one serves meanwhile. *command took*: until the command "
        "returned (a signal returns at once; `flaskprod deploy` returns once the old release has drained; the "
        "restart once Gunicorn has stopped and been started again, before it is ready).",
        f"- Everything (load generator, nginx, app servers, the deploy) shared {mach['cores']} cores; another "
        "engineer's test suite may have run at the same time, so the figures are indicative: compare methods "
        "within this run, and counts of failures more than milliseconds.",
        "- *requests sent* is not a throughput figure: each run lasts until "
        f"{s['after_s']:g} s after the new code first answered, so a slower switch makes a longer run, and each "
        "client waits for its answer before sending its next request, so a stall sends fewer. A stall of S "
        f"seconds thus holds about {s['clients']} requests for up to S seconds rather than "
        f"{s['rate']:g} x S of them. With more clients arriving than the {s['clients']} here, a stall fills "
        "the app server's listen queue further (uWSGI's holds 100 by default), and one that overflows turns "
        "waits into errors.",
        "",
        "## Commands",
        "",
    ]
    for method in results["methods"]:
        how = f": {method['how']}" if method.get("how") else ""
        lines += [f"- **{method['name']}**: {method['label']}{how}."]
        lines += [f"  - start: `{c}`" for c in method["start_commands"]]
        lines += [f"  - ship: `{method['switch_command']}`"]
    lines += [
        "",
        "## How this was measured",
        "",
        f"- Command: `{results['command']}`.",
        f"- Load average at start: {results['load_average_at_start']}; at end: {results['load_average_at_end']}.",
        f"- Machine: {mach['cpu']}, {mach['cores']} cores, {mach['memory_mb']} MiB, {mach['os']}, kernel "
        f"{mach['kernel']}, Python {mach['python']}.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- flaskprod's default server (`server.kind`): {results['default_server_kind']}.",
        "- Environment: " + "; ".join(f"{k}={val}" for k, val in results["environment"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


# --- the load ---


class Load:
    """Paced GETs from many connections in a thread of their own, every outcome kept; bounded by count and time."""

    def __init__(self, port: int, host_header: str, settings: Settings, max_seconds: float) -> None:
        self.port = port
        connection = "" if settings.keep_alive else "Connection: close\r\n"  # HTTP/1.1 keeps it open otherwise
        self.request = f"GET {VERSION_PATH} HTTP/1.1\r\nHost: {host_header}\r\n{connection}\r\n".encode()
        self.settings = settings
        self.max_seconds = max_seconds
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self.t0 = 0.0

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self) -> Load:
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def wait(self) -> list[Outcome]:
        """The outcomes once one of the bounds has ended the load."""
        self._thread.join(self.max_seconds + self.settings.timeout_s + 5)
        return self.stop()

    def stop(self) -> list[Outcome]:
        self._stop.set()
        self._thread.join(self.settings.timeout_s + 5)
        return sorted(self.outcomes, key=lambda o: o.start)

    async def _main(self) -> None:
        clients = self.settings.clients
        interval = clients / self.settings.rate
        await asyncio.gather(*(self._client(i * interval / clients, interval) for i in range(clients)))

    def _done(self) -> bool:
        return (
            self._stop.is_set()
            or self.now() >= self.max_seconds
            or len(self.outcomes) >= self.settings.max_requests
        )

    async def _client(self, offset: float, interval: float) -> None:
        next_at = offset
        kept: Connection | None = None  # the connection kept open for the next request (keep-alive)
        try:
            while not self._done():
                wait = next_at - self.now()
                if wait > 0:
                    await asyncio.sleep(wait)
                    continue
                outcome, kept = await self._one(kept)
                self.outcomes.append(outcome)
                # Late (the request was slow): the next goes now, not a burst to catch up.
                next_at = max(next_at + interval, self.now())
        finally:
            if kept is not None:
                kept[1].close()

    async def _one(self, kept: Connection | None) -> tuple[Outcome, Connection | None]:
        """One request, on kept or a new connection; its outcome, and the connection to keep for the next."""
        start = self.now()
        timeout = self.settings.timeout_s
        if kept is None:
            try:
                kept = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), timeout)
            except ConnectionRefusedError:
                return Outcome(start=start, end=self.now(), failure="refused"), None
            except TimeoutError:
                return Outcome(start=start, end=self.now(), failure="timeout"), None
            except OSError:
                return Outcome(start=start, end=self.now(), failure="other"), None
        reader, writer = kept
        failure: Failure | None = None
        data = b""
        try:
            writer.write(self.request)
            left = timeout - (self.now() - start)
            read = read_response(reader) if self.settings.keep_alive else reader.read()
            data = await asyncio.wait_for(read, left)
        except (ConnectionResetError, BrokenPipeError, asyncio.IncompleteReadError):
            failure = "reset"  # closed before a whole answer: on a kept connection, as a reload of nginx does
        except TimeoutError:
            failure = "timeout"
        except (OSError, ValueError):
            failure = "other"
        end = self.now()
        if failure is None and not data:
            failure = "reset"  # closed before any answer
        if failure is None:
            try:
                status, body = parse_response(data)
            except ValueError:
                failure = "other"
        reuse = failure is None and self.settings.keep_alive and b"\r\nconnection: close" not in data.lower()
        if not reuse:
            writer.close()
        if failure is not None:
            return Outcome(start=start, end=end, failure=failure), None
        return Outcome(start=start, end=end, status=status, body=body[:40]), kept if reuse else None


async def read_response(reader: asyncio.StreamReader) -> bytes:
    """One HTTP/1.1 response from a connection kept open: its head, then as many bytes as Content-Length says."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + await reader.readexactly(length)


# --- one method, one round ---


def copy_app(dest: Path, version: str) -> Path:
    """The reference app in dest with the version endpoint added (examples/taskboard is left as it is)."""
    copy_taskboard(dest)  # not what running it by hand left there: up's run dir (its sockets cannot be copied)
    with (dest / "wsgi.py").open("a") as wsgi:
        wsgi.write(PROBE)
    write_version(dest, version)
    return dest


def write_version(root: Path, version: str) -> None:
    text = f'"""The version benchmarks/deploy.py ships."""\n\nVERSION = "{version}"\n'
    (root / f"{VERSION_MODULE}.py").write_text(text)


def shown(command: Command) -> str:
    return f"(cd {command.cwd} && {shlex.join(command.args)})"


def _private(text: str, root: Path, work: Path) -> str:
    """Paths of one round's temporary folders named for what they are."""
    return text.replace(str(root), "<app copy>").replace(str(work), "<work>")


def switch_command(method: Method, running: Running, run_dir: Path) -> str:
    """The command as an operator would type it (pids as they were in this round)."""
    master = running.groups[0].pid
    if method.switch == "deploy":
        return f"(cd <app copy> && {BIN / 'flaskprod'} deploy --set proxy.run_dir={run_dir / 'run'})"
    if method.switch == "hup":
        return f"kill -HUP {master}  # the {running.groups[0].name} master"
    start = running.plan.commands[0]
    return f"kill -TERM {master}; wait for it to exit; {shown(start)}  # as `systemctl restart` does"


def ship(method: Method, running: Running, root: Path, run_dir: Path, env: Mapping[str, str]) -> str:
    """Ship the code now in root the method's way; returns a note (the deploy's output, or '')."""
    master = running.groups[0]
    if method.switch == "deploy":
        args = [str(BIN / "flaskprod"), "deploy", "--set", f"proxy.run_dir={run_dir / 'run'}"]
        done = subprocess.run(args, cwd=root, env=dict(env), capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"flaskprod deploy failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
        return done.stderr.strip()
    if method.switch == "hup":
        os.kill(master.pid, signal.SIGHUP)
        return ""
    os.kill(master.pid, signal.SIGTERM)
    master.proc.wait(60)
    command = running.plan.commands[0]
    again = procs.start(command.name, command.args, cwd=command.cwd, env=env, log=master.log)
    # In the stack's list at once: whatever happens next, started() kills it with the rest.
    running.groups[0] = again
    return ""


def one_round(
    method: Method, settings: Settings, env: Mapping[str, str], work: Path, round_: int, say: Say
) -> dict[str, Any]:
    run_dir = work / f"{method.name}-{round_}"
    root = copy_app(work / f"app-{method.name}-{round_}", "1")
    stack = replace(method.stack, root=root)
    database = f"sqlite:///{run_dir}/db.sqlite3"
    env = stack_env(env, stack, database)
    record: dict[str, Any] = {"method": method.name, "round": round_, "error": None}
    with started(stack, run_dir, env) as running:
        record["start_commands"] = [_private(shown(c), root, work) for c in running.plan.commands]
        record["switch_command"] = _private(switch_command(method, running, run_dir), root, work)
        bound = settings.warmup_s + settings.steady_s + settings.max_switch_s + settings.after_s
        load = Load(running.plan.port, running.plan.host_header, settings, bound).start()
        try:
            time.sleep(settings.warmup_s + settings.steady_s)
            write_version(root, "2")
            command_at = load.now()
            record["note"] = ship(method, running, root, run_dir, env)
            record["command_returned_s"] = round(load.now() - command_at, 2)
            while load.now() < command_at + settings.max_switch_s and not any(
                o.body == "2" for o in list(load.outcomes)
            ):
                time.sleep(0.05)
            time.sleep(settings.after_s)
        finally:
            outcomes = load.stop()
    summary = summarize(outcomes, command_at=command_at, warmup_s=settings.warmup_s, old="1", new="2")
    record["summary"] = {**summary, "command_s": record.pop("command_returned_s")}
    s = record["summary"]
    say(
        f"  {method.name:<26} round {round_ + 1}: sent {s['sent']}, non-2xx {s['non_2xx']}, "
        f"connection errors {s['connection_errors']}, longest {s['longest_ms']:.0f} ms, "
        f"new code after {s['switch_s']} s, window p99 {s['window']['p99_ms']} ms"
    )
    return record


def run(methods: Sequence[Method], rounds: int, settings: Settings, say: Say) -> dict[str, Any]:
    from flaskprod.servers import resolve_kind
    from flaskprod.spec import Spec

    load_at_start = machine.load_average()
    started_at = dt.datetime.now(dt.UTC)
    # Short: unix socket paths under it must fit in 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="fpdep-"))
    env = {**base_env(secrets.token_hex(32)), "TMPDIR": str(work)}
    records: dict[str, list[dict[str, Any]]] = {m.name: [] for m in methods}
    try:
        for round_ in range(rounds):
            for method in round_order(methods, round_, rounds):
                say(f"{method.name} (round {round_ + 1} of {rounds}): {method.label}")
                try:
                    records[method.name].append(one_round(method, settings, env, work, round_, say))
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    say(f"  {method.name}: FAILED: {exc}")
                    records[method.name].append({"method": method.name, "round": round_, "error": str(exc)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out_methods = []
    for method in methods:
        done = [r for r in records[method.name] if r.get("error") is None]
        out_methods.append(
            {
                "name": method.name,
                "label": method.label,
                "switch": method.switch,
                "how": method.how,
                "start_commands": done[0]["start_commands"] if done else [],
                "switch_command": done[0]["switch_command"] if done else "",
                "errors": [r["error"] for r in records[method.name] if r.get("error")],
                "medians": medians([r["summary"] for r in done]),
                "rounds": records[method.name],
            }
        )
    return {
        "schema": 1,
        "command": "make bench-deploy",
        "rounds": rounds,
        "started": started_at.isoformat(timespec="seconds"),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "load_average_at_start": load_at_start,
        "load_average_at_end": machine.load_average(),
        "commit": machine.git_commit(REPO),
        "machine": machine.machine(),
        "versions": {k: v for k, v in machine.versions().items() if k in VERSIONS},
        "default_server_kind": resolve_kind(Spec(), behind_nginx=True).server.kind,
        "settings": asdict(settings),
        "environment": {
            "FLASK_SECRET_KEY": "<64 random hex characters per run>",
            "DATABASE_URL": "sqlite:///<run dir>/db.sqlite3 (a fresh file per round)",
            "FLASKPROD_PROXY__TRUSTED_HOPS": "1 for the guide's Options 2 and 3 (nginx in front)",
        },
        "methods": out_methods,
    }


def write(results: Mapping[str, Any], out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    partial = out / "results.json.partial"
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(out / "results.json")
    text = markdown(results)
    (out / "README.md").write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.deploy", description=__doc__)
    parser.add_argument("--methods", default="", help=f"comma-separated, of {', '.join(BY_NAME)} (default: all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=Settings.clients, help="connections at once")
    parser.add_argument("--rate", type=float, default=Settings.rate, help="requests/s over all clients")
    parser.add_argument(
        "--keep-alive", action="store_true", help="each client keeps its connection from request to request"
    )
    parser.add_argument(
        "--out", type=Path, help=f"folder for results.json and README.md (default {OUT}, or {OUT_KEEP_ALIVE})"
    )
    parser.add_argument("--render", action="store_true", help="no measuring: README.md from --out's results.json")
    args = parser.parse_args(argv)
    out = args.out or (OUT_KEEP_ALIVE if args.keep_alive else OUT)
    if args.render:
        try:
            results = json.loads((out / "results.json").read_text())
        except (OSError, ValueError) as exc:
            print(f"error: no readable results in {out}/results.json ({exc}); run `make bench-deploy` first",
                  file=sys.stderr)  # fmt: skip
            return 2
        text = markdown(results)
        (out / "README.md").write_text(text)
        print(text)
        return 0
    names = [n for n in args.methods.split(",") if n]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown or args.rounds < 1 or args.clients < 1 or args.rate <= 0:
        parser.error(f"unknown method(s) {unknown}" if unknown else "--rounds, --clients and --rate must be positive")
    if (problem := cannot_write(out)) is not None:
        parser.error(problem)
    methods = [m for m in METHODS if not names or m.name in names]
    settings = Settings(clients=args.clients, rate=args.rate, keep_alive=args.keep_alive)
    try:
        results = run(methods, args.rounds, settings, lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print("interrupted: every process the benchmark started is stopped; nothing written", file=sys.stderr)
        return 130
    given = sys.argv[1:] if argv is None else argv
    if given:  # `make bench-deploy` passes none
        results["command"] = shlex.join(["python", "-m", "benchmarks.deploy", *given])
    print(write(results, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
