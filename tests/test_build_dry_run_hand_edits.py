"""`flaskprod build --dry-run` beside a file changed by hand: it lists every change, marks the hand edit, ends with
the real build's refusal, and writes nothing (with --force: lists the edit as overwritten, and exits 0)."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from flaskprod.render.writer import Refusal, write_files
from tests.support import BIN, copy_taskboard
from tests.test_serve import clean_env

FLASKPROD = str(BIN / "flaskprod")


def run_build(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FLASKPROD, "build", "-t", "systemd", *args], cwd=project, env=clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def tree_digests(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under folder, dotfiles (the build's record) included."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.integration
def test_dry_run_lists_every_change_and_marks_the_hand_edit(tmp_path: Path) -> None:
    project = copy_taskboard(tmp_path / "taskboard")
    assert (built := run_build(project)).returncode == 0, built.stderr
    edited = project / "deploy/systemd/taskboard-nginx.service"
    edited.write_text(edited.read_text() + "# mine\n")
    with (project / "flaskprod.toml").open("a") as toml:  # a spec change that rewrites taskboard.service
        toml.write("\n[server]\nthreads = 4\n")
    before = tree_digests(project / "deploy")

    dry = run_build(project, "--dry-run")
    refused = "changed by hand: build stops here unless --force"
    assert f"  would update deploy/systemd/taskboard-nginx.service  ({refused})\n" in dry.stdout, dry.stdout
    assert "  would update deploy/systemd/taskboard.service\n" in dry.stdout, dry.stdout
    assert "  identical    deploy/systemd/nginx/nginx.conf\n" in dry.stdout, dry.stdout
    assert dry.stdout.count(refused) == 1 and "next:" not in dry.stdout, dry.stdout
    assert tree_digests(project / "deploy") == before
    # The same one line and status as the build itself gives, so a script gating on --dry-run sees the refusal.
    real = run_build(project)
    assert (dry.returncode, dry.stderr) == (real.returncode, real.stderr) == (2, real.stderr)
    assert real.stderr == (f"Error: {edited} differs from what flaskprod writes: nothing was written; change the spec "
                           "instead, or pass --force to overwrite\n")  # fmt: skip
    assert tree_digests(project / "deploy") == before

    forced = run_build(project, "--dry-run", "--force")
    assert (forced.returncode, forced.stderr) == (0, ""), forced.stderr
    assert "  would overwrite deploy/systemd/taskboard-nginx.service  (changed by hand)\n" in forced.stdout
    assert "  would update deploy/systemd/taskboard.service\n" in forced.stdout, forced.stdout
    assert tree_digests(project / "deploy") == before


def test_a_dry_run_refusal_carries_the_whole_plan(tmp_path: Path) -> None:
    """The writer plans every file before it refuses: the refusal holds the plan, each hand edit marked."""
    write_files(tmp_path, {"a.txt": "one\n", "b.txt": "two\n", "gone.txt": "x\n"}, record="r")
    (tmp_path / "b.txt").write_text("mine\n")
    before = tree_digests(tmp_path)
    with pytest.raises(Refusal) as refused:
        write_files(tmp_path, {"a.txt": "ONE\n", "b.txt": "TWO\n", "c.txt": "new\n"}, record="r", dry_run=True)
    planned = [(c.path.name, c.state, c.by_hand) for c in refused.value.changes]
    assert planned == [
        ("a.txt", "updated", False),
        ("b.txt", "updated", True),
        ("c.txt", "created", False),
        ("gone.txt", "removed", False),
    ]
    assert str(refused.value).startswith(f"{tmp_path / 'b.txt'} differs from what flaskprod writes: nothing was")
    assert tree_digests(tmp_path) == before
