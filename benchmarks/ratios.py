"""Ratios and goals computed from one run's results (pure: results dict in, figures out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT = "flaskprod-default"
# The default with uWSGI's accept lock on, which flaskprod leaves off.
ACCEPT_LOCK = "flaskprod-uwsgi-acceptlock"
# The default with its workers left to the scheduler instead of pinned to a CPU each.
UNPINNED = "flaskprod-uwsgi-unpinned"
# The default with the loaded app left to the garbage collector instead of frozen.
UNFROZEN = "flaskprod-uwsgi-unfrozen"
# The default with threads left to grab the interpreter lock as they come, instead of taking turns.
UNFAIR = "flaskprod-uwsgi-unfair"
OPTION2 = "guide-option2"
MAIN_CONNECTIONS = 64
SMALL_DYNAMIC = ("ping", "page")

Results = Mapping[str, Any]


def find_run(
    results: Results, stack: str, workload: str, connections: int = MAIN_CONNECTIONS
) -> Mapping[str, Any] | None:
    for run in results.get("runs", []):
        if run["stack"] == stack and run["workload"] == workload and run["connections"] == connections:
            return run  # type: ignore[no-any-return]
    return None


def rps(results: Results, stack: str, workload: str, connections: int = MAIN_CONNECTIONS) -> float | None:
    """Successful responses per second: a stack that answers fast with 502s is not fast."""
    run = find_run(results, stack, workload, connections)
    return None if run is None else float(run["ok_rps"])


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return numerator / denominator


def _per_core(results: Results, workload: str) -> float | None:
    """The raw app's in-process calls per second on one core."""
    value = results.get("ceiling", {}).get("calls_per_s", {}).get(workload)
    return None if value is None else float(value)


def ceiling_rps(results: Results, workload: str) -> float | None:
    """What the raw app does in-process on every core at once: no stack can serve more."""
    per_core = _per_core(results, workload)
    cores = results.get("ceiling", {}).get("cores")
    if per_core is None or not cores:
        return None
    return per_core * int(cores)


def pair_stem(a: str, b: str) -> str:
    """The file name, less its suffix, of a paired run of stacks a and b (`make bench-ab`)."""
    return f"{a}-vs-{b}"


def run_ceiling_rps(results: Results, run: Mapping[str, Any]) -> float | None:
    """The ceiling a run is set against: measured on every core right after it where it was, else at the start."""
    beside = run.get("ceiling_beside")
    if beside:
        return float(beside["calls_per_s"])
    return ceiling_rps(results, run["workload"])


def ceiling_ratio(results: Results, run: Mapping[str, Any]) -> float | None:
    """The run's throughput over what the raw app does in-process on every core: 1.0 = no server overhead."""
    return ratio(float(run["ok_rps"]), run_ceiling_rps(results, run))


def app_core_efficiency(results: Results, run: Mapping[str, Any]) -> float | None:
    """Requests per CPU second the app server spent, over the in-process calls per CPU second.

    1.0: inside the server the app runs as fast as in the in-process loop; below it, the server's own
    work, switches between threads and processes, and cold caches take the rest.
    """
    most = run_ceiling_rps(results, run)
    # Both the run's own ceiling and the one from the start say how many cores they were measured on.
    cores = (run.get("ceiling_beside") or results.get("ceiling", {})).get("cores")
    app_cores = (run.get("cpu_cores") or {}).get("app")
    if most is None or not cores or not app_cores:
        return None
    return ratio(float(run["ok_rps"]), most / cores * app_cores)


def cores_left_to_app(results: Results, run: Mapping[str, Any] | None) -> float:
    """The share of the cores nginx and wrk left the app server during the run: no server could use more."""
    cores = results.get("ceiling", {}).get("cores")
    used = None if run is None else run.get("cpu_cores")
    if not cores or not used:
        return 1.0
    left = float(cores) - float(used["nginx"]) - float(used["wrk"])
    return max(0.0, left / float(cores))


# The workloads whose cores are shown: light, heavy and CPU-bound dynamic responses.
CORES_WORKLOADS = ("ping", "page", "cpu")


def runs_with_cores(results: Results, workload: str) -> list[Mapping[str, Any]]:
    """The workload's runs at the main concurrency that recorded where the cores went, fastest first."""
    runs = [
        r
        for r in results.get("runs", [])
        if r["workload"] == workload and r["connections"] == MAIN_CONNECTIONS and r.get("cpu_cores")
    ]
    return sorted(runs, key=lambda r: -float(r["ok_rps"]))


# A measured run that lost more than this many cores to the hypervisor ran on a slowed machine.
DISTURBED_STOLEN = 0.1
# Rounds of one point whose steal is within this many cores of the least are taken as disturbed alike.
STEAL_TOLERANCE = 0.05


