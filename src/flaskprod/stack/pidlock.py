"""A lock file that names the process holding it: one `up` per folder, and a refusal naming the other one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO


class HeldElsewhere(Exception):
    """Another process holds the lock; holder is the pid it wrote ("unknown" when it wrote none yet)."""

    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def hold(path: Path) -> IO[str]:
    """path opened, locked (flock, released when the process ends however it ends) and naming this process.

    OSError when it cannot be opened; HeldElsewhere when another process holds it."""
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise HeldElsewhere(holder) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle
