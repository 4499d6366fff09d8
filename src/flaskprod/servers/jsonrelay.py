"""uWSGI's own lines in the ECS JSON of the app's logs (logging.format = json), relayed by the serve process.

uWSGI writes its start, its workers' deaths and respawns, harakiri and the tracebacks its Python plugin prints
as plain text on the same streams as the app's JSON lines; a log shipper would take each for an unparsed
record. Its own JSON log encoder is no cure: keeping the app's lines apart from its own needs log-route, which
this build of uWSGI lacks (no PCRE), and it starts only once the log master runs, after the first twenty
lines. So serve reads uWSGI's stdout and stderr through pipes and writes each line on: a JSON object as it
came, anything else as one ECS record, a traceback over many lines as one record.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator

ECS_VERSION = "1.6.0"
# log.logger of a line by the stream it came on: uWSGI writes its own to stderr; stdout has the app's print()s.
LOGGERS = {1: "stdout", 2: "uwsgi"}
READ_SIZE = 65536
# uWSGI's own marks of trouble (DAMN ! worker 1 (pid: 9) died, *** HARAKIRI ON WORKER 2, unable to load
# app 0) and of a warning (!!! no internal routing support, *** WARNING: ...).
_ERRORS = ("DAMN !", "HARAKIRI", "unable to", "Traceback (most recent call last):", "*** no app loaded")
_WARNINGS = ("!!!", "*** WARNING", "*** Python threads support is disabled")
# Seconds the relay waits, once uWSGI has exited, for what its pipes still hold (a worker outliving it would
# keep them open forever).
DRAIN_AT_EXIT = 2.0


def level_of(message: str) -> str:
    if any(mark in message for mark in _ERRORS):
        return "error"
    if any(mark in message for mark in _WARNINGS):
        return "warning"
    return "info"


def record(message: str, at: float, logger: str) -> bytes:
    """One ECS line for a line of uWSGI's own, the fields ecs_logging gives the app's records."""
    seconds = time.gmtime(at)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(at % 1 * 1000):03d}Z"
    fields = {
        "@timestamp": stamp,
        "log.level": level_of(message),
        "message": message,
        "ecs.version": ECS_VERSION,
        "log": {"logger": logger},
    }
    return json.dumps(fields, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def is_json_object(line: bytes) -> bool:
    """The app's own records (ecs_logging writes one object a line) pass through untouched."""
    return line.startswith(b"{") and line.rstrip().endswith(b"}")


def encoded(lines: Iterator[bytes], logger: str) -> Iterator[bytes]:
    """Each line of a stream as it is to be written: JSON objects as they came, the rest as ECS records.

    A Python traceback ("Traceback (most recent call last):", its indented frames, then the exception's own line)
    is gathered into the one record that starts it, as Gunicorn's logger and the app's do.
    """
    traceback: list[str] = []
    for line in lines:
        if is_json_object(line):
            if traceback:
                yield record("\n".join(traceback), time.time(), logger)
                traceback = []
            yield line if line.endswith(b"\n") else line + b"\n"
            continue
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if traceback:
            traceback.append(text)
            if text[:1].isspace():
                continue
            yield record("\n".join(traceback), time.time(), logger)
            traceback = []
        elif text.startswith("Traceback (most recent call last):"):
            traceback = [text]
        elif text.strip():
            yield record(text, time.time(), logger)
    if traceback:
        yield record("\n".join(traceback), time.time(), logger)


def lines_of(fd: int) -> Iterator[bytes]:
    """The lines read from fd until its end; the last one may lack its newline."""
    pending = b""
    while chunk := os.read(fd, READ_SIZE):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (part + b"\n" for part in complete)
    if pending:
        yield pending


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(source: int, target: int) -> None:
    """Copy source's lines to target, encoded; the reader closes source at its end."""
    try:
        for out in encoded(lines_of(source), LOGGERS.get(target, "uwsgi")):
            with contextlib.suppress(BrokenPipeError):
                _write_all(target, out)
    finally:
        os.close(source)


class Relay:
    """Pipes for a child's stdout and stderr, each read by a thread that writes to this process's own."""

    def __init__(self) -> None:
        self.ends = [os.pipe(), os.pipe()]
        self.threads: list[threading.Thread] = []

    @property
    def stdout(self) -> int:
        return self.ends[0][1]

    @property
    def stderr(self) -> int:
        return self.ends[1][1]

    def start(self) -> None:
        """Once the child has its ends: close ours, so each pipe ends when the child's side does."""
        for (read_end, write_end), target in zip(self.ends, (1, 2), strict=True):
            os.close(write_end)
            thread = threading.Thread(target=relay, args=(read_end, target), name=f"uwsgi-log-{target}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        deadline = time.monotonic() + DRAIN_AT_EXIT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
