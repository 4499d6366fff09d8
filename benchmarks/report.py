"""docs/benchmarks/README.md from one run's results (pure: results in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .ratios import (
    ACCEPT_LOCK,
    CORES_WORKLOADS,
    DEFAULT,
    DISTURBED_STOLEN,
    MAIN_CONNECTIONS,
    STEAL_TOLERANCE,
    UNFAIR,
    UNFROZEN,
    UNPINNED,
    Goal,
    app_core_efficiency,
    candidates,
    ceiling_ratio,
    find_run,
    goals_for,
    pair_stem,
    runs_with_cores,
    steal,
    tail,
)
from .workloads import BY_NAME

Results = Mapping[str, Any]
# Shown where a figure does not exist (no response at all, or not measured).
NONE = "-"
VERDICT = {True: "met", False: "**MISSED**", None: "not measured"}


def _num(value: float | None, digits: int = 1) -> str:
    return NONE if value is None else f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _stack_labels(results: Results) -> dict[str, str]:
    return {s["name"]: s["label"] for s in results["stacks"]}


# The stacks a reader picks between, and the workloads that tell them apart: the front README's table.
HEADLINE_STACKS = (DEFAULT, "guide-option3", "guide-option2", "gunicorn-bare", "flask-dev")
HEADLINE_WORKLOADS = ("page", "ping", "db-pg", "slow", "cpu", "static")
# The front README's block between these lines is written from results.json, never by hand.
HEADLINE_BEGIN = "<!-- benchmarks:headline: written by `python -m benchmarks` from docs/benchmarks/results.json -->"
HEADLINE_END = "<!-- /benchmarks:headline -->"


def headline(results: Results) -> list[str]:
    """requests/s and p99 of the stacks a reader picks between, as the full report picks each run."""
    picked = {(r["stack"], r["workload"]): r for r in results["runs"] if r["connections"] == MAIN_CONNECTIONS}
    labels = _stack_labels(results)
    workloads = [BY_NAME[w] for w in HEADLINE_WORKLOADS if any(key[1] == w for key in picked)]
    rows = []
    for stack in HEADLINE_STACKS:
        if not any(key[0] == stack for key in picked):
            continue
        cells = []
        for workload in workloads:
            run = picked.get((stack, workload.name))
            cells.append(NONE if run is None else f"{_num(run['ok_rps'], 0)} ({_num(run['p99_ms'], 1)} ms)")
        rows.append([labels.get(stack, stack), *cells])
    commit = f" (commit {results['commit']})" if results.get("commit") else ""
    samples = results["settings"].get("samples", 1)
    which = "the least disturbed" if results["settings"].get("pick") == "least steal" else "the median"
    intro = (
        f"`{results.get('command', 'make bench')}` on {results['started'][:10]}{commit}, "
        f"{results['machine']['cores']} cores with `wrk` on the same cores: requests/s at {MAIN_CONNECTIONS} "
        f"connections, p99 in brackets, each {which} of {samples} rounds "
        "([every stack and round](docs/benchmarks/README.md)). Higher is better; compare within a column."
    )
    return [intro, "", *_table(["stack", *(w.label for w in workloads)], rows)]


def with_headline(readme: str, results: Results) -> str:
    """readme with its headline block rewritten from results; ValueError if it has no such block."""
    start, end = readme.find(HEADLINE_BEGIN), readme.find(HEADLINE_END)
    if start < 0 or end < start:
        raise ValueError(f"no {HEADLINE_BEGIN!r} ... {HEADLINE_END!r} block to write the headline table into")
    block = "\n".join([HEADLINE_BEGIN, *headline(results), HEADLINE_END])
    return readme[:start] + block + readme[end + len(HEADLINE_END) :]


def goals_section(results: Results) -> list[str]:
    kind = results.get("default_server_kind", "?")
    lines = [
        "## Goals",
        "",
        f"Measured in this run for `flaskprod up` with its defaults (`server.kind = {kind}`), "
        f"at {MAIN_CONNECTIONS} connections. A missed goal is reported as missed, with its numbers.",
        "",
    ]
    rows = [
        [g.goal, g.target, g.measured, NONE if g.bound is None else f"{g.bound:.2f}x", _verdict(g)]
        for g in goals_for(results)
    ]
    notes = [
        "",
        "How to read them: wrk, nginx and the app server share the same cores, so ceiling x cores (the raw app "
        "in-process on every core, no server) is a bound no stack reaches here; the ratios between stacks are "
        "the comparison that holds. *At most* is that bound as a ratio: ceiling x cores over the figure the goal "
        "compares against; for /api/cpu, the share of the cores nginx and wrk left the app server. A goal whose "
        "bound is below its target is out of reach on this machine with this app whatever the server does, and "
        "is marked so. The /api/cpu ceiling is measured again right after each run, one in-process loop per core "
        "at once, so the machine's drift over the run does not enter the ratio. "
        "Throughput counts successful responses only.",
        "",
        *paired_goals_lines(results),
        *steal_lines(results),
    ]
    return lines + _table(["goal", "target", "measured", "at most", "verdict"], rows)[:-1] + notes


def paired_goals_lines(results: Results) -> list[str]:
    """How the goals between two stacks were judged: on the run's paired rounds of them, where it ran any."""
    pairs = results.get("paired_goals") or []
    done = [p for p in pairs if not p.get("error")]
    failed = [f"{p['a']} against {p['b']} ({p['error']})" for p in pairs if p.get("error")]
    text = ""
    if done:
        text = (
            "*Paired*: after the rounds, each two stacks a goal compares ran alternated, a minute apart and in "
            f"flipped order, {done[0]['rounds']} times ({done[0]['settings']['duration_s']} s of `wrk` each): the "
            "rounds measure them up to a quarter of an hour apart on a machine whose speed wanders by a fifth in "
            "minutes. Such a goal is judged on the ratio of the paired medians, and a p99/p50 goal on the median "
            "over every paired round of the default on that workload; the rounds' figure is shown beside. "
        )
    if failed:
        text += "Not paired, so judged on the rounds: " + "; ".join(failed) + "."
    return [text.strip(), ""] if text else []


