"""One benchmark run: in-process figures, then every stack started, loaded with wrk, measured and stopped."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from . import cpu, instructions, machine, procs, slowclients, wrk
from .ratios import MAIN_CONNECTIONS, STEAL_TOLERANCE, goals_for, run_stolen
from .stacks import REPO, Running, Stack, started
from .workloads import BY_NAME, WORKLOADS, Workload

Say = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Mode:
    name: str
    duration: int  # seconds of each measured wrk run
    stack_warmup: int  # seconds of load on a fresh stack before anything is measured
    workload_warmup: int  # seconds of load on each workload's path before it is measured
    connections: tuple[int, ...]  # levels the sweep workloads run at; the others run at MAIN_CONNECTIONS
    inprocess_seconds: float
    postgres: bool
    # Requests counted by valgrind in a uWSGI worker (benchmarks/instructions.py): the fewer and the more;
    # None leaves the count out (a minute of valgrind would not fit the quick run's 3 minutes).
    counted_requests: tuple[int, int] | None
    wrk_threads: int = 2
    # Rounds: every stack is started, measured at MAIN_CONNECTIONS (where the goals are judged) and
    # stopped in turn, then all of them again; each point reports the round the host disturbed least
    # (representative_run). This machine's speed drifts by a third within minutes, as the host takes
    # its cores, so a slow spell falls on every stack alike instead of on whichever one was being
    # measured, and one stall cannot decide a point. The sweep levels run in the first round only;
    # the in-process pairs alternate the same number of rounds.
    samples: int = 1
    # After the rounds: each pair of stacks a goal compares, alternated this many times (ab.for_goals).
    pair_rounds: int = 0


QUICK = Mode(
    name="quick",
    duration=2,
    stack_warmup=1,
    workload_warmup=0,
    connections=(MAIN_CONNECTIONS,),
    inprocess_seconds=1.0,
    postgres=False,
    counted_requests=None,
)
FULL = Mode(
    name="full",
    duration=3,
    stack_warmup=2,
    workload_warmup=1,
    connections=(16, MAIN_CONNECTIONS, 256),
    inprocess_seconds=3.0,
    postgres=True,
    counted_requests=(100, 600),
    samples=3,
    # Eight pairs put /api/ping at 0.96x Option 3 in run 26 and at 1.10x an hour before it; sixteen right
    # after put it at 1.10x, faster in 13 of 16. The median of eight moves by more than the goals' margins
    # on this machine; sixteen pairs add about 16 minutes to the run.
    pair_rounds=16,
)

# The in-process figures: the reference app's dynamic paths, and the cost pair on /api/ping.
CEILING_APP = "wsgi:app"
BARE_APP = "benchmarks.apps.bare:app"
PRODUCTION_APP = "benchmarks.apps.production:app"


def base_env(secret: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASKPROD_", "PROMETHEUS_"))}
    env.pop("DATABASE_URL", None)
    env["FLASK_SECRET_KEY"] = secret
    env["PYTHONUNBUFFERED"] = "1"
    return env


def stack_env(base: Mapping[str, str], stack: Stack, database_url: str) -> dict[str, str]:
    env = {**base, "DATABASE_URL": database_url}
    if stack.source is not None:
        # First on the path, ahead of the editable install: up, serve and every worker import this tree.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(stack.source), base.get("PYTHONPATH")) if p)
    if stack.kind in ("option2", "option3"):
        # The reference app behind the guide's nginx, told (as any correct deployment would) that one proxy
        # is in front: nginx writes the access log, so the app does not write a second one.
        env["FLASKPROD_PROXY__TRUSTED_HOPS"] = "1"
    return env


def inprocess(
    target: str,
    paths: Sequence[str],
    seconds: float,
    env: Mapping[str, str],
    work: Path,
    cpus: Sequence[int | None] = (None,),
) -> dict[str, float]:
    """Calls per second of `target` on each path, in a child process; with several CPUs one child on each at
    once, their calls added up."""
    first = len(list(work.iterdir()))
    outs = [work / f"inprocess-{first + i}.json" for i in range(len(cpus))]
    what = f"{target}={','.join(paths)}"
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "benchmarks.inprocess", what, str(seconds), str(out)]
            + ([] if cpu is None else [str(cpu)]),
            cwd=REPO,
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out, cpu in zip(outs, cpus, strict=True)
    ]
    try:
        errors = [child.communicate(timeout=120 + seconds * len(paths))[1] for child in children]
    finally:
        for child in children:
            child.kill()
            child.wait()
    for child, error in zip(children, errors, strict=True):
        if child.returncode != 0:
            raise RuntimeError(f"in-process benchmark of {target} failed:\n{error[-2000:]}")
    totals = dict.fromkeys(paths, 0.0)
    for out in outs:
        for path, value in json.loads(out.read_text()).items():
            totals[path] += value
    return totals


def ceiling_env(env: Mapping[str, str], work: Path) -> dict[str, str]:
    """The reference app as the stacks behind nginx run it, with metrics in multi-process files as under up."""
    metrics_dir = work / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    return {
        **env,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "DATABASE_URL": f"sqlite:///{work / 'ceiling.sqlite3'}",
        # nginx writes the access log.
        "FLASKPROD_PROXY__TRUSTED_HOPS": "1",
    }


# The workloads whose goal is judged against the ceiling: that figure is measured again right after each run.
CEILING_BESIDE = ("cpu",)


@dataclass(frozen=True, kw_only=True)
class CeilingBeside:
    """The in-process ceiling measured right after a stack's run of the same path, on every core at once.

    The ceiling at the start of a full run is up to 40 minutes older than the runs it would divide, on a
    machine whose speed wanders by a fifth within minutes: by hand on 2026-12-03 the default stack served
    0.75x to 0.94x of a ceiling measured seconds away, a spread no server change explains. One child per
    CPU, all at once: ceiling x cores measured as such (by hand, ten alternated rounds: two at once made
    0.92x to 1.04x of twice one alone).
    """

    env: Mapping[str, str]
    work: Path
    seconds: float

    def measure(self, path: str) -> dict[str, Any]:
        cpus = sorted(os.sched_getaffinity(0))
        before, t0 = cpu.snapshot(()), time.monotonic()
        calls = inprocess(CEILING_APP, [path], self.seconds, self.env, self.work, cpus)[path]
        stolen = cpu.cores_used(before, cpu.snapshot(()), time.monotonic() - t0).get("stolen")
        return {"calls_per_s": round(calls, 1), "cores": len(cpus), "stolen_cores": stolen}


def measure_inprocess(
    mode: Mode, env: Mapping[str, str], work: Path, say: Say
) -> tuple[dict[str, Any], dict[str, Any]]:
    say("in-process: ceiling of the reference app, and Production(app) against the bare app")
    # up runs its workers with prometheus_client's multi-process directory, so metrics go to mmap'd files;
    # in two alternated passes on 2026-12-03 the loop measured Production at 0.96x and 0.99x of the bare
    # app without it, 0.84x and 0.71x with it.
    on_ceiling = ceiling_env(env, work)
    metrics_env = {"PROMETHEUS_MULTIPROC_DIR": on_ceiling["PROMETHEUS_MULTIPROC_DIR"]}
    with_ceiling = [w for w in WORKLOADS if w.has_ceiling and w.database == "sqlite"]
    before, t0 = cpu.snapshot(()), time.monotonic()
    paths = inprocess(CEILING_APP, [w.path for w in with_ceiling], mode.inprocess_seconds, on_ceiling, work)
    # The ceiling divides every x-ceiling figure: a host that took the cores during it lowers them all.
    stolen = cpu.cores_used(before, cpu.snapshot(()), time.monotonic() - t0).get("stolen")
    ceiling = {
        "cores": machine.cores(),
        "app": CEILING_APP,
        "calls_per_s": {w.name: round(paths[w.path], 1) for w in with_ceiling},
        "stolen_cores": stolen,
    }
    # Alternated in rounds, each the median of its rounds, so a slow spell of the machine hits all three alike.
    behind_env = {**env, "FLASKPROD_PROXY__TRUSTED_HOPS": "1", **metrics_env}
    # With no proxy in front Production writes a JSON access line per request too (to stdout, here /dev/null).
    pairs = [(BARE_APP, env), (PRODUCTION_APP, behind_env), (PRODUCTION_APP, env)]
    seconds = mode.inprocess_seconds / mode.samples
    rounds = [
        [inprocess(app, ["/api/ping"], seconds, e, work)["/api/ping"] for app, e in pairs] for _ in range(mode.samples)
    ]
    bare, behind, alone = (statistics.median(r[i] for r in rounds) for i in range(len(pairs)))
    cost = {
        "path": "/api/ping",
        "multiprocess_metrics": True,
        "bare_calls_per_s": round(bare, 1),
        "production_behind_proxy_calls_per_s": round(behind, 1),
        "production_with_access_log_calls_per_s": round(alone, 1),
        "ratio_behind_proxy": round(behind / bare, 3),
        "ratio_with_access_log": round(alone / bare, 3),
        "us_per_request_behind_proxy": round(1e6 / behind - 1e6 / bare, 1),
        "us_per_request_with_access_log": round(1e6 / alone - 1e6 / bare, 1),
    }
    say(f"  ceiling per core: {ceiling['calls_per_s']}; Production cost ratio {cost['ratio_behind_proxy']}")
    if mode.counted_requests is not None:
        cost["instructions"] = count_instructions(mode.counted_requests, env, behind_env, say)
    return ceiling, cost


def count_instructions(
    requests: tuple[int, int], bare_env: Mapping[str, str], production_env: Mapping[str, str], say: Say
) -> dict[str, Any]:
    """Instructions per /api/ping request in a uWSGI worker, bare and with Production(app): no timing noise."""
    fewer, more = requests
    say(f"instructions per request (valgrind, uWSGI worker, {more} - {fewer} requests): bare and Production(app)")
    bare = instructions.per_request(BARE_APP, "/api/ping", bare_env, fewer=fewer, more=more)
    production = instructions.per_request(PRODUCTION_APP, "/api/ping", production_env, fewer=fewer, more=more)
    say(f"  {bare:,.0f} against {production:,.0f} ({bare / production:.3f}x)")
    return {
        "server": "uWSGI, 1 process, 1 thread, HTTP, nginx's forwarded headers",
        "requests": [fewer, more],
        "bare": round(bare),
        "production": round(production),
        "ratio": round(bare / production, 3),
    }


def _warm(running: Running, path: str, seconds: int, threads: int) -> None:
    if seconds > 0:
        args = wrk.command(
            running.url + path,
            connections=MAIN_CONNECTIONS,
            seconds=seconds,
            threads=threads,
            host_header=running.plan.host_header,
        )
        wrk.run(args, seconds)


def settle(running: Running, timeout: float = 30.0) -> float:
    """Wait until the stack answers again: a queue of requests left from the last workload must not count
    against the next one (one sync worker can take seconds to drain it). Returns the seconds waited."""
    started_at = time.monotonic()
    plan = running.plan
    while time.monotonic() - started_at < timeout:
        if procs.http_status("127.0.0.1", plan.port, plan.ready_path, plan.host_header, timeout=5) == 200:
            break
        time.sleep(0.2)
    return round(time.monotonic() - started_at, 1)


def _levels(workload: Workload, mode: Mode) -> tuple[int, ...]:
    return mode.connections if workload.sweep else (MAIN_CONNECTIONS,)


def round_order(stacks: Sequence[T], round_: int, rounds: int) -> list[T]:
    """The stacks in the order round_ runs them: each round starts a further share of the list along.

    In runs 14 and 15 the default, first in every round, lost the most cores to the host (0.47 and
    0.52 on average); rotating the start lets no stack always follow the same one or open every round.
    """
    shift = round_ * len(stacks) // max(1, rounds)
    return [*stacks[shift:], *stacks[:shift]]


def representative_run(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The round the host disturbed least, whole, with every round's figures.

    A round that lost cores to the host measured a slower machine, for every stack alike only by
    luck: in run 14 the guide's Option 2 served 1,462, 826 and 686 requests/s on /api/ping as the
    host took 0.00, 0.27 and 0.41 of the cores. So the rounds within STEAL_TOLERANCE of the least
    steal are kept, and of those the one with the median throughput (the upper of an even count)
    is reported, its latencies with it. Without steal figures, every round is kept.
    """
    stolen = [run_stolen(run) for run in rounds]
    kept = list(rounds)
    if all(s is not None for s in stolen):
        least = min(s for s in stolen if s is not None)
        kept = [run for run, s in zip(rounds, stolen, strict=True) if s is not None and s <= least + STEAL_TOLERANCE]
    chosen = sorted(kept, key=lambda run: run["ok_rps"])[len(kept) // 2]
    return {
        **chosen,
        "samples_ok_rps": [run["ok_rps"] for run in rounds],
        "samples": [
            {key: run.get(key) for key in ("ok_rps", "p50_ms", "p99_ms", "errors")} | {"stolen": s}
            for run, s in zip(rounds, stolen, strict=True)
        ],
    }


def load_workloads(
    stack: Stack,
    running: Running,
    workloads: Sequence[Workload],
    mode: Mode,
    say: Say,
    *,
    sweep: bool,
    beside: CeilingBeside | None = None,
) -> list[dict[str, Any]]:
    runs = []
    roots = [g.pid for g in running.groups]
    for workload in workloads:
        _warm(running, workload.path, mode.workload_warmup, mode.wrk_threads)
        for connections in _levels(workload, mode) if sweep else (MAIN_CONNECTIONS,):
            # wrk leaves up to `connections` requests queued when it stops (the warm-up's, the last
            # level's, the last workload's); a stack that drains them slowly must not pay for them here.
            settled = settle(running)
            if settled > 1:
                say(f"  {stack.name}: waited {settled:g} s for the stack to answer before {workload.name}")
            args = wrk.command(
                running.url + workload.path,
                connections=connections,
                seconds=mode.duration,
                threads=mode.wrk_threads,
                host_header=running.plan.host_header,
            )
            with slowclients.holding(running.plan.port, running.plan.host_header, workload.slow_clients) as slow:
                before, t0 = cpu.snapshot(roots), time.monotonic()
                result, text = wrk.run(args, mode.duration)
                wall = time.monotonic() - t0
                cores = cpu.cores_used(before, cpu.snapshot(roots), wall)
            alive = running.alive()
            ceiling = None
            if beside is not None and workload.name in CEILING_BESIDE and connections == MAIN_CONNECTIONS:
                ceiling = beside.measure(workload.path)
            runs.append(
                {
                    "stack": stack.name,
                    "workload": workload.name,
                    "connections": connections,
                    "command": shlex.join(args),
                    **result.as_dict(),
                    "slow_clients": workload.slow_clients,
                    "slow_client_connections": None if slow is None else slow.connections_opened,
                    "stack_alive_after": alive,
                    "settled_s": settled,
                    "cpu_cores": cores,
                    "ceiling_beside": ceiling,
                    "wrk_output": text,
                }
            )
            say(
                f"  {stack.name:<28} {workload.name:<12} c={connections:<4} {result.rps:>10,.0f} rps  "
                f"p50 {_ms(result.p50_ms)} ms  p99 {_ms(result.p99_ms)} ms  errors {result.errors}"
            )
            if not alive:
                raise RuntimeError(f"{stack.name} died during {workload.name}")
    return runs


def memory(running: Running, workers: int) -> dict[str, Any]:
    """PSS per worker once all `workers` are up: a worker recycled by max_requests may be respawning."""
    deadline = time.monotonic() + 5
    pids = running.worker_pids()
    while len(pids) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = running.worker_pids()
    sizes = [s for s in (procs.pss_bytes(p) for p in pids) if s is not None]
    if not sizes:
        return {"workers": len(pids), "pss_per_worker_mb": None}
    return {"workers": len(sizes), "pss_per_worker_mb": round(sum(sizes) / len(sizes) / 2**20, 1)}


def bench_stack(
    stack: Stack,
    workloads: Sequence[Workload],
    mode: Mode,
    env: Mapping[str, str],
    run_dir: Path,
    say: Say,
    *,
    sweep: bool = True,
    beside: CeilingBeside | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Start, warm, load, measure memory, stop; a failure is recorded for the report, never hidden."""
    record: dict[str, Any] = {
        "name": stack.name,
        "label": stack.label,
        "group": stack.group,
        "kind": stack.kind,
        "app": stack.app,
        "error": None,
        "workers": None,
        "pss_per_worker_mb": None,
    }
    runs: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        with started(stack, run_dir, env) as running:
            record["commands"] = [c.shown() for c in running.plan.commands]
            record["startup_s"] = round(time.monotonic() - t0, 1)
            _warm(running, workloads[0].path, mode.stack_warmup, mode.wrk_threads)
            workers = len(running.worker_pids())
            runs = load_workloads(stack, running, workloads, mode, say, sweep=sweep, beside=beside)
            record.update(memory(running, workers))
    except Exception as exc:  # the run goes on; the report shows what failed and why
        record["error"] = f"{type(exc).__name__}: {exc}"[-3000:]
        say(f"  {stack.name}: FAILED: {record['error'][:600]}")
    return record, runs


def stack_round(
    stack: Stack,
    mode: Mode,
    env: Mapping[str, str],
    run_dir: Path,
    pg_url: str | None,
    say: Say,
    round_: int,
    beside: CeilingBeside | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One round of one stack: its SQLite workloads, then (restarted against PostgreSQL) its PostgreSQL ones. With
    PostgreSQL's alone (`benchmarks.ab A B --workloads db-pg`), the stack starts once, against PostgreSQL: started
    for no SQLite workload, it warmed up on the first of none (IndexError)."""
    wanted = [w for w in WORKLOADS if stack.only is None or w.name in stack.only]
    sqlite = [w for w in wanted if w.database == "sqlite"]
    pg = [w for w in wanted if w.database == "postgresql"]
    sweep = round_ == 0
    if not sqlite and pg and pg_url:
        pg_env = stack_env(env, stack, pg_url)
        return bench_stack(stack, pg, mode, pg_env, run_dir, say, sweep=sweep, beside=beside)
    sqlite_env = stack_env(env, stack, f"sqlite:///{run_dir}/db.sqlite3")
    record, runs = bench_stack(stack, sqlite, mode, sqlite_env, run_dir, say, sweep=sweep, beside=beside)
    if pg and pg_url and record["error"] is None:
        pg_record, pg_runs = bench_stack(
            stack,
            pg,
            mode,
            stack_env(env, stack, pg_url),
            run_dir.with_name(f"{run_dir.name}-pg"),
            say,
            sweep=sweep,
            beside=beside,
        )
        runs += pg_runs
        if pg_record["error"]:
            record["error_postgresql"] = pg_record["error"]
    return record, runs


@contextmanager
def postgres(enabled: bool, say: Say) -> Iterator[tuple[str | None, str | None]]:
    """A throwaway PostgreSQL (tests/pg.py) for the full run: (url, None), or (None, why not)."""
    if not enabled:
        yield None, "quick mode: PostgreSQL is measured in the full run only"
        return
    from tests.pg import ThrowawayPostgres, external_url

    server = None
    try:
        url = external_url()
        if url is None:
            server = ThrowawayPostgres.create()
            url = server.url
    except Exception as exc:  # the rest of the run does not need PostgreSQL; the report says why it is missing
        yield None, f"PostgreSQL unavailable: {exc}"
        return
    say(f"PostgreSQL for the db-pg workload: {url}")
    try:
        yield url, None
    finally:
        if server is not None:
            server.close()


def run(mode: Mode, stacks: Sequence[Stack], say: Say) -> dict[str, Any]:
    load_at_start = machine.load_average()
    started_at = dt.datetime.now(dt.UTC)
    # Short: unix socket paths under it must fit in 107 bytes.
    work = Path(tempfile.mkdtemp(prefix="fpbench-"))
    # Stacks are stopped with SIGKILL, so their own temporary directories must live under work to go with it.
    env = {**base_env(secrets.token_hex(32)), "TMPDIR": str(work)}
    results: dict[str, Any] = {
        "schema": 1,
        "mode": mode.name,
        "started": started_at.isoformat(timespec="seconds"),
        "load_average_at_start": load_at_start,
        "machine": machine.machine(),
        "versions": machine.versions(),
        "commit": machine.git_commit(REPO),
        "settings": {
            "duration_s": mode.duration,
            "stack_warmup_s": mode.stack_warmup,
            "workload_warmup_s": mode.workload_warmup,
            "connections": list(mode.connections),
            "main_connections": MAIN_CONNECTIONS,
            "wrk_threads": mode.wrk_threads,
            "wrk_timeout_s": 2,
            "inprocess_seconds": mode.inprocess_seconds,
            "samples": mode.samples,
            "rounds": True,
            "pick": "least steal",
        },
        "environment": {
            "FLASK_SECRET_KEY": "<64 random hex characters per run>",
            "DATABASE_URL": "sqlite:///<run dir>/taskboard.sqlite3 (a fresh file per stack start)",
            "FLASKPROD_PROXY__TRUSTED_HOPS": "1 for the guide's Options 2 and 3 (nginx in front)",
        },
        "stacks": [],
        "runs": [],
    }
    say(f"benchmark ({mode.name}): load average at start {load_at_start}, work dir {work}")
    try:
        results["ceiling"], results["production_cost"] = measure_inprocess(mode, env, work, say)
        beside = CeilingBeside(env=ceiling_env(env, work), work=work, seconds=mode.inprocess_seconds / 2)
        with postgres(mode.postgres, say) as (pg_url, pg_note):
            results["postgresql"] = pg_note or "throwaway cluster or local server (tests/pg.py)"
            records: dict[str, dict[str, Any]] = {}
            rounds: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
            for round_ in range(mode.samples):
                for stack in round_order(stacks, round_, mode.samples):
                    if round_ and records[stack.name]["error"] is not None:
                        continue  # failed in the first round: the report says why; no second attempt
                    say(f"{stack.name} (round {round_ + 1} of {mode.samples}): {stack.label}")
                    record, runs = stack_round(
                        stack, mode, env, work / f"{stack.name}-{round_}", pg_url, say, round_, beside
                    )
                    records.setdefault(stack.name, record)  # start-up time and memory from the first round
                    for run in runs:
                        rounds.setdefault((run["stack"], run["workload"], run["connections"]), []).append(run)
            results["stacks"] = [records[s.name] for s in stacks]
            results["runs"] = [representative_run(r) for r in rounds.values()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    results["load_average_at_end"] = machine.load_average()
    results["goals"] = [g.as_dict() for g in goals_for(results)]
    return results


def workload_names() -> list[str]:
    return list(BY_NAME)


def _ms(value: float | None) -> str:
    """A latency for the progress line: 0.41, not wrk's 0.41000000000000003 after its unit conversion."""
    return "-" if value is None else f"{round(value, 2):g}"
