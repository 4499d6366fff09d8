"""The control socket of a running `flaskprod up`: `deploy` and `rollback` are requests to it.

One JSON line in, JSON lines out: progress as {"log": ...}, and last {"ok": true, ...} or {"ok": false,
"error": ...}. A line may say within how many seconds the request ends ("within"), and the first one, given at
once, is that alone: a client gives up on an `up` that does not answer, or not by then. The socket is in proxy.run_dir
with mode 0600, so only the user who ran `up` (or root) can deploy to it. A thread accepts; the supervisor's main
loop does the work, one request at a time: a request that comes meanwhile is told at once what it waits for. A
deploy or rollback whose client goes away before its release is ready is cancelled: the running release serves on.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ServerError

# A request names a command and its options; more than this is not a request.
MAX_REQUEST = 64 * 1024
# Seconds a client waits for the first answer: up's control thread gives it at once, before its main loop acts.
FIRST_ANSWER = 10.0
# Seconds a client waits past the end up last promised ("within"): its main loop may be busy when a request comes.
PAST_WITHIN = 30.0


@dataclass
class Request:
    """One command from a client, answered on its connection."""

    command: str
    options: dict[str, Any]
    conn: socket.socket
    closed: bool = field(default=False)

    def progress(self, message: str | None, *, within: float | None = None) -> None:
        """One line of progress (None: the bound alone); within: the most seconds until the request ends, from now."""
        payload: dict[str, Any] = {} if message is None else {"log": message}
        self._send(payload if within is None else {**payload, "within": round(within, 1)})

    def finish(self, **result: Any) -> None:
        self._send({"ok": True, **result})
        self.close()

    def fail(self, error: str) -> None:
        self._send({"ok": False, "error": error})
        self.close()

    def _send(self, payload: dict[str, Any]) -> None:
        if self.closed:
            return
        try:
            self.conn.sendall(json.dumps(payload).encode() + b"\n")
        except OSError:  # the client went away (Ctrl-C): what it asked for is cancelled if it can still be (gone)
            self.closed = True

    def gone(self) -> bool:
        """Whether the client went away (Ctrl-C, SIGTERM): it sends nothing after its request, so a connection with
        something to read has been closed by it."""
        if self.closed:
            return True
        try:
            return self.conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.conn.close()


class ControlServer:
    """Accepts connections on path and hands each request to submit (which must not block)."""

    def __init__(self, path: Path, submit: Callable[[Request], None]) -> None:
        self.path = path
        self.submit = submit
        path.unlink(missing_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            self.sock.bind(str(path))
        finally:
            os.umask(old_umask)
        self.sock.listen(8)
        self.thread = threading.Thread(target=self._serve, name="flaskprod-control", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:  # closed by close()
                return
            conn.settimeout(10)
            try:
                request = _read_request(conn)
            except (OSError, ValueError) as exc:
                with contextlib.suppress(OSError):
                    conn.sendall(json.dumps({"ok": False, "error": f"bad request: {exc}"}).encode() + b"\n")
                    conn.close()
                continue
            conn.settimeout(None)
            self.submit(request)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.path.unlink(missing_ok=True)


def _read_request(conn: socket.socket) -> Request:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError("longer than a request")
    payload = json.loads(data.split(b"\n", 1)[0] or b"null")
    if not isinstance(payload, dict) or not isinstance(payload.get("command"), str):
        raise ValueError('expected {"command": ...}')
    options = payload.get("options") or {}
    if not isinstance(options, dict):
        raise ValueError("options must be an object")
    return Request(command=payload["command"], options=options, conn=conn)


def send(path: Path, command: str, options: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Ask the `up` listening on path; yields its answers, the last one with "ok"."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        raise ServerError(
            f"no flaskprod up is running with proxy.run_dir {path.parent}: start it with `flaskprod up`, "
            "or run this where its flaskprod.toml is"
        ) from None
    except PermissionError:
        sock.close()
        raise ServerError(f"{path} belongs to another user: run this as the user who ran `flaskprod up`") from None
    except NotADirectoryError:
        sock.close()
        raise ServerError(
            f"proxy.run_dir {path.parent} is a file or under one, not where a `flaskprod up` runs: name its run "
            "dir, e.g. --set proxy.run_dir=.flaskprod/run"
        ) from None
    except OSError as exc:  # a path too long for a unix socket, an unreadable directory
        sock.close()
        raise ServerError(f"cannot reach flaskprod up at {path}: {exc.strerror or exc}") from None
    with sock, sock.makefile("rb") as lines:
        deadline: float | None = time.monotonic() + FIRST_ANSWER
        promised: float | None = None
        try:
            sock.sendall(json.dumps({"command": command, "options": options}).encode() + b"\n")
            while True:
                sock.settimeout(None if deadline is None else max(deadline - time.monotonic(), 0.001))
                line = lines.readline()
                if not line:
                    break
                answer = _answer(line, path)
                if isinstance(within := answer.get("within"), (int, float)) and within >= 0:
                    deadline, promised = time.monotonic() + within + PAST_WITHIN, float(within)
                elif promised is None:
                    deadline = None  # an up from before the bound (upgraded under it): it answers, as it did
                yield answer
                if "ok" in answer:
                    return
        except TimeoutError:
            raise ServerError(_silent(path, command, promised)) from None
        except OSError as exc:  # reset or broken: up stopped (or was killed) while it had the request
            raise ServerError(
                f"flaskprod up at {path} dropped the connection ({exc.strerror or exc}) before it answered; "
                "its log says why"
            ) from None
    raise ServerError("flaskprod up closed the control socket before it answered; its log says why")


def _silent(path: Path, command: str, promised: float | None) -> str:
    if promised is None:
        return (
            f"flaskprod up at {path} took the {command} but did not answer within {FIRST_ANSWER:g}s: is it stopped "
            "(kill -STOP, a debugger), or is the socket another program's?"
        )
    return (
        f"flaskprod up at {path} said the {command} would end within {promised:.0f}s, and "
        f"{promised + PAST_WITHIN:.0f}s later it had not: it cancels the {command} unless its release was ready; "
        "its log says why"
    )


def _answer(line: bytes, path: Path) -> dict[str, Any]:
    """One answer line as ControlServer's Request writes it; ServerError for anything else (another program's
    socket, or an up of a flaskprod version that answers otherwise)."""
    try:
        answer = json.loads(line)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and (
        isinstance(answer.get("log"), str)
        or (set(answer) == {"within"} and type(answer["within"]) in (int, float))
        or (answer.get("ok") is True and isinstance(answer.get("message"), str))
        or (answer.get("ok") is False and isinstance(answer.get("error"), str))
    ):
        return answer
    shown = line.decode(errors="replace").strip()
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    raise ServerError(
        f"{path} answered {shown!r}, which is no answer of flaskprod up's: is it another program's socket, or an up "
        "of another flaskprod version? Restart `flaskprod up` with this one"
    )
