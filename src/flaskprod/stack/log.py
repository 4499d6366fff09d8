"""The supervisor's own log lines on stderr: JSON like the app's, or text, as logging.format says."""

from __future__ import annotations

import sys
import time
from typing import Any, Literal

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
        print(line, file=sys.stderr, flush=True)
