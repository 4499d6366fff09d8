"""The folder a benchmark writes its results to, tried before anything is measured.

A full run takes most of an hour: one that ends on a folder it cannot write loses every figure to a
traceback. So each command makes its --out folder and writes a file there first, and refuses at once.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def cannot_write(folder: Path) -> str | None:
    """Why results cannot be written to folder (made when missing, parents too), or None when they can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return f"--out {folder}: {exc.strerror or exc}; give a folder this user can write to"
    return None

