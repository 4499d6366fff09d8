"""A chunked request body held to the app's MAX_CONTENT_LENGTH.

A body sent without Content-Length (Transfer-Encoding: chunked) is read by werkzeug through a stream that
stops at the limit and reports nothing: request.get_data() and request.form get the first MAX_CONTENT_LENGTH
bytes and the view answers 200 on a cut body. Facing clients (serve, the single image), no nginx stops it
first. This input looks one byte past the limit when a read reaches it, and answers 413 if there is one.

uWSGI's HTTP socket (serve --server uwsgi) hands a chunked body to no wsgi.input at all: werkzeug read it as empty, and
the view answered 200 on data it never got. There the body is read through uWSGI's chunked input API instead.
"""

from __future__ import annotations

import io
from collections.abc import Callable, MutableMapping
from typing import IO, Any

from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge


def hold_chunked_body(environ: MutableMapping[str, Any], limit: int | None) -> None:
    """Make a request's chunked body readable (under uWSGI) and held to limit (413 past it); a request with
    Transfer-Encoding only."""
    if "uwsgi.version" in environ and not environ.get("CONTENT_LENGTH") and "wsgi.input_terminated" not in environ:
        import uwsgi  # only inside uWSGI, whose environ carries uwsgi.version

        environ["wsgi.input"] = io.BufferedReader(UwsgiChunks(uwsgi.chunked_read))
        environ["wsgi.input_terminated"] = True  # werkzeug reads a body with no length only when told it ends
    if limit is not None:
        environ["wsgi.input"] = BoundedInput(environ["wsgi.input"], limit)


class UwsgiChunks(io.RawIOBase):
    """A chunked request body as uWSGI's chunked_read gives it, chunk by chunk, until the empty last one."""

    def __init__(self, read_chunk: Callable[[], bytes]) -> None:
        super().__init__()
        self._read_chunk = read_chunk
        self._pending = memoryview(b"")
        self._ended = False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._pending and not self._ended:
            try:
                chunk = self._read_chunk()
            except OSError:  # the client went, sent a malformed chunk, or stalled past uWSGI's socket timeout
                raise ClientDisconnected() from None
            self._ended = not chunk
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


class BoundedInput:
    """wsgi.input that raises RequestEntityTooLarge (413) once the body proves longer than limit bytes."""

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._left = limit

    def read(self, size: int | None = -1) -> bytes:
        # "All of it" is at most one byte past the limit: enough to know the body is too long.
        return self._took(self._stream.read(self._left + 1 if size is None or size < 0 else size))

    def readline(self, size: int | None = -1) -> bytes:
        return self._took(self._stream.readline(self._left + 1 if size is None or size < 0 else size))

    def _took(self, data: bytes) -> bytes:
        self._left -= len(data)
        if self._left < 0 or (self._left == 0 and data and self._stream.read(1)):
            raise RequestEntityTooLarge()
        return data

    def __iter__(self) -> BoundedInput:
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line