def steal_text(results: Results) -> str | None:
    """One sentence on how much of the cores the host took during the run; None if not recorded."""
    found = steal(results)
    if found is None:
        return None
    cores = results["machine"]["cores"]
    text = (
        f"The host took a median {found.median:.2f} of the {cores} cores (at most {found.most:.2f}) from this "
        f"virtual machine during the measured runs; {found.disturbed} of {found.measured} lost more than "
        f"{DISTURBED_STOLEN:.2f}"
    )
    if found.ceiling is not None:
        text += f", and {found.ceiling:.2f} during the in-process ceiling"
    return text + "."


def steal_lines(results: Results) -> list[str]:
    text = steal_text(results)
    if text is None:
        return []
    return [
        f"{text} A core the host takes is one no stack can use: a run that lost one ran on a slower machine, so "
        "figures compare within one run, between runs of like steal, and as ratios.",
        "",
    ]


def _verdict(goal: Goal) -> str:
    if goal.met is False and goal.reachable is False:
        return "**MISSED** (out of reach here)"
    return VERDICT[goal.met]


def _rounds_text(results: Results) -> str:
    if not results["settings"].get("rounds"):
        return ""
    return "(in rounds: every stack started, measured and stopped in turn, then all again) "


def _pick_text(results: Results) -> str:
    """Which round of each point the tables show."""
    if results["settings"].get("pick") == "least steal":
        return (
            f"the round the host disturbed least (of those within {STEAL_TOLERANCE:.2f} cores of the least steal, "
            "the median by requests/s)"
        )
    return "the median by requests/s"


