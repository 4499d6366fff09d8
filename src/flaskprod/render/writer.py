"""Put rendered files on disk: all of them or none, never over a file the user changed unless asked.

Renderers are pure (spec -> {relative path: text}); this is the one place that touches the disk.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from ..errors import BuildError

State = Literal["created", "updated", "identical"]


@dataclass(frozen=True)
class Change:
    path: Path
    state: State


def _target(out: Path, relative: str) -> Path:
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        # A renderer bug, not a user's mistake; still refuse rather than write outside out.
        raise BuildError(f"refusing to write {relative!r}: outside the output directory {out}")
    return out.joinpath(*pure.parts)


# What a refusal suggests: files flaskprod derives are changed through the spec.
REGENERATE_HINT = "change the spec instead, or pass --force to overwrite"


def plan_changes(out: Path, files: Mapping[str, str], *, force: bool, hint: str = REGENERATE_HINT) -> list[Change]:
    """What writing files under out would do; raises BuildError, before anything is written, when a
    file exists with other content and force is off, or a path is taken by a directory."""
    changes: list[Change] = []
    conflicts: list[str] = []
    for relative, text in sorted(files.items()):
        path = _target(out, relative)
        if path.is_dir():
            raise BuildError(f"{path} is a directory where flaskprod writes a file; move it away")
        if not path.exists():
            changes.append(Change(path, "created"))
            continue
        try:
            same = path.read_text(encoding="utf-8") == text
        except (OSError, UnicodeDecodeError):
            same = False
        if not same and not force:
            conflicts.append(str(path))
        changes.append(Change(path, "identical" if same else "updated"))
    if conflicts:
        shown = ", ".join(conflicts[:3]) + (f" and {len(conflicts) - 3} more" if len(conflicts) > 3 else "")
        differ = "differ" if len(conflicts) > 1 else "differs"
        raise BuildError(f"{shown} {differ} from what flaskprod writes: nothing was written; {hint}")
    return changes


def write_files(
    out: Path, files: Mapping[str, str], *, force: bool = False, dry_run: bool = False, hint: str = REGENERATE_HINT
) -> list[Change]:
    """Write files under out (checked first, so a refusal writes nothing); each file is replaced atomically."""
    changes = plan_changes(out, files, force=force, hint=hint)
    if dry_run:
        return changes
    by_path = {_target(out, relative): text for relative, text in files.items()}
    for change in changes:
        if change.state == "identical":
            continue
        change.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=change.path.parent, prefix=f".{change.path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(by_path[change.path])
            os.chmod(tmp, 0o644)
            os.replace(tmp, change.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return changes
