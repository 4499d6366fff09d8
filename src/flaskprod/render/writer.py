"""Put rendered files on disk: all of them or none, never over a file the user changed unless asked.

Renderers are pure (spec -> {relative path: text}); this is the one place that touches the disk. A
record of what was written (`sha256sum` format) lets the next run replace its own files after the spec
changed, remove the ones it no longer writes, and still stop at a file changed by hand.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..errors import BuildError

State = Literal["created", "updated", "identical", "removed", "kept"]


@dataclass(frozen=True)
class Change:
    path: Path
    state: State
    # Changed since this target last wrote it: by hand, or to what another target (theirs) wrote. Without
    # --force such a file stops the run, unless flaskprod no longer writes it (kept).
    by_hand: bool = False
    theirs: str | None = None


class Refusal(BuildError):
    """A file in the way of the run (changed by hand, or another target's), found after planning every file:
    changes is that whole plan, so a dry run can show it before the refusal."""

    def __init__(self, message: str, changes: list[Change]) -> None:
        super().__init__(message)
        self.changes = changes


def _target(out: Path, relative: str) -> Path:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        # A renderer bug, not a user's mistake; still refuse rather than write outside out.
        raise BuildError(f"refusing to write {relative!r}: outside the output directory {out}")
    return out.joinpath(*pure.parts)


# The record of what `flaskprod build` wrote for one target (two may share an --out); a release leaves
# out a folder holding one.
RECORD = ".flaskprod-{target}.sha256"
RECORD_GLOB = RECORD.format(target="*")
_RECORD_PREFIX, _, _RECORD_SUFFIX = RECORD.partition("{target}")

# What a refusal suggests: files flaskprod derives are changed through the spec.
REGENERATE_HINT = "change the spec instead, or pass --force to overwrite"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _on_disk(path: Path) -> str | None:
    try:
        return _digest(path.read_bytes())
    except OSError:
        return None


def read_record(path: Path) -> dict[str, str]:
    """{relative path: sha256} of the files the last run wrote; nothing for a missing or foreign file."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return {}
    record = {}
    for line in lines:
        digest, sep, relative = line.partition("  ")
        if sep and len(digest) == 64:
            record[relative] = digest
    return record


def plan_changes(
    out: Path,
    files: Mapping[str, str],
    *,
    force: bool,
    hint: str = REGENERATE_HINT,
    written: Mapping[str, str] | None = None,
    others: Mapping[str, Mapping[str, str]] | None = None,
) -> list[Change]:
    """What writing files under out would do; raises BuildError when a path is taken by a directory, and
    Refusal, holding the whole plan, when a file exists with other content and force is off.

    written is what the last run wrote ({relative path: sha256}): a file still as it was written is
    flaskprod's to replace, and one it no longer writes is removed; either, changed by hand since, stops
    the run (or is kept, when flaskprod no longer writes it) unless force is on. others are what other targets
    wrote into out ({target: record}): a file still as one of them wrote it is named as that target's.
    """
    written = written or {}
    changes: list[Change] = []
    conflicts: list[str] = []
    theirs: dict[str, list[str]] = {}
    for relative, text in sorted(files.items()):
        path = _target(out, relative)
        if path.is_dir():
            raise BuildError(f"{path} is a directory where flaskprod writes a file; move it away")
        if blocked := _file_in_the_way(path):
            raise BuildError(
                f"{blocked} is a file where flaskprod needs a folder (for {path}): nothing was written; move it "
                "away, or write elsewhere (--out)"
            )
        if not path.exists():
            changes.append(Change(path, "created"))
            continue
        current = _on_disk(path)
        if current == _digest(text.encode("utf-8")):
            changes.append(Change(path, "identical"))
            continue
        if current == written.get(relative):
            changes.append(Change(path, "updated"))
            continue
        owner = next((target for target, record in (others or {}).items() if record.get(relative) == current), None)
        changes.append(Change(path, "updated", by_hand=owner is None, theirs=owner))
        if not force:
            (theirs.setdefault(owner, []) if owner else conflicts).append(str(path))
    for relative in sorted(set(written) - set(files)):
        path = _target(out, relative)
        if path.is_file():
            by_hand = _on_disk(path) != written[relative]
            changes.append(Change(path, "removed" if force or not by_hand else "kept", by_hand=by_hand))
    if theirs:
        owner, paths = next(iter(theirs.items()))
        raise Refusal(
            f"{out} holds the files of --target {owner}, and {_listed(paths)} from what this target writes: nothing "
            "was written; give each target its own --out, or pass --force to replace them",
            changes,
        )
    if conflicts:
        raise Refusal(f"{_listed(conflicts)} from what flaskprod writes: nothing was written; {hint}", changes)
    return changes


def _listed(paths: list[str]) -> str:
    """'a, b, c and 2 more differ', 'a differs'."""
    shown = ", ".join(paths[:3]) + (f" and {len(paths) - 3} more" if len(paths) > 3 else "")
    return f"{shown} {'differ' if len(paths) > 1 else 'differs'}"


def other_records(out: Path, record: str) -> dict[str, dict[str, str]]:
    """{target: record} of the other targets `flaskprod build` wrote into out."""
    if not out.is_dir():
        return {}
    return {
        path.name.removeprefix(_RECORD_PREFIX).removesuffix(_RECORD_SUFFIX): read_record(path)
        for path in sorted(out.glob(RECORD_GLOB))
        if path.name != record
    }


def _file_in_the_way(path: Path) -> Path | None:
    """The first of path's parents that exists but is no folder: mkdir would fail on it with a bare "File exists"."""
    return next((parent for parent in reversed(path.parents) if parent.exists() and not parent.is_dir()), None)


def write_files(
    out: Path,
    files: Mapping[str, str],
    *,
    force: bool = False,
    dry_run: bool = False,
    hint: str = REGENERATE_HINT,
    record: str | None = None,
    elsewhere: str = "write elsewhere (--out)",
) -> list[Change]:
    """Write files under out, all or none: checked first, then every new text staged beside its file, and
    only when all are staged moved into place (a full disk or a folder it may not write leaves nothing).

    record names a file under out that keeps what was written, for the next run (see plan_changes). elsewhere is
    the other way out of a path that cannot be written, as the command offers it ("" for none)."""
    record_path = _target(out, record) if record else None
    written = read_record(record_path) if record_path else {}
    others = other_records(out, record) if record else {}
    changes = plan_changes(out, files, force=force, hint=hint, written=written, others=others)
    if dry_run:
        return changes
    texts = {_target(out, relative): text for relative, text in files.items()}
    if record_path:
        # A file kept because it was changed by hand leaves the record: it is the user's now.
        digests = sorted((relative, _digest(text.encode("utf-8"))) for relative, text in files.items())
        texts[record_path] = "".join(f"{digest}  {relative}\n" for relative, digest in digests)
    writes = [c.path for c in changes if c.state in ("created", "updated")]
    if record_path:
        writes.append(record_path)
    removed = [c.path for c in changes if c.state == "removed"]
    with _Staged(elsewhere) as staged:
        for path in writes:
            staged.add(path, texts[path])
        for path in removed:
            staged.remove(path)
        staged.commit()
    for path in removed:
        _remove_empty_parents(path.parent, out)
    return changes


class _Staged:
    """New texts written to temporary files beside their targets; commit moves them all into place and removes
    the files no longer written, and anything not committed (an error midway) is removed with the folders made
    for it.

    Each file to be replaced or removed is first linked to a backup beside it, so a move that fails midway (a file
    that may not be replaced, Ctrl-C) puts back the ones changed before it: all or none. Linking also finds such a
    file before anything changes, as os.link refuses an immutable file as os.replace and unlink would."""

    def __init__(self, elsewhere: str) -> None:
        self.elsewhere = elsewhere
        self.temps: list[tuple[str, Path]] = []
        self.removals: list[Path] = []
        self.backups: dict[Path, Path] = {}  # {file to be replaced or removed: a hard link to its current content}
        self.made: list[Path] = []

    def __enter__(self) -> _Staged:
        return self

    def add(self, path: Path, text: str) -> None:
        failed = path  # named in an error: the file, not the temporary beside it that the user never chose
        try:
            for parent in reversed([path.parent, *path.parent.parents]):
                if not parent.is_dir():
                    failed = parent
                    parent.mkdir()
                    self.made.append(parent)
            failed = path
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            self.temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.chmod(tmp, 0o644)
        except OSError as exc:
            raise self._cannot(exc, failed) from None
        if path.is_file():
            self._back_up(path)

    def remove(self, path: Path) -> None:
        self._back_up(path, verb="remove")
        self.removals.append(path)

    def _back_up(self, path: Path, verb: str = "write") -> None:
        backup = path.with_name(f".{path.name}.{secrets.token_hex(4)}.old")
        try:
            os.link(path, backup, follow_symlinks=False)
        except OSError as exc:  # named as the file, not the backup's name the user never chose
            raise self._cannot(exc, path, verb) from None
        self.backups[path] = backup

    def commit(self) -> None:
        moved: list[Path] = []
        path, verb = Path(), "write"
        try:
            for tmp, path in self.temps:
                os.replace(tmp, path)
                moved.append(path)
            verb = "remove"
            for path in self.removals:
                path.unlink()
                moved.append(path)
        except BaseException as exc:
            self._put_back(moved)
            if isinstance(exc, OSError):
                raise self._cannot(exc, path, verb) from None
            raise
        self.temps = []
        self.made = []

    def _put_back(self, moved: list[Path]) -> None:
        """The files changed before a failure: their old content back, or gone where there was none."""
        for path in reversed(moved):
            with contextlib.suppress(OSError):
                if path in self.backups:
                    os.replace(self.backups.pop(path), path)
                else:
                    path.unlink()

    def __exit__(self, *exc: object) -> None:
        for tmp, _ in self.temps:
            Path(tmp).unlink(missing_ok=True)
        for backup in self.backups.values():
            backup.unlink(missing_ok=True)
        for directory in reversed(self.made):
            with contextlib.suppress(OSError):  # something else was put there meanwhile
                directory.rmdir()

    def _cannot(self, exc: OSError, path: Path, verb: str = "write") -> BuildError:
        fix = "fix that path (a file where a folder goes, its permissions)"
        return BuildError(
            f"cannot {verb} {path}: {exc.strerror or exc}; nothing was written: {fix}"
            + (f" or {self.elsewhere}" if self.elsewhere else "")
        )


def _remove_empty_parents(directory: Path, out: Path) -> None:
    while directory != out and out in directory.parents:
        try:
            directory.rmdir()
        except OSError:  # not empty: something else lives there
            return
        directory = directory.parent
