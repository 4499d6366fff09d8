"""`python -m benchmarks.ab`: two stacks alternated round by round, summarized as medians and rounds won."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from benchmarks import ab, report, run
from benchmarks.ratios import goals_for
from benchmarks.stacks import REPO, ad_hoc, all_stacks


def _run(
    stack: str, workload: str, round_: int, rps: float, p50: float = 10.0, p99: float = 20.0, stolen: float = 0.0
) -> dict[str, Any]:
    return {"stack": stack, "workload": workload, "round": round_, "ok_rps": rps, "p50_ms": p50, "p99_ms": p99,
            "cpu_cores": {"stolen": stolen}}


def test_summary_pairs_rounds_and_counts_the_ones_a_won() -> None:
    runs = [
        _run("a", "ping", 0, 110), _run("b", "ping", 0, 100),
        _run("b", "ping", 1, 90), _run("a", "ping", 1, 80, p99=40),
        _run("a", "ping", 2, 120), _run("b", "ping", 2, 100, stolen=0.4),
        _run("a", "cpu", 0, 50),  # B never measured cpu: no pair, no row
    ]
    (row,) = ab.summarize(runs, "a", "b")
    assert row["workload"] == "ping" and row["rounds"] == 3
    assert row["rps"] == {"a": [110, 80, 120], "b": [100, 90, 100]}
    assert row["median_rps"] == {"a": 110, "b": 100}
    assert row["ratio"] == pytest.approx(1.1)
    assert row["a_won"] == 2
    assert row["median_p99_over_p50"] == {"a": 2.0, "b": 2.0}
    assert row["stolen_max"] == {"a": 0.0, "b": 0.4}


def test_a_real_pair_is_measured_and_written_as_json_and_markdown(tmp_path: Path) -> None:
    code = ab.main(["hello-production", "hello-bare", "--workloads", "ping", "--rounds", "2", "--seconds", "1",
                    "--out", str(tmp_path)])
    assert code == 0
    results = json.loads((tmp_path / "hello-production-vs-hello-bare.json").read_text())
    (row,) = results["summary"]
    assert row["rounds"] == 2 and all(len(v) == 2 and min(v) > 0 for v in row["rps"].values())
    # Flipped order: the round that started with A is followed by one that starts with B.
    first = [r["stack"] for r in results["runs"] if r["workload"] == "ping"]
    assert first == ["hello-production", "hello-bare", "hello-bare", "hello-production"]
    text = (tmp_path / "hello-production-vs-hello-bare.md").read_text()
    assert "| ping |" in text and "of 2 |" in text


def test_the_full_run_pairs_the_stacks_a_goal_compares_and_judges_it_on_the_pairs() -> None:
    # The rounds measured only the Production-cost pair: that is the one pair to alternate.
    points = [{"stack": s, "workload": "ping", "connections": 64, "ok_rps": rps, "p50_ms": 5.0, "p99_ms": 8.0}
              for s, rps in (("hello-production", 3000.0), ("hello-bare", 6000.0))]
    results: dict[str, Any] = {"runs": points, "stacks": [], "ceiling": {}}
    fast = replace(ab.AB, duration=1, stack_warmup=1, workload_warmup=0)
    said: list[str] = []
    (pair,) = ab.for_goals(results, all_stacks(default_kind="uwsgi"), 2, said.append, fast)
    assert (pair["a"], pair["b"], pair["rounds"]) == ("hello-production", "hello-bare", 2)
    (row,) = pair["summary"]
    assert row["workload"] == "ping" and all(min(v) > 0 for v in row["rps"].values())
    results["paired_goals"] = [pair]
    goal = next(g for g in goals_for(results) if g.goal.startswith("Production(app)"))
    assert goal.value == pytest.approx(row["ratio"])
    assert " paired (" in goal.measured and "in the rounds 0.50x (3,000 rps vs 6,000 rps)" in goal.measured
    assert any("paired for the goals: hello-production against hello-bare on ping, 2 rounds" in s for s in said)


def test_unknown_workloads_are_one_line_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        ab.main(["flaskprod-default", "guide-option3", "--workloads", "pnig"])
    assert exc.value.code == 2
    assert "unknown workload(s) ['pnig']" in capsys.readouterr().err


def test_the_full_report_lists_each_paired_comparison() -> None:
    runs = [_run("a", "ping", 0, 120), _run("b", "ping", 0, 100)]
    paired = {"a": "a", "b": "b", "rounds": 1, "started": "2026-12-03T12:18:37+00:00", "commit": "abc1234",
              "summary": ab.summarize(runs, "a", "b")}
    lines = report.paired_section([paired])
    assert any("A `a` against B `b`" in line and "ping 1.20x (A won 1 of 1)" in line and "(ab/a-vs-b.md)" in line
               for line in lines)
    assert report.paired_section([]) == []


def test_up_args_name_an_ad_hoc_stack_the_catalogue_does_not_have() -> None:
    stack = ad_hoc("up:--workers 4 --threads 6 --set server.cpu_affinity=true")
    assert stack.name == "flaskprod-up-workers-4-threads-6-set-server.cpu-affinity=true"
    assert stack.up_args == ("--workers", "4", "--threads", "6", "--set", "server.cpu_affinity=true")
    assert (stack.kind, stack.group) == ("up", "flaskprod")
    with pytest.raises(SystemExit, match="gives flaskprod up no arguments"):
        ad_hoc("up:")


def test_a_name_with_a_dot_keeps_it_in_the_file_names(tmp_path: Path) -> None:
    a, b = "flaskprod-default", ad_hoc("up:--set server.threads=8").name
    runs = [_run(a, "ping", 0, 120), _run(b, "ping", 0, 100)]
    results = {"a": a, "b": b, "labels": {a: "A", b: "B"}, "rounds": 1, "started": "s", "finished": "f",
               "commit": "abc1234", "settings": {"duration_s": 6}, "steal_median": 0.0, "steal_max": 0.0,
               "summary": ab.summarize(runs, a, b)}
    ab.write(results, tmp_path)
    stem = "flaskprod-default-vs-flaskprod-up-set-server.threads=8"
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.json", f"{stem}.md"]


def test_a_stack_at_a_revision_imports_flaskprod_from_that_revision_s_tree_and_leaves_none_behind() -> None:
    (stack,) = (s for s in all_stacks(default_kind="uwsgi") if s.name == "flaskprod-default")
    with ab.at_revision(stack, "HEAD~1") as old:
        assert old.name == "flaskprod-default@HEAD~1" and old.source is not None
        env = run.stack_env(run.base_env("x" * 64), old, "sqlite://")
        shown = subprocess.run([sys.executable, "-c", "import flaskprod; print(flaskprod.__file__)"], env=env,
                               capture_output=True, text=True, check=True)  # fmt: skip
        assert Path(shown.stdout.strip()).is_relative_to(old.source)
        tree = old.source.parent
    assert not tree.exists()
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True, check=True)
    assert str(tree) not in listed.stdout


def test_a_revision_that_is_no_commit_is_a_one_line_error() -> None:
    with pytest.raises(SystemExit, match=r"flaskprod-default@no-such-rev: 'no-such-rev' is no commit of .*HEAD~1"):
        ab.main(["flaskprod-default@no-such-rev", "guide-option3", "--rounds", "1"])


def test_a_pair_on_postgresql_alone_starts_each_stack_against_it_once(tmp_path: Path) -> None:
    """With no SQLite workload, each stack warmed up on the first of none (IndexError), and no pair ran."""
    code = ab.main(["flaskprod-default", "guide-option2", "--workloads", "db-pg", "--rounds", "1", "--seconds", "1",
                    "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    results = json.loads((tmp_path / "flaskprod-default-vs-guide-option2.json").read_text())
    (row,) = results["summary"]
    assert row["workload"] == "db-pg" and all(len(v) == 1 and min(v) > 0 for v in row["rps"].values())


@pytest.mark.parametrize(
    ("given", "said"),
    [
        (["--seconds", "0"], "--rounds and --seconds must be at least 1"),  # wrk failed on 0 s: a traceback
        (["--workloads", ","], "--workloads names none; give some of page, ping"),  # was an IndexError
        (["--out", "FILE"], "--out FILE: File exists; give a folder this user can write to"),  # was after the rounds
    ],
)
def test_arguments_that_cannot_give_a_result_are_refused_before_any_stack_starts(
    given: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "results"
    a_file.write_text("mine\n")
    argv = [str(a_file) if arg == "FILE" else arg for arg in given]
    with pytest.raises(SystemExit) as exc:
        ab.main(["flaskprod-default", "guide-option3", "--rounds", "1", *argv])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith(f"python -m benchmarks.ab: error: {said.replace('FILE', str(a_file))}")
    assert "round 1" not in err and a_file.read_text() == "mine\n"


def test_a_stack_that_cannot_start_is_a_one_line_error_in_its_own_words_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = ab.main(["up:--threads x", "hello-bare", "--workloads", "ping", "--rounds", "1", "--seconds", "1",
                    "--out", str(tmp_path)])  # fmt: skip
    assert code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("error: flaskprod-up-threads-x: RuntimeError: flaskprod up exited with 2 before it was")
    assert "invalid value 'x' for server.threads" in last and last.endswith("; nothing written")
    assert list(tmp_path.iterdir()) == []


def _processes_under(folder: Path, program: str = "") -> list[int]:
    """Pids of the processes whose command line names a path in folder (and program, when given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().decode(errors="replace")
                if str(folder) in command and program in command:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_an_interrupted_pair_stops_every_process_it_started_and_writes_nothing(tmp_path: Path) -> None:
    # The stacks' sockets live under TMPDIR: pytest's own folders are too deep for a unix socket's path.
    work, out = Path(tempfile.mkdtemp(prefix="fpab-int-", dir="/tmp")), tmp_path / "out"
    harness = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ab", "hello-bare", "hello-production", "--workloads", "ping",
         "--rounds", "2", "--seconds", "5", "--out", str(out)],
        cwd=REPO, env={**os.environ, "TMPDIR": str(work)}, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert harness.stderr is not None
        first = harness.stderr.readline()
        assert first.startswith("hello-bare (round 1 of 2)"), first
        deadline = time.monotonic() + 90  # the stack's start, on a host busy with other tests
        while not _processes_under(work, "nginx: master") and harness.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert harness.poll() is None, harness.stderr.read()
        assert _processes_under(work, "nginx: master"), "the first stack's nginx never started"
        time.sleep(1)  # into its warm-up or its run under wrk
        harness.send_signal(signal.SIGINT)
        assert harness.wait(timeout=60) == 130
        assert harness.stderr.read().splitlines()[-1] == (
            "interrupted: every process the pair started is stopped; nothing written"
        )
        assert _processes_under(work) == [] and list(out.iterdir()) == []
    finally:
        if harness.poll() is None:
            os.killpg(harness.pid, signal.SIGKILL)
            harness.wait()
        for pid in _processes_under(work):
            os.kill(pid, signal.SIGKILL)
        if harness.stderr is not None:
            harness.stderr.close()
        shutil.rmtree(work, ignore_errors=True)