def workload_tables(results: Results) -> list[str]:
    labels = _stack_labels(results)
    lines = [
        "## Results",
        "",
        f"Each row: {_pick_text(results)} of {results['settings'].get('samples', 1)} `wrk` run(s) of "
        f"{results['settings']['duration_s']} s at {MAIN_CONNECTIONS} connections "
        f"{_rounds_text(results)}on a freshly started, warmed-up stack (its p50 and p99 are from that same run). "
        "requests/s counts successful (2xx/3xx) responses only; "
        "p50/p99 are wrk's, over every response; - = no response at all. "
        "errors = non-2xx/3xx responses + socket errors "
        "(connect, read, write, timeouts over 2 s). x ceiling = requests/s over (in-process calls/s per core "
        "x cores): 1.00 would be a server that costs nothing; on /api/cpu, over the in-process calls/s on every "
        "core measured right after the run.",
        "",
    ]
    for name, workload in BY_NAME.items():
        runs = [r for r in results["runs"] if r["workload"] == name and r["connections"] == MAIN_CONNECTIONS]
        if not runs:
            continue
        runs.sort(key=lambda r: -r["ok_rps"])
        rows = [
            [
                f"`{r['stack']}`" + ("" if r["stack_alive_after"] else " (died)"),
                labels.get(r["stack"], ""),
                _num(r["ok_rps"], 0),
                _num(r["p50_ms"], 2),
                _num(r["p99_ms"], 2),
                str(r["errors"]),
                _num(ceiling_ratio(results, r), 2),
            ]
            for r in runs
        ]
        lines += [f"### {workload.label}", ""]
        lines += _table(["stack", "what", "requests/s", "p50 ms", "p99 ms", "errors", "x ceiling"], rows)
    return lines


def sweep_table(results: Results) -> list[str]:
    levels = results["settings"]["connections"]
    if len(levels) < 2:
        return []
    lines = ["## Concurrency", "", "Requests/s (p99 ms) by number of connections.", ""]
    for name in ("ping", "page"):
        stacks = list(dict.fromkeys(r["stack"] for r in results["runs"] if r["workload"] == name))
        rows = []
        for stack in stacks:
            cells = []
            for c in levels:
                run = find_run(results, stack, name, c)
                cells.append(NONE if run is None else f"{run['ok_rps']:,.0f} ({_num(run['p99_ms'], 1)})")
            rows.append([f"`{stack}`", *cells])
        if rows:
            lines += [f"### {BY_NAME[name].label}", ""]
            lines += _table(["stack", *[f"{c} connections" for c in levels]], rows)
    return lines


def cores_section(results: Results) -> list[str]:
    """Where the cores went in each stack's reported run: the app server can only use what is left to it."""
    labels = _stack_labels(results)
    lines = [
        "## Where the cores went",
        "",
        "CPU used during each reported run at "
        f"{MAIN_CONNECTIONS} connections, in cores (CPU seconds over wall seconds; "
        f"{results['machine']['cores']} = every core busy): the app server's process tree, nginx's, wrk, everything "
        "else (kernel threads, the harness), idle, and what the host took from this virtual machine (steal: "
        "time its cores wanted to run and were not let). *per app core* = requests/s over (in-process calls/s per "
        "core x the cores the app server used): 1.00 = the app runs inside the server as fast as in the "
        "in-process loop; the rest is the server's own work, switches between threads and processes, and "
        "caches shared with nginx and wrk.",
        "",
    ]
    shown = False
    for name in CORES_WORKLOADS:
        runs = runs_with_cores(results, name)
        if not runs:
            continue
        shown = True
        rows = [
            [
                f"`{r['stack']}`",
                labels.get(r["stack"], ""),
                _num(r["ok_rps"], 0),
                *(_num(r["cpu_cores"].get(part), 2) for part in ("app", "nginx", "wrk", "other", "idle", "stolen")),
                _num(app_core_efficiency(results, r), 2),
            ]
            for r in runs
        ]
        lines += [f"### {BY_NAME[name].label}", ""]
        lines += _table(
            ["stack", "what", "requests/s", "app server", "nginx", "wrk", "other", "idle", "host", "per app core"],
            rows,
        )
    return lines if shown else []


