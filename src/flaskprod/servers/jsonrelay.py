"""The app server's own lines in the ECS JSON of the app's logs (logging.format = json), relayed by the serve process.

uWSGI writes its start, its workers' deaths and respawns, harakiri and the tracebacks its Python plugin prints
as plain text on the same streams as the app's JSON lines; a log shipper would take each for an unparsed
record. Its own JSON log encoder is no cure: keeping the app's lines apart from its own needs log-route, which
this build of uWSGI lacks (no PCRE), and it starts only once the log master runs, after the first twenty
lines. So serve reads uWSGI's stdout and stderr through pipes and writes each line on: a JSON object as it
came, anything else as one ECS record, a traceback over many lines as one record.

Gunicorn's workers write the same kind of plain lines: the app's print()s, a library's logger under the
app's own logging config or none (logging's last resort prints the message alone), a C extension's
warnings. Its arbiter is the serve process itself, so serve's own stdout and stderr become the pipes
(Relay.take_over), which every worker inherits, and relay threads there write to what they were.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

ECS_VERSION = "1.6.0"  # as runtime.logs writes it (which imports Flask; this module does not)
# log.logger of a plain line on stdout: the app's print()s. On stderr it is the server's: uWSGI writes its own
# there; under Gunicorn, whose own lines are JSON already, it is whatever else wrote to the stream.
STDOUT_LOGGER = "stdout"
READ_SIZE = 65536
# Seconds the relay lets lines gather before it reads again: a log line reaches the log this much later at
# most, and the pipe (64 KiB) fills only past 13 MB/s of lines. A wake-up and a write a line cost serve facing
# clients, whose access lines pass here, 4 to 6% of /api/ping (docs/defaults-log.md, "Logs relayed by serve").
GATHER = 0.005
# uWSGI's own marks of trouble (DAMN ! worker 1 (pid: 9) died, *** HARAKIRI ON WORKER 2, unable to load
# app 0) and of a warning (!!! no internal routing support, *** WARNING: ...).
_ERRORS = ("DAMN !", "HARAKIRI", "unable to", "Traceback (most recent call last):", "*** no app loaded")
_WARNINGS = ("!!!", "*** WARNING", "*** Python threads support is disabled")
# Seconds the relay waits, once uWSGI has exited, for what its pipes still hold (a worker outliving it would
# keep them open forever).
DRAIN_AT_EXIT = 2.0
# Seconds the relay waits, after a traceback's exception line ends a read, for a chained one to follow (Python
# prints the chain at once): a traceback with no line after it reaches the log this much later.
LINGER = 0.05


def level_of(message: str) -> str:
    if any(mark in message for mark in _ERRORS):
        return "error"
    if any(mark in message for mark in _WARNINGS):
        return "warning"
    return "info"


def record(message: str, at: float, logger: str) -> bytes:
    """One ECS line for a line of uWSGI's own, the fields ecs_logging gives the app's records."""
    return ecs_line(message, at, logger, level_of(message)).encode() + b"\n"


def traceback_record(lines: list[str], at: float, logger: str, message: str | None = None) -> bytes:
    """One ECS error record for a printed traceback: the (final) exception's line as the message, naming the
    failure, and the whole in error.stack_trace, where the app's records (ecs_logging) keep theirs."""
    stack = "\n".join(lines)
    line = ecs_line(message or lines[-1].strip(), at, logger, "error", error={"stack_trace": stack})
    return line.encode() + b"\n"


def ecs_line(message: str, at: float, logger: str, level: str, **fields: Any) -> str:
    """A record shaped as ecs_logging writes the app's, so that every line of a service parses alike."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at % 1 * 1000):03d}Z"
    head = {"@timestamp": stamp, "log.level": level, "message": message, "ecs.version": ECS_VERSION}
    return json.dumps({**head, "log": {"logger": logger}, **fields}, separators=(",", ":"), ensure_ascii=False,
                      default=str)  # fmt: skip


def is_json_object(line: bytes) -> bool:
    """The app's own records (ecs_logging writes one object a line) pass through untouched."""
    return line.startswith(b"{") and line.rstrip().endswith(b"}")


