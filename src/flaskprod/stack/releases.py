"""Releases: `flaskprod up` runs a copy of the project, not the working tree, so `deploy` can start the next
copy beside the running one and `rollback` can go back to the one before.

As in Capistrano's releases/ and shared/: code, templates and static files are copied once per release
and never change after; the app's data (Flask's instance folder, SQLite files, .env files, keys) stays in
the project, and each release links to it, so every release reads and writes the same data.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import ServerError, SpecError
from ..render.writer import RECORD_GLOB

# Never part of a release: version control, virtualenvs, caches, flaskprod's own state; and any
# virtualenv or deployment folder by what it holds (see _not_the_apps).
BUILT_IN_EXCLUDES = (
    ".git",
    ".hg",
    ".svn",
    ".venv*",
    "venv",
    ".tox",
    ".nox",
    "__pycache__",
    "*.py[cod]",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".flaskprod",
    "node_modules",
    "*.egg-info",
)
# Data, not code: linked from each release to the project, so a rollback keeps what the app wrote.
SHARED = ("instance", "*.db", "*.sqlite", "*.sqlite3", ".env", ".env.*", "*.pem", "*.key")
MANIFEST = "release.json"
# The highest number a release that never served took (Releases.remove): its folder goes, its number stays taken.
LAST_NUMBER = ".last-number"
# A copy under way (Releases.create), renamed to its number once whole; one an `up` killed meanwhile left is swept
# at the next start (StackDir.leftovers).
PARTIAL = ".{number}.partial"
# Two releases run at once while `flaskprod deploy` switches, and while a canary runs: what they hold
# together (database connections) is sized for both.
RELEASES_AT_ONCE = 2


def _matches(relative: str, patterns: Iterable[str]) -> bool:
    """gitignore's two cases: a pattern with a slash (but a trailing one) matches the path from the project
    root, one without matches a name at any depth."""
    name = relative.rsplit("/", 1)[-1]
    for pattern in patterns:
        pattern = pattern.rstrip("/")
        if "/" in pattern:
            if fnmatch.fnmatchcase(relative, pattern.lstrip("/")):
                return True
        elif fnmatch.fnmatchcase(name, pattern):
            return True
    return False


def exclude_patterns(user: str | None) -> tuple[str, ...]:
    """The built-in excludes plus release.exclude's (space or comma separated)."""
    given = [item for item in (user or "").replace(",", " ").split() if item]
    return (*BUILT_IN_EXCLUDES, *given)


@dataclass(frozen=True)
class Release:
    """One copy of the project: releases/<number>/, whose app runs from app_dir inside it."""

    number: int
    path: Path
    created: str
    files: int  # copied: the project's files as a user counts them, not the data linked
    source: str
    linked: tuple[str, ...] = ()  # the project's data each release links to (SHARED), relative to it

    @property
    def label(self) -> str:
        return f"release {self.number} ({self.created})"


@dataclass(frozen=True)
class Releases:
    """The releases under one directory, numbered from 1 in the order they were made."""

    path: Path

    def __iter__(self) -> Iterator[Release]:
        numbers = sorted(int(p.name) for p in self.path.glob("*") if p.name.isdigit() and (p / MANIFEST).is_file())
        for number in numbers:
            yield self.get(number)

    def get(self, number: int) -> Release:
        path = self.path / str(number)
        try:
            info = json.loads((path / MANIFEST).read_text())
        except (OSError, ValueError):
            known = ", ".join(str(r.number) for r in self) or "none"
            raise SpecError(f"release {number} does not exist under {self.path} (there are: {known})") from None
        return Release(
            number=number,
            path=path,
            created=info["created"],
            files=info["files"],
            source=info["source"],
            linked=tuple(info.get("linked", ())),  # a release made before flaskprod recorded them
        )

    def create(self, source: Path, *, excludes: tuple[str, ...], skip: Iterable[Path], max_mb: int) -> Release:
        """Copy source into the next release directory; all or nothing (a failed copy leaves no release)."""
        source = source.resolve()
        skipped = {p.resolve() for p in skip}
        plan = list(_walk(source, excludes, skipped))
        size = sum(entry.size for entry in plan)
        if size > max_mb * 1024 * 1024:
            raise ServerError(
                f"the project {source} is {size / 2**20:.0f} MiB to copy into a release, over release.max_mb = "
                f"{max_mb}: add what holds the most ({_largest(plan)}) to release.exclude, or raise release.max_mb"
            )
        self.path.mkdir(parents=True, exist_ok=True)
        number = self.next_number()
        final = self.path / str(number)
        partial = self.path / PARTIAL.format(number=number)
        shutil.rmtree(partial, ignore_errors=True)
        try:
            for entry in plan:
                target = partial / entry.relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if entry.shared:
                    target.symlink_to(entry.source, target_is_directory=entry.source.is_dir())
                elif entry.source.is_symlink():
                    target.symlink_to(os.readlink(entry.source))
                else:
                    shutil.copy2(entry.source, target)
            created = time.strftime("%Y-%m-%d %H:%M:%S")
            copied = [entry for entry in plan if not entry.shared]
            linked = [entry.relative for entry in plan if entry.shared]
            manifest = {"created": created, "files": len(copied), "linked": linked, "source": str(source)}
            (partial / MANIFEST).write_text(json.dumps(manifest) + "\n")
            os.replace(partial, final)
        except OSError as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise ServerError(f"could not copy {source} into a release: {exc}") from None
        return self.get(number)

    def next_number(self) -> int:
        """The number the next release made here takes."""
        number = max(self._last_number(), *(r.number for r in self), 0) + 1
        while (self.path / str(number)).exists():  # a copy that failed half-way, or one without a manifest
            number += 1
        return number

    def prune(self, keep: int, running: Iterable[Release]) -> list[int]:
        """Delete the oldest releases beyond keep, never one of running (those running, and rollback's target),
        and the folders of releases that never served; the numbers of the releases deleted."""
        protected = {r.number for r in running}
        numbers = [r.number for r in self]
        removable = [n for n in numbers[: max(0, len(numbers) - keep)] if n not in protected]
        for number in removable:
            shutil.rmtree(self.path / str(number), ignore_errors=True)
        # Left empty by a flaskprod before remove() deleted them: each number stays taken as remove's does.
        for folder in self.path.glob("[0-9]*"):
            if folder.name.isdigit() and int(folder.name) not in numbers and not (folder / MANIFEST).exists():
                self.remove(int(folder.name))
        return removable

    def remove(self, number: int) -> None:
        """Delete one release: one that never served, so that it neither counts towards release.keep nor
        becomes a rollback's target, nor leaves a folder behind. Its number stays taken (LAST_NUMBER), so that
        the logs never name two releases by one number."""
        if number > self._last_number():
            staged = self.path / f"{LAST_NUMBER}.new"
            staged.write_text(f"{number}\n")
            staged.replace(self.path / LAST_NUMBER)
        shutil.rmtree(self.path / str(number), ignore_errors=True)

    def _last_number(self) -> int:
        try:
            return int((self.path / LAST_NUMBER).read_text())
        except (OSError, ValueError):
            return 0

    def before(self, number: int) -> Release | None:
        """The newest release older than number."""
        older = [r for r in self if r.number < number]
        return older[-1] if older else None


