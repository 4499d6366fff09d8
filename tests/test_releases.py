"""Releases: what a copy of the project holds, what it links, and that a failed copy leaves nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from flaskprod.errors import ServerError, SpecError
from flaskprod.stack.releases import Releases, adopt_data, exclude_patterns


def project(root: Path) -> Path:
    files = {
        "app.py": "app = None\n",
        "pkg/__init__.py": "",
        "pkg/static/site.css": "body {}\n",
        "pkg/__pycache__/x.cpython-311.pyc": "",
        ".git/HEAD": "ref: refs/heads/main\n",
        ".venv/bin/python": "",
        ".venv-tools/bin/checkov": "",
        "node_modules/left-pad/index.js": "",
        "media/big.bin": "x" * 4096,
        "instance/data.sqlite3": "rows",
        "notes.db": "rows",
        ".env": "SECRET=1\n",
        ".flaskprod/run/nginx.conf": "",
        "env/pyvenv.cfg": "home = /usr/bin\n",  # a virtualenv by another name
        "env/lib/site.py": "",
        "deploy/k8s/.flaskprod-k8s.sha256": "",  # what `flaskprod build` wrote
        "deploy/k8s/deployment.yaml": "",
        "deploy/notes/plan.md": "",  # the user's own, in a folder build did not write
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    os.mkfifo(root / "pkg" / "pipe")
    return root


def listing(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*")}


def test_a_release_copies_code_and_links_data(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    releases = Releases(tmp_path / "releases")
    release = releases.create(root, excludes=exclude_patterns("media"), skip=[], max_mb=10)
    assert release.number == 1 and release.path == tmp_path / "releases" / "1"
    assert listing(release.path) == {
        "app.py",
        "pkg",
        "pkg/__init__.py",
        "pkg/static",
        "pkg/static/site.css",
        "instance",
        "notes.db",
        ".env",
        "release.json",
        "deploy",
        "deploy/notes",
        "deploy/notes/plan.md",
    }
    # Code is a copy: editing the project later does not change the release.
    (root / "app.py").write_text("app = 'edited'\n")
    assert (release.path / "app.py").read_text() == "app = None\n"
    # Data is the project's own, through a link: what one release writes the next one reads.
    for shared in ("instance", "notes.db", ".env"):
        assert (release.path / shared).is_symlink()
        assert (release.path / shared).resolve() == (root / shared).resolve()
    (release.path / "instance" / "new.txt").write_text("written by release 1")
    assert (root / "instance" / "new.txt").read_text() == "written by release 1"
    assert release.files == 4 and release.source == str(root)  # copied; the data is linked
    assert release.linked == ("instance", ".env", "notes.db")


def test_release_numbers_grow_and_pruning_spares_the_running_ones(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    releases = Releases(tmp_path / "releases")
    made = [releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10) for _ in range(5)]
    assert [r.number for r in made] == [1, 2, 3, 4, 5]
    assert releases.before(5) == made[3] and releases.before(1) is None
    # Release 1 still runs (a rollback went there): it stays, the oldest others go.
    assert releases.prune(2, running=[made[0]]) == [2, 3]
    assert [r.number for r in releases] == [1, 4, 5]
    with pytest.raises(SpecError, match=r"release 2 does not exist under .* \(there are: 1, 4, 5\)"):
        releases.get(2)


def test_a_project_over_max_mb_names_its_largest_folders(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    (root / "media" / "big.bin").write_bytes(b"x" * (3 * 2**20))
    (root / "dump.sql").write_bytes(b"x" * (2 * 2**20))
    releases = Releases(tmp_path / "releases")
    with pytest.raises(ServerError) as error:
        releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=2)
    # What is a MiB or more, folders marked as such; not the app's small files, nor the shared instance folder.
    assert "over release.max_mb = 2: add what holds the most (media/ 3 MiB, dump.sql 2 MiB) to release.exclude" in (
        str(error.value)
    )
    assert "\n" not in str(error.value)
    assert list(releases) == []


def test_a_failed_copy_leaves_no_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = project(tmp_path / "proj")
    releases = Releases(tmp_path / "releases")
    copied: list[Any] = []

    def copy_then_fail(src: Any, dst: Any) -> None:
        if len(copied) == 2:
            raise OSError(28, "No space left on device")
        copied.append(src)
        shutil.copyfile(src, dst)

    monkeypatch.setattr("flaskprod.stack.releases.shutil.copy2", copy_then_fail)
    with pytest.raises(ServerError, match=r"could not copy .* into a release: \[Errno 28\] No space left on device"):
        releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10)
    assert list((tmp_path / "releases").iterdir()) == []
    monkeypatch.undo()
    assert releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10).number == 1


def test_skipped_paths_and_patterns_with_a_slash(tmp_path: Path) -> None:
    root = project(tmp_path / "proj")
    (root / "run").mkdir()
    (root / "run" / "app.sock.txt").write_text("")
    (root / "pkg" / "media").mkdir()
    (root / "pkg" / "media" / "keep.txt").write_text("")
    releases = Releases(tmp_path / "releases")
    # "/media" anchors at the root: pkg/media stays; the run directory is skipped by path.
    release = releases.create(root, excludes=exclude_patterns("/media, pkg/static"), skip=[root / "run"], max_mb=10)
    names = listing(release.path)
    assert "pkg/media/keep.txt" in names
    assert not any(name.startswith(("media", "run", "pkg/static")) for name in names)


def test_data_the_app_wrote_inside_a_release_moves_to_the_project(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("app = None\n")
    release = Releases(tmp_path / "releases").create(root, excludes=(), skip=[], max_mb=10)
    # A SQLite file made from a path relative to the app's code, open in the running release, with its WAL.
    (release.path / "pkg" / "app.db").write_text("rows")
    (release.path / "pkg" / "app.db-wal").write_text("pending")
    with (release.path / "pkg" / "app.db").open("a") as open_handle:
        assert adopt_data(release, root) == ["pkg/app.db"]
        open_handle.write(" and more")  # the running app's handle follows the file it had open
    assert (root / "pkg" / "app.db").read_text() == "rows and more"
    assert (root / "pkg" / "app.db-wal").read_text() == "pending"
    for name in ("app.db", "app.db-wal"):
        assert (release.path / "pkg" / name).resolve() == (root / "pkg" / name).resolve()
    # The next release links the same file, as it links the project's other data.
    following = Releases(tmp_path / "releases").create(root, excludes=(), skip=[], max_mb=10)
    assert (following.path / "pkg" / "app.db").read_text() == "rows and more"
    assert adopt_data(release, root) == []  # nothing left inside


def test_data_inside_a_release_and_in_the_project_is_not_merged(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "app.py").write_text("app = None\n")
    release = Releases(tmp_path / "releases").create(root, excludes=(), skip=[], max_mb=10)
    (root / "app.db").write_text("the project's")
    (release.path / "app.db").unlink(missing_ok=True)
    (release.path / "app.db").write_text("the release's")
    with pytest.raises(ServerError) as refused:
        adopt_data(release, root)
    assert str(refused.value) == (
        f"release 1 holds app.db, data its app wrote inside the release, and the project has its own app.db: "
        f"keep one of them (in {root}), then deploy again"
    )
    assert (release.path / "app.db").read_text() == "the release's" and not (release.path / "app.db").is_symlink()


def test_a_release_that_never_served_leaves_no_folder_and_its_number_stays_taken(tmp_path: Path) -> None:
    # Before, remove() left the release's folder, empty, to keep its number: one more for every failed deploy.
    root = project(tmp_path / "proj")
    releases = Releases(tmp_path / "releases")
    first = releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10)
    failed = releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10)
    releases.remove(failed.number)
    assert not failed.path.exists()
    # The next release is 3: the logs that named release 2 never name another.
    assert releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10).number == 3
    assert sorted(p.name for p in releases.path.iterdir() if not p.name.startswith(".")) == ["1", "3"]
    # Empty folders an earlier flaskprod left for its failed releases go with the next prune; their numbers stay taken.
    (releases.path / "4").mkdir()
    (releases.path / "5").mkdir()
    assert releases.prune(5, running=[first]) == []
    assert sorted(p.name for p in releases.path.iterdir() if not p.name.startswith(".")) == ["1", "3"]
    assert releases.create(root, excludes=exclude_patterns(None), skip=[], max_mb=10).number == 6
    assert [r.number for r in releases] == [1, 3, 6]