class Encoder:
    """Each line of a stream as it is to be written: JSON objects as they came, the rest as ECS records.

    A Python traceback ("Traceback (most recent call last):", its indented frames, then the exception's own line)
    is gathered into one error record (traceback_record), as Gunicorn's logger and the app's write one; so is a
    chain of them (an exception raised from or while handling another: the cause's traceback, a blank line, a
    separator, a blank line, the next) and an exception group's boxed one ("  + Exception Group Traceback",
    "  | " lines), the last exception's line its message. After an exception's line, whether the chain goes on
    is known only from the next line: `lingering` says so, for the reader to wait a little (lines_of) before the
    end of a read (b""), which then writes what is held. The lines Python prints right after an exception's own
    (the rest of a message over many lines, its notes) are part of it, and of the record's message. A traceback
    short of its exception's line is held until that line, the next line that cannot be part of it, or the
    stream's end.
    """

    def __init__(self, logger: str) -> None:
        self.logger = logger
        self.traceback: list[str] = []
        self.state = _DONE
        self.message = ""  # the last exception's line seen
        self.group_bar = ""  # the "  | " of the exception group being read, before its exception's line

    @property
    def lingering(self) -> bool:
        """A traceback is held that may be whole, or go on with the next line."""
        return self.state in _MAY_END

    def feed(self, line: bytes) -> Iterator[bytes]:
        if not line:  # the end of a read: what may be whole is written with what came before it
            if self.lingering:
                yield from self.end()
            yield line
        elif is_json_object(line):
            yield from self.end()
            yield line if line.endswith(b"\n") else line + b"\n"
        else:
            yield from self._text(line.decode("utf-8", "replace").rstrip("\r\n"))

    def end(self) -> Iterator[bytes]:
        """The traceback held, if any, as one record (without the blank lines that came after it)."""
        while self.traceback and not self.traceback[-1].strip():
            self.traceback.pop()
        if self.traceback:
            yield traceback_record(self.traceback, time.time(), self.logger, self.message)
        self.traceback, self.state, self.message = [], _DONE, ""

    def _text(self, text: str) -> Iterator[bytes]:
        if self.traceback:
            state = self._continued(text)
            if state is not None:
                self.traceback.append(text)
                self.state = state
                return
            yield from self.end()
        state = _opened(text)
        if state is not None:
            self.traceback, self.state = [text], state
            self._open_group(text)
        elif text.strip():
            yield record(text, time.time(), self.logger)

    def _continued(self, text: str) -> str | None:
        """The state after text, when it is part of the traceback held; None when it is not."""
        if self.state == _FRAMES:
            if text[:1].isspace():
                return _FRAMES
            self.message = text.strip()
            return _ENDED
        if self.state == _ENDED and text.strip() and _goes_on_printing_the_exception(text):
            self.message += "\n" + text.rstrip()
            return _ENDED
        if not text.strip():
            return _GAP if self.state in (_ENDED, _GROUP, _GAP) else self.state
        if self.state == _GROUP and text[:1].isspace():
            if self.group_bar and text.startswith(self.group_bar) and text[len(self.group_bar) :][:1].strip():
                self.message, self.group_bar = text[len(self.group_bar) :].strip(), ""
            return _GROUP
        if self.state == _GAP and text.strip() in _SEPARATORS:
            return _SEPARATED
        if self.state == _SEPARATED and (state := _opened(text)) is not None:
            self._open_group(text)
            return state
        return None

    def _open_group(self, text: str) -> None:
        # A group's exception line is the first at its own "|", nested groups' are further in.
        self.group_bar = text[: text.index("+")] + "| " if text.strip().startswith("+") else ""


# Where a traceback held stands: reading frames before the exception's line; past an exception's line; blank
# lines after one; past a chain's separator; in an exception group's box.
_DONE, _FRAMES, _ENDED, _GAP, _SEPARATED, _GROUP = "done", "frames", "ended", "gap", "separated", "group"
_MAY_END = (_ENDED, _GAP, _GROUP)  # those where the traceback may be whole
_SEPARATORS = (
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
)


def _goes_on_printing_the_exception(text: str) -> bool:
    """Whether text, right after an exception's line (no blank line between), is more of what Python prints for
    that exception: the further lines of a message over many, its notes (add_note). Python prints them unmarked,
    so anything else counts, but a line that opens a traceback or is the server's own: one carrying uWSGI's marks
    of trouble ("unable to load app 0"), or its name ("goodbye to uWSGI.")."""
    return _opened(text) is None and level_of(text) == "info" and "uWSGI" not in text


def _opened(text: str) -> str | None:
    """The state a line that opens a traceback starts, or None."""
    if text.startswith("Traceback (most recent call last):"):
        return _FRAMES
    if text.startswith("  + Exception Group Traceback (most recent call last):"):
        return _GROUP
    return None


def encoded(lines: Iterator[bytes], logger: str) -> Iterator[bytes]:
    """Each line of a stream as it is to be written (Encoder); an empty line (the end of a read, from lines_of) is
    passed on: what came before it can be written."""
    encoder = Encoder(logger)
    for line in lines:
        yield from encoder.feed(line)
    yield from encoder.end()


