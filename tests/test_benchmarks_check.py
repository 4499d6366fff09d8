"""benchmarks.check: `flaskprod check` timed on a generated project, this tree beside another revision."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks import check
from benchmarks.stacks import REPO


def test_both_versions_alternate_on_a_project_check_passes_and_no_worktree_is_left(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert check.main(["--modules", "6", "--views", "2", "--rounds", "2", "--rev", "HEAD", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    old = f"HEAD ({commit})"
    # The order flips every round; a run that failed (check exit 1 on the project) would have stopped it.
    assert [run["version"] for run in results["runs"]] == ["this tree", old, old, "this tree"]
    assert all(run["seconds"] > 0 and run["rss_mib"] > 10 for run in results["runs"])
    # app.py (12 lines) and 6 modules of 5 lines and 2 views of 7 lines, with an __init__.py.
    assert results["project"] == {"modules": 6, "views": 2, "lines": 12 + 6 * (5 + 2 * 7)}
    assert set(results["summary"]) == {"this tree", old}
    assert f"| {old} |" in (out / "README.md").read_text()
    listed = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True, check=True)
    assert "fpab-tree" not in listed.stdout


def test_the_generated_project_has_the_size_asked_for(tmp_path: Path) -> None:
    check.write_project(tmp_path, modules=41, views=3)
    modules = [p for p in tmp_path.rglob("mod*.py")]
    assert len(modules) == 41 and len(list(tmp_path.glob("pkg*"))) == 3  # 20 to a package
    assert all(p.read_text().count("@bp.route") == 3 for p in modules)