# What SQLite keeps beside a database while it is open: moved with it, or the two would part.
_SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def adopt_data(release: Release, project: Path) -> list[str]:
    """Move data the app wrote inside release (a SQLite file made from a path relative to its code) into the
    project, and link it back: the release keeps working on the same files (renamed, not copied, so open
    handles and locks follow them), and the next release links them as it links the project's other data.
    The relative paths moved; ServerError, before anything moves, when the project has a file of that name."""
    found = []
    for directory, _dirs, files in os.walk(release.path):
        for name in sorted(files):
            path = Path(directory) / name
            relative = path.relative_to(release.path).as_posix()
            if _matches(relative, SHARED) and not path.is_symlink():
                found.append(relative)
    moving = [r + tail for r in found for tail in ("", *_SQLITE_COMPANIONS) if (release.path / (r + tail)).exists()]
    taken = [r for r in moving if (project / r).exists() or (project / r).is_symlink()]
    if taken:
        raise ServerError(
            f"release {release.number} holds {taken[0]}, data its app wrote inside the release, and the project has "
            f"its own {taken[0]}: keep one of them (in {project}), then deploy again"
        )
    for relative in moving:
        source, target = release.path / relative, project / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
        source.symlink_to(target)
    return found


@dataclass(frozen=True)
class _Entry:
    source: Path
    relative: str
    size: int
    shared: bool


def _not_the_apps(directory: Path) -> bool:
    """A virtualenv by any name (it holds pyvenv.cfg), or a folder `flaskprod build` wrote (its record)."""
    return (directory / "pyvenv.cfg").is_file() or next(directory.glob(RECORD_GLOB), None) is not None


def _walk(root: Path, excludes: tuple[str, ...], skipped: set[Path]) -> Iterator[_Entry]:
    """Every file to copy and every shared path to link, in a stable order."""
    for directory, dirs, files in os.walk(root):
        base = Path(directory)
        keep_dirs = []
        for name in sorted(dirs):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if path in skipped or _matches(relative, excludes) or _not_the_apps(path):
                continue
            if _matches(relative, SHARED) or path.is_symlink():
                yield _Entry(path, relative, 0, shared=_matches(relative, SHARED))
                continue
            keep_dirs.append(name)
        dirs[:] = keep_dirs
        for name in sorted(files):
            path = base / name
            relative = path.relative_to(root).as_posix()
            if path in skipped or _matches(relative, excludes):
                continue
            shared = _matches(relative, SHARED)
            if not (shared or path.is_symlink() or path.is_file()):
                continue  # a socket or a FIFO: no content to copy, and opening a FIFO would block
            size = 0 if shared or path.is_symlink() else path.stat().st_size
            yield _Entry(path, relative, size, shared=shared)


def _largest(plan: list[_Entry]) -> str:
    """The top-level folders and files holding the most copied bytes, for the error that asks to exclude some:
    up to three, those of a MiB or more when any are (an app.py of 0 MiB is no help), never what is shared
    rather than copied (the instance folder), which costs a release nothing."""
    totals: dict[str, int] = {}
    for entry in plan:
        if not entry.shared:
            top, slash, _ = entry.relative.partition("/")
            name = top + slash  # media/ for a folder
            totals[name] = totals.get(name, 0) + entry.size
    biggest = sorted(totals.items(), key=lambda item: -item[1])[:3]
    shown = [(name, size) for name, size in biggest if size >= 2**20] or biggest
    return ", ".join(f"{name} {size / 2**20:.0f} MiB" for name, size in shown)