def lines_of(fd: int, gather: float = 0.0, linger: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
    """The lines read from fd until its end, each read's followed by b""; the last one may lack its newline.

    gather: seconds to let lines gather in the pipe after a read that emptied it, so that an access line a
    request does not wake the relay (and cost a switch of the cores) each.
    linger: whether the reader of the lines holds one that the next may go on (Encoder.lingering); the end of
    the read waits for more until LINGER seconds pass with none, and the read goes on if more came.
    """
    pending = b""
    while chunk := os.read(fd, READ_SIZE):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (part + b"\n" for part in complete)
        if linger() and select.select([fd], [], [], LINGER)[0]:
            continue
        yield b""
        if gather and len(chunk) < READ_SIZE:
            time.sleep(gather)
    if pending:
        yield pending


def say(message: str, *, as_json: bool) -> None:
    """One line of serve's own on stderr, in one write; an ECS record when the lines around it are. The relay's
    threads write whole lines to the same stderr, and print()'s two writes (the text, then its newline) let one
    land between them: a notice glued to the front of uWSGI's next record."""
    _write_all(2, record(message, time.time(), "flaskprod") if as_json else f"{message}\n".encode())


def refuse(message: str) -> None:
    """serve's refusal to start as one error record of flaskprod.serve on stderr, where its output is a JSON log."""
    sys.stderr.write(ecs_line(message, time.time(), "flaskprod.serve", "error") + "\n")
    sys.stderr.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def relay(source: int, target: int, logger: str) -> None:
    """Copy source's lines to target, encoded, in one write a read; the reader closes source at its end."""
    batch: list[bytes] = []
    encoder = Encoder(logger)
    try:
        for line in lines_of(source, GATHER, lambda: encoder.lingering):
            for out in encoder.feed(line):
                if out:
                    batch.append(out)
                elif batch:
                    _write_batch(target, batch)
        batch.extend(encoder.end())
        _write_batch(target, batch)
    finally:
        os.close(source)


def _write_batch(target: int, batch: list[bytes]) -> None:
    with contextlib.suppress(BrokenPipeError):
        _write_all(target, b"".join(batch))
    batch.clear()


class Relay:
    """Pipes for a child's stdout and stderr, each read by a thread that writes to this process's own.

    stderr_logger is log.logger of a plain line on stderr: "uwsgi", "stderr" under Gunicorn.
    """

    def __init__(self, stderr_logger: str) -> None:
        self.stderr_logger = stderr_logger
        self.ends = [os.pipe(), os.pipe()]
        self.targets = (1, 2)
        self.threads: list[threading.Thread] = []
        self.writing = True  # this process still holds the pipes' write ends

    @property
    def stdout(self) -> int:
        return self.ends[0][1]

    @property
    def stderr(self) -> int:
        return self.ends[1][1]

    def start(self) -> None:
        """Read both pipes, each from a thread that writes to its target stream."""
        loggers = (STDOUT_LOGGER, self.stderr_logger)
        for (read_end, _), target, logger in zip(self.ends, self.targets, loggers, strict=True):
            thread = threading.Thread(target=relay, args=(read_end, target, logger), name="log-relay", daemon=True)
            thread.start()
            self.threads.append(thread)

    def close_writers(self) -> None:
        """Close this process's write ends, so each pipe ends once its last writer, a child, closes its own."""
        if self.writing:
            self.writing = False
            for _, write_end in self.ends:
                os.close(write_end)

    def take_over(self) -> None:
        """This process's own stdout and stderr become the pipes, relayed to where they went; its forks inherit them."""
        sys.stdout.flush()
        sys.stderr.flush()
        self.targets = (os.dup(1), os.dup(2))
        for (_, write_end), fd in zip(self.ends, (1, 2), strict=True):
            os.dup2(write_end, fd)
        self.close_writers()  # fds 1 and 2 hold them now
        self.start()

    def forked(self) -> None:
        """In a child forked after take_over: let go of the parent's ends, so that once the parent is gone a write
        fails at once (EPIPE) instead of filling a pipe nobody reads."""
        for fd in (self.ends[0][0], self.ends[1][0], *self.targets):
            if fd > 2:
                os.close(fd)

    def give_back(self) -> None:
        """Undo take_over, once every child has exited, and write what the pipes still hold."""
        sys.stdout.flush()
        sys.stderr.flush()
        for target, fd in zip(self.targets, (1, 2), strict=True):
            os.dup2(target, fd)  # closes this process's last write end of that pipe
        self.finish()  # the saved copies stay open, for a thread that outlives the wait

    def finish(self) -> None:
        """Once every child has exited: write what the pipes still hold, for at most DRAIN_AT_EXIT seconds."""
        self.close_writers()
        deadline = time.monotonic() + DRAIN_AT_EXIT
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
