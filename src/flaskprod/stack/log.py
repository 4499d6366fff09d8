"""The supervisor's own log lines on stderr: JSON like the app's, or text, as logging.format says."""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Literal, TextIO

from ..servers.jsonrelay import ecs_line

LOGGER = "flaskprod.up"


class EventLog:
    """One line per event; never called from a signal handler."""

    def __init__(self, fmt: Literal["json", "text"]) -> None:
        self.fmt = fmt

    def __call__(self, message: str, *, level: str = "info", **fields: Any) -> None:
        if self.fmt == "json":
            line = ecs_line(message, time.time(), LOGGER, level, **fields)
        else:
            extra = " ".join(f"{k}={v}" for k, v in fields.items())
            line = f"flaskprod up: {message}" + (f" ({extra})" if extra else "")
        try:
            sys.stderr.write(f"{line}\n")  # one write: nginx and the app server write whole lines to the same stream
            sys.stderr.flush()
        except BrokenPipeError:
            let_go(sys.stderr)


def let_go(stream: TextIO) -> None:
    """stream's reader went away (`flaskprod up 2>&1 | grep -m1 ready`): its writes go to /dev/null from now on, and
    the stack serves on. The BrokenPipeError had stopped nginx and the app server, with no word why."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, stream.fileno())
    os.close(devnull)