def stacks_table(results: Results) -> list[str]:
    rows = []
    for s in results["stacks"]:
        error = s.get("error") or s.get("error_postgresql")
        rows.append(
            [
                f"`{s['name']}`",
                s["label"],
                str(s.get("workers") or NONE),
                _num(s.get("pss_per_worker_mb")),
                _num(s.get("startup_s")),
                "ok" if not error else "FAILED: " + error.splitlines()[0][:200],
            ]
        )
    return [
        "## Stacks",
        "",
        "Memory: PSS (proportional set size, shared pages split between the processes that map them) "
        "from /proc/PID/smaps_rollup, summed over the worker processes after the load and divided by their "
        "count. Workers are the leaf processes of the app server's tree (not nginx).",
        "",
        *_table(["stack", "what", "workers", "PSS per worker, MiB", "start-up s", "status"], rows),
    ]


def inprocess_section(results: Results) -> list[str]:
    ceiling = results.get("ceiling")
    cost = results.get("production_cost")
    if not ceiling or not cost:
        return []
    rows = [
        [BY_NAME[name].label, _num(value, 0), _num(value * ceiling["cores"], 0)]
        for name, value in ceiling["calls_per_s"].items()
    ]
    lines = [
        "## In-process figures",
        "",
        f"The ceiling: the reference app (`{ceiling['app']}`, Production on, behind-a-proxy settings) called "
        "as a WSGI callable in a loop, no server and no sockets, on one core. "
        f"Cores on this machine: {ceiling['cores']}.",
        "",
    ]
    lines += _table(["workload", "calls/s per core", "x cores"], rows)
    lines += [
        "What `Production(app)` costs per request: the same `/api/ping` route with and without it, in-process.",
        "",
    ]
    lines += _table(
        ["app", "calls/s", "ratio to bare", "µs added per request"],
        [
            ["bare Flask", _num(cost["bare_calls_per_s"], 0), "1.00", "0"],
            [
                "Production(app), behind a proxy (as `up` runs it: no app access log"
                + (", metrics in multi-process files)" if cost.get("multiprocess_metrics") else ")"),
                _num(cost["production_behind_proxy_calls_per_s"], 0),
                _num(cost["ratio_behind_proxy"], 2),
                _num(cost["us_per_request_behind_proxy"]),
            ],
            [
                "Production(app), no proxy (JSON access line per request)",
                _num(cost["production_with_access_log_calls_per_s"], 0),
                _num(cost["ratio_with_access_log"], 2),
                _num(cost["us_per_request_with_access_log"]),
            ],
        ],
    )
    counted = cost.get("instructions")
    if counted:
        fewer, more = counted["requests"]
        lines += [
            f"Instructions per request, counted by valgrind in a {counted['server']} worker (the count for {more} "
            f"requests less the count for {fewer}, over {more - fewer}): bare Flask {counted['bare']:,}, "
            f"`Production(app)` {counted['production']:,} ({counted['ratio']:.3f}x). Unlike the timings, the host "
            "cannot move this figure; kernel time is not in it.",
            "",
        ]
    return lines


def defaults_section(results: Results, paired: Sequence[Results] = ()) -> list[str]:
    """Which flaskprod configuration the numbers support, scored on the same goals, and what a paired run of it
    against the default said, where there is one: three rounds an hour apart can rank by the luck of the hour."""
    names = [s["name"] for s in results["stacks"] if s["group"] == "flaskprod" and not s.get("error")]
    if not names:
        return []
    labels = _stack_labels(results)
    ranked = candidates(results, names)
    rows = []
    for c in ranked:
        stack = next(s for s in results["stacks"] if s["name"] == c.stack)
        slowc = find_run(results, c.stack, "slowclients")
        rows.append(
            [
                f"`{c.stack}`",
                labels[c.stack],
                f"{c.met}/{c.judged}",
                _num(c.balance, 2),
                _num(c.ping_rps, 0),
                _num(c.slow_rps, 0),
                _num(c.cpu_ratio, 2),
                _num(None if slowc is None else slowc["ok_rps"], 0),
                _num(stack.get("pss_per_worker_mb")),
            ]
        )
    best = ranked[0]
    kind = results.get("default_server_kind", "?")
    lines = [
        "## Why these defaults",
        "",
        "[docs/defaults.md](../defaults.md) explains each default and the trade-offs behind it. "
        "Every flaskprod configuration measured in this run, scored on the goals above "
        "(the Production-cost goal is judged on the default stack only), every one on the rounds' figures, "
        "the default too, so they compare alike. Best first by balance: the "
        "geometric mean over the goals of how far each got toward its target (1.00 = every goal just "
        "met; each capped at 2), then goals met. A count of goals flips when a figure crosses its "
        "threshold by a few percent, within this machine's noise; the balance weighs every workload.",
        "",
    ]
    lines += _table(
        [
            "stack",
            "configuration",
            "goals met",
            "balance",
            "/api/ping rps",
            "/api/slow rps",
            "/api/cpu x ceiling",
            "ping under slow clients rps",
            "PSS/worker MiB",
        ],
        rows,
    )
    lines.append(
        f"The numbers support **{labels[best.stack]}** ({best.met} of {best.judged} goals met, "
        f"{_num(best.ping_rps, 0)} rps on /api/ping, {_num(best.slow_rps, 0)} rps on /api/slow)."
    )
    if best.stack != DEFAULT:
        current = next((c for c in ranked if c.stack == DEFAULT), None)
        if current is not None:
            lines.append(
                f"The current default (`server.kind = {kind}`) meets {current.met} of {current.judged}, "
                f"with {_num(current.ping_rps, 0)} rps on /api/ping and {_num(current.slow_rps, 0)} on /api/slow."
            )
        pair = next((ab for ab in paired if (ab["a"], ab["b"]) == (DEFAULT, best.stack)), None)
        if pair is not None:
            lines.append(
                f"Paired with the default round by round ({pair['rounds']} rounds from {pair['started']}), the "
                f"default served {_pair_figures(pair)} of what `{best.stack}` did: "
                f"[table](ab/{pair_stem(DEFAULT, best.stack)}.md)."
            )
    else:
        lines.append(f"That is what `flaskprod up` runs today (`server.kind = {kind}`).")
    lines += ["", *_reasons(results)]
    return [*lines, ""]


