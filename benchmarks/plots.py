"""PNG plots of one run's results (matplotlib, Agg: no display needed)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .ratios import CORES_WORKLOADS, MAIN_CONNECTIONS, runs_with_cores
from .workloads import BY_NAME

Results = Mapping[str, Any]
COLORS = {"flaskprod": "#2b7bba", "peer": "#999999", "baseline": "#e69f00", "built": "#5aae61"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _groups(results: Results) -> dict[str, str]:
    return {s["name"]: s["group"] for s in results["stacks"]}


def throughput(results: Results, out: Path) -> Path | None:
    """One panel per workload: requests per second of each stack at the main concurrency."""
    plt = _pyplot()
    groups = _groups(results)
    names = [
        w for w in BY_NAME if any(r["workload"] == w and r["connections"] == MAIN_CONNECTIONS for r in results["runs"])
    ]
    if not names:
        return None
    bars = sum(1 for r in results["runs"] if r["connections"] == MAIN_CONNECTIONS and r["workload"] in names)
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.0 * len(names) + 0.3 * bars), squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=True):
        runs = sorted(
            (r for r in results["runs"] if r["workload"] == name and r["connections"] == MAIN_CONNECTIONS),
            key=lambda r: r["ok_rps"],
        )
        ax.barh(
            [r["stack"] for r in runs],
            [r["ok_rps"] for r in runs],
            color=[COLORS[groups.get(r["stack"], "peer")] for r in runs],
        )
        for i, r in enumerate(runs):
            note = f" {r['ok_rps']:,.0f}" + (f"  ({r['errors']} errors)" if r["errors"] else "")
            ax.text(r["ok_rps"], i, note, va="center", fontsize=7)
        ax.set_title(f"{BY_NAME[name].label}, {MAIN_CONNECTIONS} connections", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("requests/s", fontsize=7)
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def latency(results: Results, out: Path, workload: str = "ping") -> Path | None:
    """p50 and p99 of each stack on one workload at the main concurrency (log scale: they span decades)."""
    plt = _pyplot()
    runs = [
        r
        for r in results["runs"]
        if r["workload"] == workload and r["connections"] == MAIN_CONNECTIONS and r["p50_ms"] is not None
    ]
    if not runs:
        return None
    runs.sort(key=lambda r: r["p99_ms"])
    fig, ax = plt.subplots(figsize=(9, 1.5 + 0.35 * len(runs)))
    y = range(len(runs))
    ax.barh([i + 0.2 for i in y], [r["p99_ms"] for r in runs], height=0.4, label="p99", color="#d55e00")
    ax.barh([i - 0.2 for i in y], [r["p50_ms"] for r in runs], height=0.4, label="p50", color="#0072b2")
    ax.set_yticks(list(y), [r["stack"] for r in runs], fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)", fontsize=8)
    ax.set_title(f"{BY_NAME[workload].label} latency, {MAIN_CONNECTIONS} connections", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / f"latency-{workload}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def concurrency(results: Results, out: Path, workload: str = "ping") -> Path | None:
    """Requests per second against the number of connections, one line per stack."""
    plt = _pyplot()
    levels = sorted({r["connections"] for r in results["runs"] if r["workload"] == workload})
    if len(levels) < 2:
        return None
    groups = _groups(results)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for stack in dict.fromkeys(r["stack"] for r in results["runs"] if r["workload"] == workload):
        points = sorted(
            (r["connections"], r["ok_rps"])
            for r in results["runs"]
            if r["stack"] == stack and r["workload"] == workload
        )
        style = "-" if groups.get(stack) == "flaskprod" else "--"
        ax.plot([p[0] for p in points], [p[1] for p in points], style, marker="o", label=stack)
    ax.set_xscale("log", base=2)
    ax.set_xticks(levels, [str(c) for c in levels])
    ax.set_xlabel("connections", fontsize=8)
    ax.set_ylabel("requests/s", fontsize=8)
    ax.set_title(f"{BY_NAME[workload].label}: throughput by concurrency", fontsize=9)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out / f"concurrency-{workload}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def memory(results: Results, out: Path) -> Path | None:
    plt = _pyplot()
    stacks = [s for s in results["stacks"] if s.get("pss_per_worker_mb")]
    if not stacks:
        return None
    stacks.sort(key=lambda s: s["pss_per_worker_mb"])
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.32 * len(stacks)))
    ax.barh(
        [f"{s['name']} ({s['workers']})" for s in stacks],
        [s["pss_per_worker_mb"] for s in stacks],
        color=[COLORS[s["group"]] for s in stacks],
    )
    ax.set_xlabel("PSS per worker, MiB (worker count in brackets)", fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = out / "memory.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


CORE_PARTS = (("app", "app server", "#2b7bba"), ("nginx", "nginx", "#009e73"), ("wrk", "wrk", "#e69f00"))
CORE_REST = (("other", "other", "#999999"), ("stolen", "taken by the host", "#d55e00"), ("idle", "idle", "#eeeeee"))


def cores(results: Results, out: Path) -> Path | None:
    """Where the cores went on each workload at the main concurrency: one stacked bar per stack."""
    plt = _pyplot()
    # barh draws its first bar at the bottom: slowest first puts the fastest on top, as in the tables.
    per_panel = {name: runs[::-1] for name in CORES_WORKLOADS if (runs := runs_with_cores(results, name))}
    if not per_panel:
        return None
    bars = sum(len(runs) for runs in per_panel.values())
    fig, axes = plt.subplots(len(per_panel), 1, figsize=(9, 1.0 * len(per_panel) + 0.3 * bars), squeeze=False)
    for ax, (name, runs) in zip(axes[:, 0], per_panel.items(), strict=True):
        left = [0.0] * len(runs)
        for key, label, color in (*CORE_PARTS, *CORE_REST):
            # Runs from before steal was recorded have no "stolen".
            widths = [r["cpu_cores"].get(key, 0.0) for r in runs]
            ax.barh([r["stack"] for r in runs], widths, left=left, color=color, label=label, edgecolor="#cccccc")
            left = [a + b for a, b in zip(left, widths, strict=True)]
        for i, r in enumerate(runs):
            ax.text(left[i], i, f" {r['ok_rps']:,.0f} rps", va="center", fontsize=7)
        ax.set_title(f"{BY_NAME[name].label}: cores used, {MAIN_CONNECTIONS} connections", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("cores (CPU seconds per second)", fontsize=7)
        ax.set_xlim(0, results["machine"]["cores"] * 1.45)  # room for the labels and the legend
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    path = out / "cores.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_all(results: Results, out: Path) -> list[Path]:
    made = [
        throughput(results, out),
        latency(results, out),
        concurrency(results, out, "ping"),
        concurrency(results, out, "page"),
        memory(results, out),
        cores(results, out),
    ]
    wanted = {p for p in made if p is not None}
    # Plots a previous run made that this one did not (a full run's sweep after a quick run) would mislead.
    for old in out.glob("*.png"):
        if old not in wanted:
            old.unlink()
    return sorted(wanted)