def run_stolen(run: Mapping[str, Any]) -> float | None:
    """Cores the host took during one measured run; None for a run from before steal was recorded."""
    value = (run.get("cpu_cores") or {}).get("stolen")
    return None if value is None else float(value)


@dataclass(frozen=True, kw_only=True)
class Steal:
    """How much of the cores the host took from this machine during a run's measurements."""

    median: float  # cores, over every round of every measured run
    most: float
    disturbed: int  # measured runs (every round) that lost more than DISTURBED_STOLEN
    measured: int
    ceiling: float | None  # during the in-process ceiling, which every x-ceiling figure divides by


def steal(results: Results) -> Steal | None:
    """The host's share of the cores over the run; None for a run from before steal was recorded."""
    figures: list[float] = []
    for run in results.get("runs", []):
        # Every round's steal where the point kept its rounds, else the reported run's own.
        rounds = [r.get("stolen") for r in run.get("samples", [])] or [run_stolen(run)]
        figures += [float(f) for f in rounds if f is not None]
    if not figures:
        return None
    figures.sort()
    return Steal(
        median=figures[len(figures) // 2],
        most=figures[-1],
        disturbed=sum(f > DISTURBED_STOLEN for f in figures),
        measured=len(figures),
        ceiling=results.get("ceiling", {}).get("stolen_cores"),
    )


def peers(results: Results) -> list[str]:
    return [s["name"] for s in results.get("stacks", []) if s["group"] == "peer"]


def fastest_peer(results: Results, workload: str) -> tuple[str | None, float | None]:
    best: tuple[str | None, float | None] = (None, None)
    for name in peers(results):
        value = rps(results, name, workload)
        if value is not None and (best[1] is None or value > best[1]):
            best = (name, value)
    return best


HELLO_BARE, HELLO_PRODUCTION = "hello-bare", "hello-production"
NGINX_STATIC = "nginx-static"


def goal_pairs(results: Results, stack: str = DEFAULT) -> dict[tuple[str, str], tuple[str, ...]]:
    """Each pair of stacks a goal compares, with the workloads it compares them on, from the rounds measured.

    The fastest peer is the rounds' own; a pair is kept only where both sides were measured on the workload.
    """
    wanted: dict[tuple[str, str], list[str]] = {}
    for workload in SMALL_DYNAMIC:
        peer, _ = fastest_peer(results, workload)
        for other in (peer, OPTION2):
            if other is not None:
                wanted.setdefault((stack, other), []).append(workload)
    wanted.setdefault((stack, OPTION2), []).append("slow")
    wanted[(HELLO_PRODUCTION, HELLO_BARE)] = ["ping"]
    wanted[(stack, NGINX_STATIC)] = ["static"]
    return {
        pair: measured
        for pair, workloads in wanted.items()
        if (measured := tuple(w for w in dict.fromkeys(workloads) if all(rps(results, s, w) for s in pair)))
    }


def tail(run: Mapping[str, Any]) -> float | None:
    """p99 over p50 of one wrk run; None when it measured no latency."""
    p50, p99 = run.get("p50_ms"), run.get("p99_ms")
    return p99 / p50 if p50 and p99 else None


def paired_tails(results: Results, stack: str, workload: str) -> list[float]:
    """p99 over p50 of every round the run's goal pairs measured stack on workload in."""
    return [
        t
        for pair in results.get("paired_goals", [])
        for run in pair.get("runs", [])
        if run["stack"] == stack and run["workload"] == workload and (t := tail(run)) is not None
    ]


def paired_row(results: Results, a: str, b: str, workload: str) -> Mapping[str, Any] | None:
    """The summary row of the run's own paired rounds of a against b on workload, if it ran them."""
    for pair in results.get("paired_goals", []):
        if pair["a"] == a and pair["b"] == b:
            for row in pair["summary"]:
                if row["workload"] == workload and row.get("ratio") is not None:
                    return row  # type: ignore[no-any-return]
    return None


@dataclass(frozen=True, kw_only=True)
class Goal:
    goal: str
    target: str
    measured: str
    value: float | None
    threshold: float
    # None: the figures it needs were not measured in this run.
    met: bool | None
    below: bool = False  # met by staying under the threshold (latency), not reaching it
    # The most any stack could reach on this machine: the ceiling x cores over the figure compared
    # against. Below the threshold, the goal is out of reach here whatever the server does.
    bound: float | None = None

    @property
    def reachable(self) -> bool | None:
        return None if self.bound is None else self.bound >= self.threshold

    @property
    def attainment(self) -> float | None:
        """How far toward its threshold, 1.0 = just met; capped at 2 so one runaway win cannot hide misses."""
        if self.value is None or self.value <= 0:
            return None
        share = self.threshold / self.value if self.below else self.value / self.threshold
        return min(share, 2.0)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _goal(
    goal: str,
    target: str,
    value: float | None,
    threshold: float,
    measured: str,
    *,
    below: bool = False,
    bound: float | None = None,
) -> Goal:
    met = None if value is None else (value < threshold if below else value >= threshold)
    return Goal(
        goal=goal, target=target, measured=measured, value=value, threshold=threshold, met=met, below=below, bound=bound
    )


def _fmt(value: float | None, digits: int = 2, *, threshold: float | None = None) -> str:
    """value to `digits` places, one more where that would print the threshold it did not reach (0.845 for 0.85)."""
    if value is None:
        return "n/a"
    if threshold is not None and value != threshold and f"{value:.{digits}f}" == f"{threshold:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f}"


def _x(value: float | None, threshold: float | None = None) -> str:
    return "n/a" if value is None else f"{_fmt(value, threshold=threshold)}x"


def _rps_text(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} rps"


def _versus(
    results: Results, a: str, b: str | None, workload: str, threshold: float, *, paired: bool, named: bool = False
) -> tuple[float | None, str, float | None]:
    """a's throughput over b's on workload, the text that shows it, and b's figure it divided by.

    From the run's paired rounds of the two where it ran them (alternated a minute apart, so the
    machine's drift over the run falls on both alike), else from the rounds every stack ran in turn.
    """
    mine, theirs = rps(results, a, workload), None if b is None else rps(results, b, workload)
    value = ratio(mine, theirs)
    against = f"{b or 'no peer'} " if named else ""
    text = f"{_x(value, threshold)} ({_rps_text(mine)} vs {against}{_rps_text(theirs)})"
    row = None if b is None or not paired else paired_row(results, a, b, workload)
    if row is None:
        return value, text, theirs
    medians = row["median_rps"]
    return (
        float(row["ratio"]),
        f"{_x(row['ratio'], threshold)} paired ({medians[a]:,.0f} vs {medians[b]:,.0f} rps, medians of "
        f"{row['rounds']} alternated rounds, faster in {row['a_won']}); in the rounds {text}",
        float(medians[b]),
    )


def goals_for(results: Results, stack: str = DEFAULT, *, paired: bool = True) -> list[Goal]:
    """The issue's goals for one flaskprod stack, each with the numbers behind its verdict.

    paired: judge the ratios between two stacks on the run's paired rounds of them where it ran any.
    """
    found: list[Goal] = []
    c = MAIN_CONNECTIONS
    for workload in SMALL_DYNAMIC:
        most = ceiling_rps(results, workload)
        peer, _ = fastest_peer(results, workload)
        # The bound divides by the same figure of the other stack as the goal's ratio.
        value, text, theirs = _versus(results, stack, peer, workload, 1.0, paired=paired, named=True)
        found.append(
            _goal(f"{workload}: >= 1.0x fastest peer", ">= 1.00x", value, 1.0, text, bound=ratio(most, theirs))
        )
        value, text, theirs = _versus(results, stack, OPTION2, workload, 3.0, paired=paired)
        found.append(
            _goal(f"{workload}: >= 3x guide Option 2", ">= 3.00x", value, 3.0, text, bound=ratio(most, theirs))
        )
        run = find_run(results, stack, workload)
        p50 = None if run is None else run.get("p50_ms")
        p99 = None if run is None else run.get("p99_ms")
        value = ratio(p99, p50)
        in_rounds = f"{_fmt(value, threshold=2.0)} (p50 {_fmt(p50)} ms, p99 {_fmt(p99)} ms)"
        text = f"p99/p50 = {in_rounds}"
        tails = paired_tails(results, stack, workload) if paired else []
        if tails:
            value = statistics.median(tails)
            text = (
                f"p99/p50 = {_fmt(value, threshold=2.0)}, the median of its {len(tails)} paired rounds "
                f"({_fmt(min(tails))} to {_fmt(max(tails))}); in the rounds {in_rounds}"
            )
        found.append(_goal(f"{workload}: p99 < 2x p50 at {c} connections", "< 2.00x", value, 2.0, text, below=True))
    if stack == DEFAULT:
        value, text, _ = _versus(results, HELLO_PRODUCTION, HELLO_BARE, "ping", 0.8, paired=paired)
        found.append(
            _goal(
                "Production(app) fully on: >= 0.8x bare app, same stack",
                ">= 0.80x",
                value,
                0.8,
                text
                + _cpu_per_request_text(
                    find_run(results, HELLO_PRODUCTION, "ping"), find_run(results, HELLO_BARE, "ping")
                )
                + _instructions_text(results),
            )
        )
    value, text, _ = _versus(results, stack, NGINX_STATIC, "static", 0.9, paired=paired)
    found.append(_goal("static: >= 0.9x nginx serving the file directly", ">= 0.90x", value, 0.9, text))
    value, text, _ = _versus(results, stack, OPTION2, "slow", 5.0, paired=paired)
    found.append(_goal(f"/api/slow at {c} connections: >= 5x guide Option 2", ">= 5.00x", value, 5.0, text))
    cpu_run = find_run(results, stack, "cpu")
    cpu_ratio = None if cpu_run is None else ceiling_ratio(results, cpu_run)
    found.append(
        _goal(
            "/api/cpu: >= 0.85x ceiling x cores",
            ">= 0.85x",
            cpu_ratio,
            0.85,
            f"{_x(cpu_ratio, 0.85)} ({_rps_text(None if cpu_run is None else float(cpu_run['ok_rps']))}"
            f"{_beside_text(cpu_run)}{_cores_text(cpu_run)})",
            bound=cores_left_to_app(results, cpu_run),
        )
    )
    return found


def cpu_per_request_us(run: Mapping[str, Any] | None) -> float | None:
    """Microseconds of the app server's CPU per answered request: what the host's steal does not change."""
    app = None if run is None else (run.get("cpu_cores") or {}).get("app")
    if run is None or not app or not run["ok_rps"]:
        return None
    return float(app) / float(run["ok_rps"]) * 1e6


def _cpu_per_request_text(mine: Mapping[str, Any] | None, other: Mapping[str, Any] | None) -> str:
    a, b = cpu_per_request_us(mine), cpu_per_request_us(other)
    if a is None or b is None:
        return ""
    return f"; app server CPU per request {a:,.0f} µs vs {b:,.0f} µs"


def _instructions_text(results: Mapping[str, Any]) -> str:
    counted = (results.get("production_cost") or {}).get("instructions")
    if not counted:
        return ""
    return f"; instructions per request {counted['production']:,} vs {counted['bare']:,} ({counted['ratio']:.3f}x)"


def _beside_text(run: Mapping[str, Any] | None) -> str:
    beside = None if run is None else run.get("ceiling_beside")
    if not beside:
        return ""
    return f" vs ceiling {beside['calls_per_s']:,.0f} calls/s on {beside['cores']} cores, measured right after"


def _cores_text(run: Mapping[str, Any] | None) -> str:
    """Who had the cores during the run, when it was recorded: the app server can use only its share."""
    cores = None if run is None else run.get("cpu_cores")
    if not cores:
        return ""
    return (
        f"; cores used: app server {cores['app']:.2f}, nginx {cores['nginx']:.2f}, wrk {cores['wrk']:.2f}, "
        f"other {cores['other']:.2f}, idle {cores['idle']:.2f}"
        + (f", taken by the host {cores['stolen']:.2f}" if cores.get("stolen") is not None else "")
    )


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One flaskprod configuration as a possible default, scored on the goals it can be judged on."""

    stack: str
    met: int
    judged: int
    ping_rps: float | None
    slow_rps: float | None
    cpu_ratio: float | None
    # Geometric mean of the goals' attainment: near-misses count, and no single workload dominates.
    balance: float | None


def _geomean(values: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def candidates(results: Results, stacks: Sequence[str]) -> list[Candidate]:
    """Best first: the best balance across all goals, then the most goals met.

    A count of goals met flips when a figure crosses its threshold by a few percent, which the
    run-to-run noise here does (p99/p50 of 2.06 against 2.00); the balance weighs how far each goal
    is from its target, so a configuration that trades one workload for another is judged on all.
    """
    found = []
    for name in stacks:
        # Every configuration on the same measure: the rounds (only the default's goals have paired rounds).
        goals = [g for g in goals_for(results, name, paired=False) if not g.goal.startswith("Production")]
        cpu_run = find_run(results, name, "cpu")
        found.append(
            Candidate(
                stack=name,
                met=sum(1 for g in goals if g.met),
                judged=sum(1 for g in goals if g.met is not None),
                ping_rps=rps(results, name, "ping"),
                slow_rps=rps(results, name, "slow"),
                cpu_ratio=None if cpu_run is None else ceiling_ratio(results, cpu_run),
                balance=_geomean([a for g in goals if (a := g.attainment) is not None]),
            )
        )
    return sorted(found, key=lambda c: (-(c.balance or 0.0), -c.met))