def _reasons(results: Results) -> list[str]:
    """Plain statements of the comparisons behind the choice, from this run's numbers only."""
    out = []

    def r(stack: str, workload: str) -> float | None:
        run = find_run(results, stack, workload)
        return None if run is None else float(run["ok_rps"])

    kind = results.get("default_server_kind", "gunicorn")
    other = "uwsgi" if kind == "gunicorn" else "gunicorn"
    pairs = {kind: DEFAULT, other: f"flaskprod-{other}"}
    g, u = r(pairs.get("gunicorn", ""), "ping"), r(pairs.get("uwsgi", ""), "ping")
    if g and u:
        out.append(
            f"- Server kind: nginx -> uWSGI (uwsgi protocol) served {u:,.0f} rps on /api/ping, "
            f"nginx -> Gunicorn {g:,.0f} rps ({u / g:.2f}x), both with their default threads."
        )
    for k in ("gunicorn", "uwsgi"):
        base = pairs.get(k, "")
        s0, c0, p0 = r(base, "slow"), r(base, "cpu"), r(base, "ping")
        for stack in results["stacks"]:
            prefix = f"flaskprod-{k}-threads"
            if not stack["name"].startswith(prefix):
                continue
            n = stack["name"][len(prefix) :]
            sn, cn, pn = r(stack["name"], "slow"), r(stack["name"], "cpu"), r(stack["name"], "ping")
            if s0 and sn and c0 and cn and p0 and pn:
                out.append(
                    f"- Threads ({k}): with {n} thread(s) per worker instead of the default, /api/slow served "
                    f"{sn:,.0f} rps ({sn / s0:.2f}x the default's {s0:,.0f}), /api/cpu {cn:,.0f} ({cn / c0:.2f}x) "
                    f"and /api/ping {pn:,.0f} ({pn / p0:.2f}x)."
                )
    locked, plain = find_run(results, ACCEPT_LOCK, "ping"), find_run(results, pairs.get("uwsgi", ""), "ping")
    if locked and plain and plain["ok_rps"] and locked.get("cpu_cores") and plain.get("cpu_cores"):
        out.append(
            f"- Accept lock (uwsgi): with thunder-lock on, /api/ping served {locked['ok_rps']:,.0f} rps "
            f"({locked['ok_rps'] / plain['ok_rps']:.2f}x the default's {plain['ok_rps']:,.0f}), with "
            f"{locked['cpu_cores']['idle']:.2f} of the cores idle against {plain['cpu_cores']['idle']:.2f}."
        )
    base = pairs.get("uwsgi", "")

    def against(other: str) -> str:
        both = [(w, r(base, w), r(other, w)) for w in ("ping", "page", "cpu", "db-pg")]
        return "; ".join(f"{w} {d:,.0f} against {o:,.0f} ({d / o:.2f}x)" for w, d, o in both if d and o)

    if shown := against(UNPINNED):
        out.append(
            "- CPU affinity (uwsgi): with each worker pinned to a CPU of its own (the default) against left "
            f"to the scheduler, requests/s on {shown}."
        )
    if shown := against(UNFROZEN):
        pss = {s["name"]: s.get("pss_per_worker_mb") for s in results["stacks"]}
        memory = (
            f"; PSS per worker {pss[base]:.1f} against {pss[UNFROZEN]:.1f} MiB"
            if pss.get(base) and pss.get(UNFROZEN)
            else ""
        )
        out.append(
            "- Frozen start-up objects (uwsgi): with the loaded app frozen before the fork (the default) against "
            f"left to the garbage collector, requests/s on {shown}{memory}."
        )
    if shown := against(UNFAIR):
        tails = []
        for w in ("ping", "page", "db-pg"):
            mine, theirs = find_run(results, base, w), find_run(results, UNFAIR, w)
            if (t0 := mine and tail(mine)) and (t1 := theirs and tail(theirs)):
                tails.append(f"{w} {t0:.2f} against {t1:.2f}")
        out.append(
            "- Turns for the interpreter lock (uwsgi): with requests taking turns (the default) against threads "
            f"taking the lock as they come, requests/s on {shown}"
            + (f"; p99/p50 on {'; '.join(tails)}." if tails else ".")
        )
    workers = next((s.get("workers") for s in results["stacks"] if s["name"] == DEFAULT), None)
    if workers:
        out.append(
            f"- Workers: the default stack ran {workers} workers on {results['machine']['cores']} cores "
            "(cores, at least 2, when threaded; 2 x cores + 1 with one thread; capped by memory)."
        )
    return out


