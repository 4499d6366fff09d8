"""Helpers for integration tests: free ports, waiting, and processes stopped by their group id."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchmarks.native import TASKBOARD as TASKBOARD
from benchmarks.native import copy_taskboard as copy_taskboard
from benchmarks.procs import free_port as free_port
from benchmarks.procs import port_pair as port_pair

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(sys.executable).parent


def run_flaskprod(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real command in cwd, with no FLASK_/FLASKPROD_ variable from the developer's shell: only env."""
    base = {"PATH": "/usr/bin:/bin", "HOME": str(cwd)}
    return subprocess.run(
        [str(BIN / "flaskprod"), *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_for(
    predicate: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05, what: str = "condition"
) -> Any:
    """Poll predicate until it returns something truthy; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = predicate()
            if result:
                return result
        except Exception as exc:
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last_exc!r})")


def stop_group(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(5)


@contextmanager
def running(
    args: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    stdout: Any = subprocess.PIPE,
    stderr: Any = subprocess.STDOUT,
) -> Iterator[subprocess.Popen[str]]:
    """Start args in a new session and stop its whole process group when the block ends."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.Popen(
        args, env=full_env, cwd=cwd, stdout=stdout, stderr=stderr, text=True, start_new_session=True
    )
    try:
        yield proc
    finally:
        stop_group(proc)


def interrupted_while_loading(args: list[str], cwd: Path, env: dict[str, str], marker: Path) -> tuple[int, str, str]:
    """Run flaskprod args, Ctrl-C it once the app it loads has written marker; its status, stdout and stderr."""
    command = subprocess.Popen([str(BIN / "flaskprod"), *args], cwd=cwd, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: marker.exists() and bool(marker.read_text()), timeout=20, what=f"{marker} written")
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
    return command.returncode, out, err


def self_signed(directory: Path, *, name: str, alt_names: str) -> tuple[Path, Path]:
    """A self-signed certificate for name (subjectAltName alt_names, e.g. "IP:127.0.0.1,DNS:localhost") and its key,
    valid two days, written in directory: (cert, key)."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-days", "2", "-subj", f"/CN={name}", "-addext", f"subjectAltName={alt_names}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return cert, key


def readable(output: str) -> str:
    """output as a person reads it: each JSON record serve wrote (its output is JSON where stderr is no terminal)
    as its traceback (error.stack_trace) when it has one, serve's refusal to start (an error of flaskprod.serve)
    as the "Error: ..." line a terminal shows, else its message; other lines as they are."""
    lines = []
    for line in output.splitlines():
        try:
            record = json.loads(line) if line.startswith("{") else None
        except ValueError:
            record = None
        if not isinstance(record, dict) or "message" not in record:
            lines.append(line)
            continue
        lines.append(_as_read(record))
    return "".join(f"{line}\n" for line in lines)


def _as_read(record: dict[str, Any]) -> str:
    trace = record.get("error", {}).get("stack_trace") if isinstance(record.get("error"), dict) else None
    if trace:
        return str(trace).rstrip("\n")
    if record.get("log.level") == "error" and record.get("log") == {"logger": "flaskprod.serve"}:
        return f"Error: {record['message']}"
    return str(record["message"])
