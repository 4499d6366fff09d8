"""Liveness and readiness: the readiness checks, each run with a time limit."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

from . import draining

Check = Callable[[], object]
CheckResult = dict[str, Any]
MAX_ERROR_LENGTH = 200


class Detail(str):
    """A check's outcome that passes and is shown in its result as detail: a note, not a failure."""


def describe(exc: BaseException) -> str:
    first_line = (str(exc).strip().splitlines() or [""])[0]
    text = f"{type(exc).__name__}: {first_line}" if first_line else type(exc).__name__
    return text[:MAX_ERROR_LENGTH]


# Set in a readiness check's thread, which serves the probe's request outside Flask's request context (probes bypass
# the app): a pooled connection a check uses is then a request's, and keeps the statement timeout requests set on
# it (runtime/db.limit_in_requests), where a reset at each probe would cost two statements.
_checking: ContextVar[bool] = ContextVar("flaskprod_readiness_check", default=False)


def in_check() -> bool:
    """Whether this code runs in a readiness check."""
    return _checking.get()


class CheckRunner:
    """Runs checks concurrently, each in its own daemon thread, and waits at most timeout seconds.

    A check that overran keeps running in its thread; until it ends, later probes report it as
    failed instead of starting another copy, so a hung dependency cannot pile up threads.
    """

    def __init__(self) -> None:
        self._running: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def run(self, checks: Mapping[str, Check], timeout: float) -> dict[str, CheckResult]:
        results: dict[str, CheckResult] = {}
        started: list[tuple[str, threading.Thread, float]] = []
        for name, fn in checks.items():
            with self._lock:
                previous = self._running.get(name)
                if previous is not None and previous.is_alive():
                    results[name] = {"status": "fail", "time_ms": 0.0, "error": "previous run still in progress"}
                    continue
                thread = threading.Thread(
                    target=self._call, args=(name, fn, results), name=f"readiness-{name}", daemon=True
                )
                self._running[name] = thread
            started.append((name, thread, time.perf_counter()))
            thread.start()
        deadline = time.perf_counter() + timeout
        for name, thread, t0 in started:
            thread.join(max(0.0, deadline - time.perf_counter()))
            if thread.is_alive():
                results[name] = {
                    "status": "fail",
                    "time_ms": round((time.perf_counter() - t0) * 1000, 3),
                    "error": f"timed out after {timeout:g}s",
                }
        # A thread that finishes after its timeout must not rewrite the answer being sent.
        missing: CheckResult = {"status": "fail", "time_ms": 0.0, "error": "check ended without a result"}
        return {name: dict(results.get(name) or missing) for name in checks}

    def _call(self, name: str, fn: Check, results: dict[str, CheckResult]) -> None:
        _checking.set(True)  # this thread's own context: it runs nothing else
        t0 = time.perf_counter()
        try:
            outcome = fn()
        except Exception as exc:  # a failing dependency is the answer, not an error of the probe
            result: CheckResult = {"status": "fail", "error": describe(exc)}
        else:
            result = {"status": "ok"} if outcome is not False else {"status": "fail", "error": "check returned False"}
            if isinstance(outcome, Detail) and outcome:
                result["detail"] = outcome[:MAX_ERROR_LENGTH]
        result["time_ms"] = round((time.perf_counter() - t0) * 1000, 3)
        results.setdefault(name, result)


def without_detail(body: dict[str, Any]) -> dict[str, Any]:
    """The readiness answer for the public: each check's status and time, not its error or detail."""
    public = ("status", "time_ms")
    checks = {name: {k: v for k, v in result.items() if k in public} for name, result in body["checks"].items()}
    return {**body, "checks": checks}


class FailureLog:
    """Logs a readiness check's failure once, when it starts or its error changes, not at every probe."""

    def __init__(self) -> None:
        self._logged: dict[str, str] = {}

    def log(self, app: Any, results: Mapping[str, CheckResult]) -> None:
        for name, result in results.items():
            if result["status"] == "ok":
                if self._logged.pop(name, None) is not None:
                    app.logger.info("readiness check %s passes again", name)
            elif self._logged.get(name) != (error := str(result.get("error", ""))):
                self._logged[name] = error
                app.logger.warning("readiness check %s fails: %s", name, error)


def readiness(checks: Mapping[str, Check], runner: CheckRunner, timeout: float) -> tuple[int, dict[str, Any]]:
    """HTTP status and body of the readiness endpoint."""
    if draining.is_draining():
        return 503, {"status": "draining", "checks": {}}
    results = runner.run(checks, timeout)
    ok = all(r["status"] == "ok" for r in results.values())
    return (200 if ok else 503), {"status": "ok" if ok else "fail", "checks": results}