def method_section(results: Results, images: Sequence[Path]) -> list[str]:
    m, v, s = results["machine"], results["versions"], results["settings"]
    lines = ["## Plots", ""]
    lines += [f"![{p.stem}]({p.name})" for p in images]
    lines += [
        "",
        "## How this was measured",
        "",
        f"- Command: `{results.get('command', 'make bench')}` (`python -m benchmarks`; the harness is in "
        "`benchmarks/`, the peers' nginx and uWSGI files in `benchmarks/nginx/`).",
        f"- Mode: {results['mode']}; started {results['started']}, finished {results.get('finished', '?')}; "
        f"commit {results.get('commit', '?')}.",
        f"- Load average at start: {results['load_average_at_start']} (1, 5, 15 min); at end: "
        f"{results.get('load_average_at_end', '?')}. Other processes shared the machine; a load above ~0.5 "
        "at start means the numbers are noisier.",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb']} MiB, {m['os']}, kernel {m['kernel']}, "
        f"Python {m['python']}.",
        "- Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        f"- Load: wrk with {s['wrk_threads']} threads on the same machine, `--latency`, timeout "
        f"{s['wrk_timeout_s']} s; {s['stack_warmup_s']} s warm-up per stack and {s['workload_warmup_s']} s per "
        f"workload, then {s['duration_s']} s measured, {s.get('samples', 1)} time(s) "
        f"{_rounds_text(results)}at "
        f"{s['main_connections']} connections ({_pick_text(results)} reported; every round's figures are in "
        f"results.json) and once at the other sweep levels {s['connections']}. The in-process pairs "
        "(bare app, Production behind a proxy, Production alone) alternate in as many rounds, each the median.",
        "- Slow clients: 64 sockets each sending one header byte every 0.5 s (never completing a request; "
        "closed ones are reopened) while wrk measures /api/ping.",
        f"- PostgreSQL: {results.get('postgresql', 'not run')}.",
        "- Environment: " + "; ".join(f"`{k}` = {val}" for k, val in results["environment"].items()) + ".",
        "- Peers follow the guide as written; the only changes are marked `bench:` in "
        "`benchmarks/nginx/` (paths under a temp dir, loopback ports, Option 3's socket moved out of /tmp "
        "to a directory nginx shares, no uid/gid switch).",
        "",
        "Stacks, exactly as started (cwd relative to the repository):",
        "",
    ]
    for stack in results["stacks"]:
        for command in stack.get("commands", []):
            lines.append(f"- `{stack['name']}`: `{command}`")
    example = next((r["command"] for r in results["runs"]), None)
    if example:
        lines += ["", f"A wrk run, for example: `{example}`"]
    return [*lines, ""]


def paired_section(paired: Sequence[Results]) -> list[str]:
    """One line per `make bench-ab` comparison kept beside the results: what the rounds could not resolve."""
    if not paired:
        return []
    lines = [
        "Paired comparisons (`make bench-ab`: two stacks alternated round by round, order flipped each round; "
        "each ratio is A's median over B's):",
        "",
    ]
    for ab in paired:
        a, b = ab["a"], ab["b"]
        lines.append(
            f"- A `{a}` against B `{b}`, {ab['rounds']} rounds from {ab['started']} (commit {ab['commit']}): "
            f"{_pair_figures(ab)}; [table](ab/{pair_stem(a, b)}.md)."
        )
    return [*lines, ""]


def _pair_figures(ab: Results) -> str:
    return "; ".join(
        f"{row['workload']} {row['ratio']:.2f}x (A won {row['a_won']} of {row['rounds']})"
        for row in ab["summary"]
        if row.get("ratio") is not None
    )


def render(results: Results, images: Sequence[Path] = (), paired: Sequence[Results] = ()) -> str:
    title = "# Benchmarks" + (
        " (quick run: short, 64 connections only, no PostgreSQL)" if results["mode"] == "quick" else ""
    )
    lines = [
        title,
        "",
        "Generated by `python -m benchmarks` from `results.json` in this folder; do not edit by hand.",
        "",
    ]
    lines += goals_section(results)
    lines += defaults_section(results, paired)
    lines += paired_section(paired)
    lines += workload_tables(results)
    lines += cores_section(results)
    lines += sweep_table(results)
    lines += stacks_table(results)
    lines += inprocess_section(results)
    lines += method_section(results, images)
    return "\n".join(lines)
