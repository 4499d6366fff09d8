"""`python -m benchmarks.check`: how long `flaskprod check` takes on a large project, and its memory, for
flaskprod as it is beside flaskprod at another revision, alternated round by round in one run.

The project is generated: an app factory with Production(app), and packages of blueprint modules (views, loops,
dicts: what a project's code is mostly made of), so the figure is the checks' cost per module read, not the app's
import. Each round runs `flaskprod check` once per version, in a fresh process, the order flipped every round;
GNU time reports its wall time and the largest resident set of its processes (the checks run in a child).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import machine
from .outfolder import cannot_write
from .revisions import source_at
from .stacks import REPO

OUT = REPO / "docs" / "benchmarks" / "check"
TIME = "/usr/bin/time"  # GNU time (Debian's `time` package): %e wall seconds, %M the largest resident set, KiB

APP = """\
import os

from flask import Flask

from flaskprod import Production


def create_app():
    app = Flask(__name__)
    app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    Production(app)
    return app
"""

VIEW = """
@bp.route("/r{n}")
def view_{n}(x=None):
    d = {{"a": [1, 2, 3], "b": x}}
    for i in range(10):
        d["a"].append(i * 2)
    return json.dumps(d)
"""


def write_project(root: Path, modules: int, views: int) -> None:
    """An app and `modules` modules of `views` views each, 20 modules to a package."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(APP)
    (root / "requirements.txt").write_text("flask\nflaskprod\n")
    for m in range(modules):
        package = root / f"pkg{m // 20:03}"
        package.mkdir(exist_ok=True)
        (package / "__init__.py").touch()
        head = f"import json\n\nfrom flask import Blueprint\n\nbp = Blueprint('b{m}', __name__)\n"
        (package / f"mod{m % 20:02}.py").write_text(head + "".join(VIEW.format(n=n) for n in range(views)))


def measure(source: Path, project: Path) -> dict[str, float]:
    """One `flaskprod check` of project by the flaskprod in source: wall seconds and peak RSS (MiB)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASK", "PYTHONPATH"))}
    env |= {"PYTHONPATH": str(source), "SECRET_KEY": secrets.token_hex(32), "FLASK_SECRET_KEY": secrets.token_hex(32)}
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        done = subprocess.run(
            [TIME, "-f", "%e %M", "-o", report.name, sys.executable, "-m", "flaskprod", "check", "app:create_app()"],
            cwd=project, env=env, capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        wall, kib = report.read().split()[-2:]
    if done.returncode != 0:
        raise SystemExit(f"flaskprod check failed on the generated project ({done.returncode}): {done.stderr[-500:]}")
    return {"seconds": float(wall), "rss_mib": int(kib) / 1024}


def compare(versions: Mapping[str, Path], project: Path, rounds: int, say: Any) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    names = list(versions)
    for number in range(rounds):
        order = names if number % 2 == 0 else names[::-1]
        for name in order:
            figures = measure(versions[name], project)
            say(f"round {number + 1}: {name}: {figures['seconds']:.2f} s, {figures['rss_mib']:.0f} MiB")
            runs.append({"round": number + 1, "version": name, **figures})
    return runs


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    versions = dict.fromkeys(run["version"] for run in runs)
    return {
        name: {
            "median_seconds": statistics.median(r["seconds"] for r in runs if r["version"] == name),
            "max_rss_mib": max(r["rss_mib"] for r in runs if r["version"] == name),
        }
        for name in versions
    }


def markdown(results: Mapping[str, Any]) -> str:
    summary = results["summary"]
    first = next(iter(summary.values()))
    rows = [
        f"| {name} | {s['median_seconds']:.2f} | {first['median_seconds'] / s['median_seconds']:.2f}x | "
        f"{s['max_rss_mib']:.0f} |"
        for name, s in summary.items()
    ]
    project = results["project"]
    return "\n".join([
        "# `flaskprod check` on a large project",
        "",
        f"{project['modules']:,} modules of {project['views']} views each ({project['lines']:,} lines), "
        f"{results['rounds']} rounds alternated, {results['started']} on {results['machine']['cores']} cores, "
        f"commit {results['commit']}.",
        "",
        "| flaskprod | median seconds | speed against the first | peak RSS MiB |",
        "|---|---|---|---|",
        *rows,
        "",
        f"Command: `{results['command']}`",
        "",
    ])  # fmt: skip


@contextlib.contextmanager
def _versions(rev: str | None) -> Iterator[dict[str, Path]]:
    here = {"this tree": REPO / "src"}
    if rev is None:
        yield here
        return
    with source_at(rev, "flaskprod") as (source, commit):
        yield {**here, f"{rev} ({commit})": source}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.check", description=__doc__.splitlines()[0])
    parser.add_argument("--rev", help="also measure flaskprod at this git revision, e.g. HEAD~5")
    parser.add_argument("--modules", type=int, default=2_000)
    parser.add_argument("--views", type=int, default=12, help="views per module (each 7 lines)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    if not Path(TIME).is_file():
        parser.error(f"{TIME} is missing: apt-get install time")
    if problem := cannot_write(args.out):
        parser.error(problem)
    command = " ".join(["python -m benchmarks.check", *(argv if argv is not None else sys.argv[1:])])
    started = dt.datetime.now(dt.UTC)
    with tempfile.TemporaryDirectory(prefix="fpcheck-") as tmp, _versions(args.rev) as versions:
        project = Path(tmp) / "project"
        write_project(project, args.modules, args.views)
        lines = sum(len(p.read_text().splitlines()) for p in project.rglob("*.py"))
        runs = compare(versions, project, args.rounds, lambda line: print(line, file=sys.stderr, flush=True))
    results = {
        "started": started.strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "machine": machine.machine(),
        "commit": machine.git_commit(REPO),
        "project": {"modules": args.modules, "views": args.views, "lines": lines},
        "rounds": args.rounds,
        "runs": runs,
        "summary": summarize(runs),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    table = markdown(results)
    (args.out / "README.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
