"""flaskprod's source as it was at a git revision: a worktree, removed afterwards."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .stacks import REPO


@contextlib.contextmanager
def source_at(rev: str, named: str) -> Iterator[tuple[Path, str]]:
    """(the src folder of a worktree at rev, rev's short hash); a SystemExit naming named@rev when rev is no
    commit."""
    found = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--short", f"{rev}^{{commit}}"],
                           capture_output=True, text=True)  # fmt: skip
    if found.returncode != 0:
        raise SystemExit(f"{named}@{rev}: {rev!r} is no commit of {REPO}; write e.g. {named}@HEAD~1")
    commit = found.stdout.strip()
    tree = Path(tempfile.mkdtemp(prefix="fpab-tree-"))
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "--quiet", str(tree), commit], check=True)
    try:
        yield tree / "src", commit
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], check=False)
        shutil.rmtree(tree, ignore_errors=True)
