"""In-process figures: the ceiling (calls/s of the WSGI app with no server) and what Production(app) costs.

Run as `python -m benchmarks.inprocess WHAT SECONDS OUT.json [CPU]` in a child process, so each
measurement imports its app fresh with its own FLASKPROD_* environment, and the app's log lines
go to the child's stdout rather than into the harness. With CPU the child runs on that CPU only: one
child per CPU, side by side, measure the app on every core at once.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from werkzeug.test import EnvironBuilder

REPO = Path(__file__).resolve().parent.parent
TASKBOARD = REPO / "examples" / "taskboard"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable[[bytes], None]:
    if not status.startswith(("2", "3")):
        raise RuntimeError(f"in-process call answered {status}")
    return lambda data: None


def calls_per_second(app: WsgiApp, path: str, seconds: float) -> float:
    """Call app like a server would (environ in, body iterated and closed) as often as fits in `seconds`."""
    # X-Request-Start as flaskprod's nginx sends it: behind a trusted proxy Production(app) counts the wait.
    headers = [("Host", "localhost"), ("X-Request-Start", f"t={time.time():.3f}")]
    template = EnvironBuilder(path=path, headers=headers).get_environ()
    # One unmeasured call: first-request work (imports, template compilation) is not per request.
    _call(app, dict(template))
    calls = 0
    started = time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(50):
            _call(app, dict(template))
        calls += 50
        now = time.perf_counter()
        if now >= deadline:
            return calls / (now - started)


def _call(app: WsgiApp, environ: dict[str, Any]) -> None:
    body = app(environ, _start_response)
    try:
        for _ in body:
            pass
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


def load(target: str) -> WsgiApp:
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def main(argv: list[str]) -> int:
    """WHAT is `module:app=path,path,...`; writes {path: calls per second} to OUT."""
    what, seconds, out, *cpu = argv
    if cpu:
        os.sched_setaffinity(0, {int(cpu[0])})
    target, _, paths = what.partition("=")
    sys.path.insert(0, str(TASKBOARD))
    sys.path.insert(0, str(REPO))
    app = load(target)
    results = {path: calls_per_second(app, path, float(seconds)) for path in paths.split(",")}
    Path(out).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
