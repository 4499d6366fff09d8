"""`python -m benchmarks [--quick]`: run the benchmarks; JSON, Markdown and plots (full runs: docs/benchmarks/)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from flaskprod.servers import resolve_kind
from flaskprod.spec import Spec

from . import ab, plots, report, run
from .outfolder import cannot_write
from .ratios import goals_for
from .stacks import REPO, all_stacks, pick

PUBLISHED = REPO / "docs" / "benchmarks"
QUICK_OUT = REPO / "build" / "bench-quick"


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs at 64 connections, no PostgreSQL (< 3 min)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where results go (default: docs/benchmarks/ for a full run; build/bench-quick/ for a quick one, "
        "so checking a change never replaces the published results)",
    )
    parser.add_argument("--stacks", default="", help="comma-separated stack names (default: all)")
    parser.add_argument(
        "--render",
        action="store_true",
        help="no measuring: rewrite README.md and the plots from the results.json already in --out",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = QUICK_OUT if args.quick else PUBLISHED

    if args.render:
        return render(args.out)
    mode = run.QUICK if args.quick else run.FULL
    # Whatever `up` runs with no --server today: its twin --server stack is then not run twice.
    default_kind = resolve_kind(Spec(), behind_nginx=True).server.kind
    stacks = pick(all_stacks(default_kind=default_kind), [s for s in args.stacks.split(",") if s], full=not args.quick)
    if (problem := cannot_write(args.out)) is not None:
        parser.error(problem)
    try:
        results = run.run(mode, stacks, say)
    except KeyboardInterrupt:
        say("interrupted: every process the run started is stopped; nothing written")
        return 130
    results["default_server_kind"] = default_kind
    results["command"] = "make bench-quick" if args.quick else "make bench"
    # Written before the pairs too: the rounds took most of an hour, and a failing pair must not lose them.
    _write(results, args.out)
    if mode.pair_rounds:
        try:
            results["paired_goals"] = ab.for_goals(results, stacks, mode.pair_rounds, say)
        except KeyboardInterrupt:
            say(f"interrupted: the rounds are in {args.out}/results.json, the pairs are not")
            return 130
        results["goals"] = [g.as_dict() for g in goals_for(results)]
        _write(results, args.out)
    return render(args.out)


def _write(results: dict[str, Any], out: Path) -> None:
    """results.json whole or not at all: a reader never sees half of it."""
    partial = out / "results.json.partial"
    partial.write_text(json.dumps(results, indent=1) + "\n")
    partial.replace(out / "results.json")


def render(out: Path) -> int:
    """README.md and the plots from out/results.json; the goals are judged afresh from its numbers."""
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError) as exc:
        say(f"error: no readable results in {out}/results.json ({exc}); run `make bench` first")
        return 2
    images = plots.write_all(results, out)
    paired = [json.loads(path.read_text()) for path in sorted((out / "ab").glob("*.json"))]
    (out / "README.md").write_text(report.render(results, images, paired))
    say(f"wrote {out}/README.md and {len(images)} plots from {out}/results.json")
    if out.resolve() == PUBLISHED.resolve():
        # The published run is the one the front README quotes; a quick or elsewhere run never is.
        front = REPO / "README.md"
        try:
            front.write_text(report.with_headline(front.read_text(), results))
        except ValueError as exc:
            say(f"error: {front}: {exc}; put the two marker lines back under its Benchmarks heading")
            return 2
        say(f"wrote the headline table in {front}")
    for goal in goals_for(results):
        verdict = {True: "met", False: "MISSED", None: "not measured"}[goal.met]
        say(f"  {verdict:<12} {goal.goal}: {goal.measured}")
    stolen = report.steal_text(results)
    if stolen is not None:
        say(stolen)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
